//! An [`ObjectStore`] wrapper for fault-injection tests: it numbers every
//! call (1, 2, …; each part and the completion of a multipart upload count
//! as calls), and can fail chosen calls, as a storage outage or a crash would,
//! and run a hook before a chosen call (to race other work against it).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
//! use sluice::fault::{Faults, FaultyStore};
//!
//! let store = FaultyStore::new(Arc::new(InMemory::new()), Faults::CrashAt(2));
//! store.put(&Path::from("a"), "1".into()).await.unwrap(); // call 1
//! assert!(store.put(&Path::from("b"), "2".into()).await.is_err()); // call 2: the "crash"
//! assert!(store.head(&Path::from("a")).await.is_err()); // and every call after it
//! assert_eq!(store.calls(), 3);
//! # });
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// Which calls fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faults {
    /// None.
    None,
    /// Only call N (a transient error: a timeout, a 503).
    Once(u64),
    /// Call N and every call after it (the process died at call N).
    CrashAt(u64),
}

/// How a failing call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call never reaches the store: a connection reset before it was
    /// sent (transient).
    Refused,
    /// A write (put, conditional put, multipart completion, delete) is
    /// applied by the store and its answer is lost on the way back: the
    /// caller sees a connection reset. Reads fail as [`FaultKind::Refused`].
    AnswerLost,
    /// The store answers with this HTTP status, as `object_store` reports it:
    /// 403 as `PermissionDenied`, 404 as `NotFound`, any other as a `Generic`
    /// error whose source prints the status line.
    Status(u16),
}

/// Run before a call, given its number.
pub type Hook = Arc<dyn Fn(u64) -> BoxFuture<'static, ()> + Send + Sync>;

/// The wrapper; see the module docs.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Faults,
    kind: FaultKind,
    hook: Option<Hook>,
    calls: Arc<AtomicU64>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Faults) -> Self {
        FaultyStore {
            inner,
            faults,
            kind: FaultKind::Refused,
            hook: None,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Fail the chosen calls this way (by default [`FaultKind::Refused`]).
    pub fn with_kind(mut self, kind: FaultKind) -> Self {
        self.kind = kind;
        self
    }

    /// Run `hook` before every call (it sees the call's number).
    pub fn with_hook(mut self, hook: Hook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Number the next call, run the hook, and say whether it fails.
    fn next(&self) -> (u64, bool) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        (n, fails(self.faults, n))
    }

    async fn enter(&self, op: &'static str) -> Result<()> {
        let (n, fail) = self.next();
        if let Some(h) = &self.hook {
            h(n).await;
        }
        if fail {
            Err(injected(op, n, self.kind))
        } else {
            Ok(())
        }
    }

    /// `inner`, a listing, failed at its start when the schedule says so.
    fn listing(
        &self,
        inner: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let (n, fail) = self.next();
        let kind = self.kind;
        let hook = self.hook.clone();
        futures::stream::once(async move {
            if let Some(h) = &hook {
                h(n).await;
            }
            if fail {
                futures::stream::once(async move { Err(injected("list", n, kind)) }).boxed()
            } else {
                inner
            }
        })
        .flatten()
        .boxed()
    }
}

fn fails(faults: Faults, n: u64) -> bool {
    match faults {
        Faults::None => false,
        Faults::Once(k) => n == k,
        Faults::CrashAt(k) => n >= k,
    }
}

/// Whether failing call `n` is nevertheless applied by the store: its
/// answer is lost. Only the first failing call is (after a crash, nothing
/// more reaches the store).
fn applied(faults: Faults, kind: FaultKind, n: u64) -> bool {
    kind == FaultKind::AnswerLost
        && matches!(faults, Faults::Once(k) | Faults::CrashAt(k) if k == n)
}

fn injected(op: &'static str, n: u64, kind: FaultKind) -> object_store::Error {
    let what = format!("injected fault: {op}, call {n}");
    match kind {
        // As object_store's HTTP client reports a connection reset mid-call.
        FaultKind::Refused | FaultKind::AnswerLost => object_store::Error::Generic {
            store: "FaultyStore",
            source: Box::new(object_store::client::HttpError::new(
                object_store::client::HttpErrorKind::Interrupted,
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, what),
            )),
        },
        FaultKind::Status(403) => object_store::Error::PermissionDenied {
            path: what.clone(),
            source: format!("Server returned non-2xx status code: 403 Forbidden: {what}").into(),
        },
        FaultKind::Status(404) => object_store::Error::NotFound {
            path: what.clone(),
            source: format!("Server returned non-2xx status code: 404 Not Found: {what}").into(),
        },
        FaultKind::Status(status) => object_store::Error::Generic {
            store: "FaultyStore",
            source: format!("Server returned non-2xx status code: {status}: {what}").into(),
        },
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({:?}, {:?})", self.inner, self.faults)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let (n, fail) = self.next();
        if let Some(h) = &self.hook {
            h(n).await;
        }
        if !fail {
            return self.inner.put_opts(location, payload, opts).await;
        }
        if applied(self.faults, self.kind, n) {
            let _ = self.inner.put_opts(location, payload, opts).await;
        }
        Err(injected("put", n, self.kind))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.enter("create multipart upload").await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            faults: self.faults,
            kind: self.kind,
            hook: self.hook.clone(),
            calls: self.calls.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.enter("get").await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.enter("get ranges").await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        let (faults, kind) = (self.faults, self.kind);
        let hook = self.hook.clone();
        let calls = self.calls.clone();
        locations
            .then(move |location| {
                let inner = inner.clone();
                let hook = hook.clone();
                let calls = calls.clone();
                async move {
                    let location = location?;
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some(h) = &hook {
                        h(n).await;
                    }
                    let fail = fails(faults, n);
                    if fail && !applied(faults, kind, n) {
                        return Err(injected("delete", n, kind));
                    }
                    let mut out = inner
                        .delete_stream(futures::stream::once(async move { Ok(location) }).boxed());
                    let answer = match out.next().await {
                        Some(r) => r,
                        None => Err(injected("delete (no answer)", n, FaultKind::Refused)),
                    };
                    if fail {
                        return Err(injected("delete", n, kind));
                    }
                    answer
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.listing(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.listing(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.enter("list with delimiter").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.enter("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }
}

struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Faults,
    kind: FaultKind,
    hook: Option<Hook>,
    calls: Arc<AtomicU64>,
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyUpload({:?})", self.inner)
    }
}

impl FaultyUpload {
    fn next(&self) -> (u64, bool) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        (n, fails(self.faults, n))
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (n, fail) = self.next();
        let (hook, kind) = (self.hook.clone(), self.kind);
        // A refused part never reaches the store; a part whose answer is
        // lost does.
        let part = (!fail || applied(self.faults, kind, n)).then(|| self.inner.put_part(data));
        async move {
            if let Some(h) = &hook {
                h(n).await;
            }
            match part {
                Some(part) if fail => {
                    let _ = part.await;
                    Err(injected("upload part", n, kind))
                }
                Some(part) => part.await,
                None => Err(injected("upload part", n, kind)),
            }
        }
        .boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let (n, fail) = self.next();
        if let Some(h) = &self.hook {
            h(n).await;
        }
        if !fail {
            return self.inner.complete().await;
        }
        if applied(self.faults, self.kind, n) {
            let _ = self.inner.complete().await;
        }
        Err(injected("complete multipart upload", n, self.kind))
    }

    async fn abort(&mut self) -> Result<()> {
        // Cleaning up is not counted: a crashed process does not abort, and
        // the lake's lifecycle rule removes abandoned uploads.
        self.inner.abort().await
    }
}
