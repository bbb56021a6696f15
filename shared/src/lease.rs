//! Leases: one holder at a time for a piece of the lake (a partition being
//! compacted, a local-catalog table being changed), made of one small object
//! that is created only if absent (`PutMode::Create`). A lease older than its
//! time to live was left by a crash and is taken over.
//!
//! The clock is the caller's (`now`), so tests can age a lease without
//! waiting. Each taker writes a token of its own into the lease: when the
//! answer to its create is lost (the store applied it, the connection broke),
//! the taker reads the lease back and knows its own.
//!
//! A stale lease is taken over by overwriting it only if it is still the
//! version read (`PutMode::Update` with its ETag), so of two takers of one
//! stale lease one wins and the other finds the lease fresh. A store with no
//! conditional overwrite (a local folder, which one process uses) falls back
//! to deleting the stale lease and creating it again. A holder gives the
//! lease up only while it is still its own (its token): one that worked past
//! the time to live and lost the lease to another does not delete the other's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    taken: String,
    #[serde(default)]
    token: String,
}

/// A lease this process holds: give it up with [`Held::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a lease held is released when the work is done"]
pub struct Held {
    path: Path,
    token: String,
}

impl Held {
    /// Give the lease up, if it is still ours (nothing to do if it is gone,
    /// or taken over by another after our time to live).
    pub async fn release(self, store: &dyn ObjectStore) -> Result<()> {
        match store.get(&self.path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| Error::read(&self.path, e))?;
                let holder: Option<Body> = serde_json::from_slice(&bytes).ok();
                if holder.is_some_and(|h| h.token != self.token) {
                    tracing::warn!(lease = %self.path, "the lease was taken over while held (the work outlived its time to live): left to its new holder");
                    return Ok(());
                }
            }
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(Error::read(&self.path, e)),
        }
        release(store, &self.path).await
    }
}

/// Take the lease at `path`, trying again under `policy` (until its
/// `within` has passed) while another holder has it; `now` gives the time
/// of each try. `None` if it was still held when the policy was spent.
pub async fn wait_for(
    store: &dyn ObjectStore,
    path: &Path,
    ttl: Duration,
    now: impl Fn() -> DateTime<Utc>,
    policy: crate::retry::Policy,
) -> Result<Option<Held>> {
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
                    Ok(Some(held)) => Ok(held),
                    Ok(None) => Err(Missed::Held),
                    Err(e) => Err(Missed::Failed(e)),
                }
            },
        )
        .await;
    match outcome {
        Ok(held) => Ok(Some(held)),
        Err(Missed::Held) => Ok(None),
        Err(Missed::Failed(e)) => Err(e),
    }
}

/// Try once to take the lease at `path`: create it if absent, or take over one
/// older than `ttl` at `now`. `Some` if this call holds it now, `None` if
/// another holder does.
pub async fn take(
    store: &dyn ObjectStore,
    path: &Path,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Held>> {
    let token = format!("{:016x}", rand::random::<u64>());
    let held = Held {
        path: path.clone(),
        token: token.clone(),
    };
    let body = PutPayload::from(
        serde_json::to_vec(&Body {
            taken: now.to_rfc3339(),
            token: token.clone(),
        })
        .expect("serializes"),
    );
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    for _ in 0..3 {
        match store.put_opts(path, body.clone(), create.clone()).await {
            Ok(_) => return Ok(Some(held)),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            // The create may have been applied with its answer lost: the
            // lease, read back, says whose it is.
            Err(e) if crate::retry::transient(&e) => {}
            Err(e) => return Err(Error::write(path, e)),
        }
        let (meta, holder) = match store.get(path).await {
            Ok(r) => {
                let meta = r.meta.clone();
                let bytes = r.bytes().await.map_err(|e| Error::read(path, e))?;
                let holder: Option<Body> = serde_json::from_slice(&bytes).ok();
                if holder.as_ref().is_some_and(|h| h.token == token) {
                    return Ok(Some(held));
                }
                (meta, holder)
            }
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(Error::read(path, e)),
        };
        // Taken when the store wrote it, or later by its taker's clock (the
        // clock takers go by).
        let taken = holder
            .and_then(|h| DateTime::parse_from_rfc3339(&h.taken).ok())
            .map_or(meta.last_modified, |t| t.to_utc().max(meta.last_modified));
        let age = (now - taken).to_std().unwrap_or_default();
        if age < ttl {
            return Ok(None);
        }
        tracing::warn!(lease = %path, age_s = age.as_secs(), "taking over a stale lease");
        let over = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: meta.e_tag.clone(),
                version: meta.version.clone(),
            }),
            ..Default::default()
        };
        match store.put_opts(path, body.clone(), over).await {
            Ok(_) => return Ok(Some(held)),
            // Another taker got there first (or the holder renewed it): read
            // it again. A lost answer is settled by the token, read back.
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => {}
            Err(e) if crate::retry::transient(&e) => {}
            // No conditional overwrite (a local folder, one process).
            Err(object_store::Error::NotImplemented { .. }) => release(store, path).await?,
            Err(e) => return Err(Error::write(path, e)),
        }
    }
    Ok(None)
}

