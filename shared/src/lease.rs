//! Leases: one holder at a time for a piece of the lake (a partition being
//! compacted, a local-catalog table being changed), made of one small object
//! that is created only if absent (`PutMode::Create`). A lease older than its
//! time to live was left by a crash and is taken over.
//!
//! The clock is the caller's (`now`), so tests can age a lease without
//! waiting. Each taker writes a token of its own into the lease: when the
//! answer to its create is lost (the store applied it, the connection broke),
//! the taker reads the lease back and knows its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    taken: String,
    #[serde(default)]
    token: String,
}

/// Take the lease at `path`, trying again under `policy` (until its
/// `within` has passed) while another holder has it; `now` gives the time
/// of each try. `Ok(false)` if it was still held when the policy was spent.
pub async fn wait_for(
    store: &dyn ObjectStore,
    path: &Path,
    ttl: Duration,
    now: impl Fn() -> DateTime<Utc>,
    policy: crate::retry::Policy,
) -> Result<bool> {
    /// Why an attempt did not take the lease.
    enum Missed {
        Held,
        Failed(Error),
    }
    impl std::fmt::Display for Missed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Missed::Held => f.write_str("held by another"),
                Missed::Failed(e) => e.fmt(f),
            }
        }
    }
    let (outcome, _) = policy
        .run(
            "lease",
            |m: &Missed| matches!(m, Missed::Held),
            || async {
                match take(store, path, ttl, now()).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Missed::Held),
                    Err(e) => Err(Missed::Failed(e)),
                }
            },
        )
        .await;
    match outcome {
        Ok(()) => Ok(true),
        Err(Missed::Held) => Ok(false),
        Err(Missed::Failed(e)) => Err(e),
    }
}

/// Try once to take the lease at `path`: create it if absent, or take over one
/// older than `ttl` at `now`. `Ok(true)` if this call holds it now, `Ok(false)`
/// if another holder does.
pub async fn take(
    store: &dyn ObjectStore,
    path: &Path,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<bool> {
    let token = format!("{:016x}", rand::random::<u64>());
    let body = serde_json::to_vec(&Body {
        taken: now.to_rfc3339(),
        token: token.clone(),
    })
    .expect("serializes");
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    for _ in 0..3 {
        match store
            .put_opts(path, PutPayload::from(body.clone()), create.clone())
            .await
        {
            Ok(_) => return Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            // The create may have been applied with its answer lost: the
            // lease, read back, says whose it is.
            Err(e) if crate::retry::transient(&e) => {}
            Err(e) => return Err(Error::write(path, e)),
        }
        let held = match store.get(path).await {
            Ok(r) => {
                let modified = r.meta.last_modified;
                let bytes = r.bytes().await.map_err(|e| Error::read(path, e))?;
                let holder: Option<Body> = serde_json::from_slice(&bytes).ok();
                if holder.is_some_and(|h| h.token == token) {
                    return Ok(true);
                }
                modified
            }
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(Error::read(path, e)),
        };
        let age = (now - held).to_std().unwrap_or_default();
        if age < ttl {
            return Ok(false);
        }
        tracing::warn!(lease = %path, age_s = age.as_secs(), "taking over a stale lease");
        release(store, path).await?;
    }
    Ok(false)
}

/// Give the lease up (nothing to do if it is gone).
pub async fn release(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::write(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn one_holder_until_released_or_stale() {
        let store = InMemory::new();
        let path = Path::from("t/lease.json");
        let ttl = Duration::from_secs(60);
        let t0 = Utc::now();
        assert!(take(&store, &path, ttl, t0).await.unwrap());
        assert!(!take(&store, &path, ttl, t0).await.unwrap(), "held");
        let later = t0 + chrono::Duration::seconds(59);
        assert!(
            !take(&store, &path, ttl, later).await.unwrap(),
            "not stale yet"
        );
        let stale = t0 + chrono::Duration::seconds(120);
        assert!(take(&store, &path, ttl, stale).await.unwrap(), "taken over");
        release(&store, &path).await.unwrap();
        assert!(take(&store, &path, ttl, stale).await.unwrap(), "free again");
        release(&store, &path).await.unwrap();
        release(&store, &path).await.unwrap();
    }
}
