//! Landing one Delta commit, and knowing whether it landed.
//!
//! delta-rs writes a commit as `_delta_log/<version>.json`, created only if
//! absent, and on finding the version taken checks the winner for
//! conflicts and tries the next one. Two answers can mislead a caller:
//!
//! - the answer to the write is lost (a timeout, a 5xx after the object was
//!   stored), and the retried write finds the version taken, by itself:
//!   delta-rs then sees a conflict (a commit that removes files conflicts
//!   with itself) and returns an error for a version readers already see;
//! - the commit landed but what follows it failed (a checkpoint, cleaning
//!   expired log entries): an error again.
//!
//! A caller cleaning up after such an "error" (OPTIMIZE deleting its
//! outputs) would delete files the table points to. So each commit carries
//! a fresh id in its commit info, what follows a landed commit never turns
//! it into an error, and an error of the write is settled by reading the
//! log: a version after the snapshot holding the id is ours. (A commit that
//! only adds files and is retried at the next version after its own lost
//! answer adds the same paths again, which Delta's log replay keeps once.)

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::logstore::LogStoreRef;
use deltalake::protocol::DeltaOperation;
use deltalake::table::state::DeltaTableState;
use serde_json::Value;

use crate::error::Result;

/// The commit-info key holding a commit's id.
pub const COMMIT_ID_KEY: &str = "sluice.commit";

/// Commit `actions` over `snapshot` (with `metadata` in the commit info,
/// and the application transactions `txns`, which delta-rs checks against
/// concurrent commits): the version that holds them. See the module's docs.
pub async fn land(
    table: &str,
    snapshot: &DeltaTableState,
    log: LogStoreRef,
    operation: DeltaOperation,
    metadata: Vec<(String, Value)>,
    actions: Vec<Action>,
    txns: Vec<Transaction>,
) -> Result<u64> {
    let id = format!("{:032x}", rand::random::<u128>());
    let base = snapshot.version();
    let mut metadata = metadata;
    metadata.push((COMMIT_ID_KEY.to_string(), Value::from(id.clone())));
    let properties = CommitProperties::default()
        .with_metadata(metadata)
        .with_application_transactions(txns);
    let prepared = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), log.clone(), operation)
        .into_prepared_commit_future()
        .await
        .map_err(|e| super::error(table, e))?;
    match prepared.await {
        Ok(post) => {
            let version = post.version;
            if let Err(e) = post.await {
                tracing::warn!(
                    table,
                    version,
                    error = %e,
                    "committed; what follows a commit (a checkpoint, cleaning expired log entries) failed and is left to the next commit"
                );
            }
            Ok(version)
        }
        Err(e) => match landed(&log, base, &id).await {
            Ok(Some(version)) => {
                tracing::warn!(
                    table,
                    version,
                    error = %e,
                    "the answer to a commit was lost, but the log holds it"
                );
                Ok(version)
            }
            Ok(None) => Err(super::error(table, e)),
            // The log cannot be read now: the commit's fate is unknown, and
            // the caller must not take it as failed (nor clean up after it).
            Err(read) => Err(crate::error::Error::Unavailable(format!(
                "table '{table}': a commit failed ({e}) and the log could not be read to learn whether it landed ({read}); run again: a landed commit is found then"
            ))),
        },
    }
}

/// The version after `base` whose commit info holds `id`, if any.
pub async fn landed(
    log: &LogStoreRef,
    base: u64,
    id: &str,
) -> std::result::Result<Option<u64>, deltalake::DeltaTableError> {
    let mut version = base + 1;
    while let Some(bytes) = log.read_commit_entry(version).await? {
        if holds_id(&bytes, id) {
            return Ok(Some(version));
        }
        version += 1;
    }
    Ok(None)
}

/// Whether a commit file's commit info carries `id`.
fn holds_id(commit: &[u8], id: &str) -> bool {
    commit.split(|b| *b == b'\n').any(|line| {
        serde_json::from_slice::<Value>(line).is_ok_and(|v| {
            v.get("commitInfo")
                .and_then(|c| c.get(COMMIT_ID_KEY))
                .and_then(Value::as_str)
                == Some(id)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::holds_id;

    #[test]
    fn only_the_commit_info_with_the_id_is_ours() {
        let ours = br#"{"commitInfo":{"timestamp":1,"sluice.commit":"abc"}}
{"add":{"path":"a.parquet"}}"#;
        assert!(holds_id(ours, "abc"));
        assert!(!holds_id(ours, "abd"));
        // The id elsewhere (a file name, a tag) is not the commit's.
        let other = br#"{"commitInfo":{"timestamp":1,"sluice.commit":"xyz"}}
{"add":{"path":"abc.parquet","tags":{"sluice.commit":"abc"}}}"#;
        assert!(!holds_id(other, "abc"));
        assert!(!holds_id(b"not json", "abc"));
    }
}