/// Delete the lease at `path`, whoever holds it (nothing to do if it is
/// gone): for a stale lease on a store without conditional overwrites;
/// a holder releases through [`Held::release`].
async fn release(store: &dyn ObjectStore, path: &Path) -> Result<()> {
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
        let first = take(&store, &path, ttl, t0).await.unwrap().expect("free");
        assert!(
            take(&store, &path, ttl, t0).await.unwrap().is_none(),
            "held"
        );
        let later = t0 + chrono::Duration::seconds(59);
        assert!(
            take(&store, &path, ttl, later).await.unwrap().is_none(),
            "not stale yet"
        );
        let stale = t0 + chrono::Duration::seconds(120);
        let second = take(&store, &path, ttl, stale).await.unwrap();
        let second = second.expect("taken over");
        // The first holder, past its time, does not release the second's.
        first.release(&store).await.unwrap();
        assert!(take(&store, &path, ttl, stale).await.unwrap().is_none());
        second.clone().release(&store).await.unwrap();
        let third = take(&store, &path, ttl, stale).await.unwrap();
        third.expect("free again").release(&store).await.unwrap();
        second.release(&store).await.unwrap();
    }

    /// Two takers of one stale lease, each reading it stale before either
    /// writes; the second's write comes well after the first's (a slow
    /// network, a paused process). One holds it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_two_takers_racing_for_a_stale_lease_one_wins() {
        use crate::fault::{Faults, FaultyStore, Hook};
        use std::sync::Arc;
        let path = Path::from("t/lease.json");
        let ttl = Duration::from_secs(60);
        let t0 = Utc::now();
        // Each taker's third call (its first write after reading the
        // stale lease) waits: the first a little, the second longer.
        let wait_before_third = |ms: u64| -> Hook {
            Arc::new(move |n| {
                let ms = if n == 3 { ms } else { 0 };
                Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
            })
        };
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let old = take(inner.as_ref(), &path, ttl, t0).await.unwrap();
        assert!(old.is_some());
        let a = FaultyStore::new(inner.clone(), Faults::None).with_hook(wait_before_third(20));
        let b = FaultyStore::new(inner.clone(), Faults::None).with_hook(wait_before_third(200));
        let stale = t0 + chrono::Duration::seconds(120);
        let (a, b) = tokio::join!(take(&a, &path, ttl, stale), take(&b, &path, ttl, stale));
        let holders = [a.unwrap(), b.unwrap()];
        let n = holders.iter().filter(|h| h.is_some()).count();
        assert_eq!(n, 1, "{holders:?}");
        // The winner's lease is the one in the store.
        let winner = holders.into_iter().flatten().next().unwrap();
        let body = inner.get(&path).await.unwrap().bytes().await.unwrap();
        let body: Body = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.token, winner.token);
    }
}
