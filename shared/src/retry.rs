//! Trying again: one [`Policy`] (how many attempts, how long between them,
//! with jitter, for how long at most) that every retry loop of Sluice runs
//! under, the caller saying which failures are worth another attempt from
//! their typed cause ([`classify`] for storage errors); and [`RetryStore`].
//!
//! An [`ObjectStore`] wrapper that retries what `object_store`'s own client
//! does not: a response whose body breaks off after its status line (a reset
//! connection while a listing or a small object is being read), and a call
//! still failing with a server error once the client's retries are spent.
//!
//! Only idempotent calls are retried: reads, listings (resumed after the last
//! key already handed on, so none is given twice), deletes, copies and
//! unconditional puts. Conditional puts (`PutMode::Create`/`Update`) are not:
//! their first attempt may have been applied, and repeating it would answer
//! "already exists" for our own write. A multipart upload whose completion
//! fails is checked with a HEAD: a completion applied whose answer was lost
//! is a success ([`CheckedUpload`]). Backoff is exponential with full jitter.
//! The S3 stores of `store` are wrapped in it.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Attempts of a storage call, the first included.
const ATTEMPTS: u32 = 5;

/// How a loop tries again: at most `attempts` attempts (the first
/// included), and no new one once `within` has passed since the first (if
/// set); before attempt n + 1, a wait of between half and all of
/// `base` × 2^n, at most `cap` (jitter, so that writers that failed
/// together do not try again together). Which failures are worth another
/// attempt is the caller's to say, from the error's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    pub within: Option<Duration>,
}

impl Policy {
    /// Storage calls (S3), after the client's own retries.
    pub const STORAGE: Policy = Policy {
        attempts: ATTEMPTS,
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        within: None,
    };

    /// Service calls (Glue, SQS) throttled or failing on the server's side.
    pub const SERVICE: Policy = Policy {
        attempts: 8,
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        within: None,
    };

    /// A commit another writer's commit got to first: planned again from
    /// the new state, soon.
    pub const CONFLICT: Policy = Policy {
        attempts: 8,
        base: Duration::from_millis(10),
        cap: Duration::from_secs(1),
        within: None,
    };

    /// Waiting for a lease another holder has: tried until `wait` has passed.
    pub const fn lease(wait: Duration) -> Policy {
        Policy {
            attempts: u32::MAX,
            base: Duration::from_millis(10),
            cap: Duration::from_secs(2),
            within: Some(wait),
        }
    }

    /// The wait after attempt `attempt` (1 for the first) failed.
    pub fn wait(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let ms = full.as_millis() as u64;
        Duration::from_millis(rand::random_range(ms / 2..=ms))
    }

    /// Whether attempt `attempt` (1 for the first), having failed, may be
    /// followed by another, `started` being when the first began.
    pub fn again(&self, attempt: u32, started: std::time::Instant) -> bool {
        attempt < self.attempts && self.within.is_none_or(|w| started.elapsed() < w)
    }

    /// Run `f` until it succeeds, fails in a way `worth` says is not worth
    /// another attempt, or the policy is spent; the last outcome, and how
    /// many attempts were made. `what` names the work in the log.
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        worth: impl Fn(&E) -> bool,
        mut f: F,
    ) -> (std::result::Result<T, E>, u32)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, E>>,
        E: fmt::Display,
    {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match f().await {
                Err(e) if worth(&e) && self.again(attempt, started) => {
                    let wait = self.wait(attempt);
                    tracing::debug!(what, attempt, wait_ms = wait.as_millis() as u64, error = %e, "trying again");
                    tokio::time::sleep(wait).await;
                }
                outcome => return (outcome, attempt),
            }
        }
    }
}

/// What an error's cause says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A transport failure, a timeout, throttling or a server error: the same
    /// call can succeed later.
    Transient,
    /// An answer: the object is missing, exists, is forbidden, the request is
    /// malformed. The same call gets the same answer.
    Permanent,
    /// Nothing in the cause says either.
    Unknown,
}

/// Whether an error is worth another attempt, decided from its cause: the
/// chain of `source()`s is walked and the first error that says is believed.
/// `object_store`'s error variants and its HTTP client's [`HttpErrorKind`],
/// and I/O error kinds, are read from their types. Two things `object_store`
/// gives only as text, and only those, are read from the text, here and
/// nowhere else ([`verdict_from_text`]): the HTTP status of a failed request,
/// and the S3 error code of an error returned in a 200 response.
///
/// [`HttpErrorKind`]: object_store::client::HttpErrorKind
pub fn classify(e: &(dyn std::error::Error + 'static)) -> Verdict {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let verdict = verdict_of(c);
        if verdict != Verdict::Unknown {
            return verdict;
        }
        cause = c.source();
    }
    Verdict::Unknown
}

/// What one error in a chain says on its own.
fn verdict_of(e: &(dyn std::error::Error + 'static)) -> Verdict {
    use object_store::client::{HttpError, HttpErrorKind};
    if let Some(e) = e.downcast_ref::<object_store::Error>() {
        return match e {
            object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::UnknownConfigurationKey { .. } => Verdict::Permanent,
            // The source says.
            _ => Verdict::Unknown,
        };
    }
    // delta-rs's kernel keeps the storage error it met without naming it
    // as its source: follow it by hand.
    if let Some(delta_kernel::Error::ObjectStore(inner)) = e.downcast_ref::<delta_kernel::Error>() {
        return classify(inner);
    }
    if let Some(e) = e.downcast_ref::<HttpError>() {
        return match e.kind() {
            HttpErrorKind::Connect
            | HttpErrorKind::Request
            | HttpErrorKind::Timeout
            | HttpErrorKind::Interrupted
            // A body that cannot be decoded is, from S3, a body cut short.
            | HttpErrorKind::Decode => Verdict::Transient,
            _ => Verdict::Unknown,
        };
    }
    if let Some(e) = e.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        return match e.kind() {
            K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::TimedOut
            | K::Interrupted
            | K::WouldBlock => Verdict::Transient,
            K::NotFound | K::PermissionDenied | K::InvalidInput | K::InvalidData => {
                Verdict::Permanent
            }
            _ => Verdict::Unknown,
        };
    }
    if e.source().is_none() {
        // The innermost error: what its text says of a status or an S3 code.
        return verdict_from_text(&e.to_string());
    }
    Verdict::Unknown
}

/// The verdict of an error message that carries an HTTP status (object_store
/// prints `status code: 503 Service Unavailable`) or an S3 error code in an
/// XML body (`<Code>SlowDown</Code>`, as S3 answers a 200 to a multipart
/// completion that failed). Anything else is [`Verdict::Unknown`].
pub fn verdict_from_text(text: &str) -> Verdict {
    const TRANSIENT_CODES: [&str; 5] = [
        "<Code>SlowDown</Code>",
        "<Code>InternalError</Code>",
        "<Code>ServiceUnavailable</Code>",
        "<Code>RequestTimeout</Code>",
        "<Code>RequestTimeTooSkewed</Code>",
    ];
    if TRANSIENT_CODES.iter().any(|c| text.contains(c)) {
        return Verdict::Transient;
    }
    if let Some(at) = text.find("status code: ") {
        let digits: String = text[at + 13..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        return match digits.parse::<u16>() {
            Ok(408 | 429) | Ok(500..=599) => Verdict::Transient,
            Ok(400..=499) => Verdict::Permanent,
            _ => Verdict::Unknown,
        };
    }
    Verdict::Unknown
}

/// Whether a storage error is worth another attempt now: its cause says it is
/// transient ([`classify`]).
pub fn transient(e: &object_store::Error) -> bool {
    classify(e) == Verdict::Transient
}

async fn retry<T, F, Fut>(op: &str, location: &str, f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (outcome, attempts) = Policy::STORAGE.run(op, transient, f).await;
    if attempts > 1 {
        tracing::warn!(
            op,
            location,
            attempts,
            ok = outcome.is_ok(),
            "a storage call was tried again"
        );
    }
    outcome
}

/// How far the store's clock may be behind ours, for [`CheckedUpload`].
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A multipart upload whose completion is checked when its answer is an
/// error. The completion is applied by the store before it answers, so a
/// lost answer (a reset or timeout after S3 acted) fails a write that took
/// place, and its retry meets an upload that no longer exists (S3 answers
/// NoSuchUpload). If the object is then there, with exactly the bytes sent
/// and written since this upload began, the upload is taken as completed.
/// (Sluice's output names are fixed by their content's inputs, so an object
/// of that name and size written since is this one.)
struct CheckedUpload {
    upload: Box<dyn MultipartUpload>,
    store: Arc<dyn ObjectStore>,
    location: Path,
    bytes: u64,
    started: chrono::DateTime<chrono::Utc>,
}

impl fmt::Debug for CheckedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckedUpload({}, {} bytes)", self.location, self.bytes)
    }
}

#[async_trait]
impl MultipartUpload for CheckedUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        self.bytes += data.content_length() as u64;
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let error = match self.upload.complete().await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let head = retry("head", self.location.as_ref(), || {
            self.store.head(&self.location)
        })
        .await;
        match head {
            Ok(meta)
                if meta.size == self.bytes && meta.last_modified >= self.started - CLOCK_SKEW =>
            {
                tracing::warn!(location = %self.location, bytes = self.bytes, error = %error,
                    "the answer to completing an upload was an error, but the object is there, whole: taken as completed");
                Ok(PutResult {
                    e_tag: meta.e_tag,
                    version: meta.version,
                })
            }
            _ => Err(error),
        }
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

/// `store`'s listing of `prefix`, of the keys after `after` if given.
fn list_after(
    store: &dyn ObjectStore,
    prefix: Option<&Path>,
    after: Option<&Path>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    match after {
        Some(after) => store.list_with_offset(prefix, after),
        None => store.list(prefix),
    }
}

/// Retries transient failures of idempotent calls; see the module docs.
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
}

impl RetryStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        RetryStore { inner }
    }

    /// A listing of `prefix` (after `offset`, if given) that, when the
    /// store fails part-way with a transient error, starts again after the
    /// last key it gave, within the storage retry policy.
    fn listing(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        let first = list_after(inner.as_ref(), prefix.as_ref(), offset);
        struct State {
            inner: Arc<dyn ObjectStore>,
            prefix: Option<Path>,
            stream: BoxStream<'static, Result<ObjectMeta>>,
            last: Option<Path>,
            attempt: u32,
            started: std::time::Instant,
        }
        let state = State {
            inner,
            prefix,
            stream: first,
            last: offset.cloned(),
            attempt: 1,
            started: std::time::Instant::now(),
        };
        futures::stream::unfold(state, |mut s| async move {
            loop {
                match s.stream.next().await {
                    None => return None,
                    Some(Ok(meta)) => {
                        s.last = Some(meta.location.clone());
                        s.attempt = 1;
                        s.started = std::time::Instant::now();
                        return Some((Ok(meta), s));
                    }
                    Some(Err(e))
                        if Policy::STORAGE.again(s.attempt, s.started) && transient(&e) =>
                    {
                        let wait = Policy::STORAGE.wait(s.attempt);
                        tracing::warn!(op = "list", attempt = s.attempt, wait_ms = wait.as_millis() as u64, error = %e, "retrying a listing after the last key it gave");
                        s.attempt += 1;
                        tokio::time::sleep(wait).await;
                        s.stream =
                            list_after(s.inner.as_ref(), s.prefix.as_ref(), s.last.as_ref());
                    }
                    Some(Err(e)) => {
                        // Nothing after an error that is not retried.
                        s.stream = futures::stream::empty().boxed();
                        return Some((Err(e), s));
                    }
                }
            }
        })
        .boxed()
    }
}

impl fmt::Display for RetryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        retry("put", location.as_ref(), || {
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = retry("create multipart upload", location.as_ref(), || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await?;
        Ok(Box::new(CheckedUpload {
            upload,
            store: self.inner.clone(),
            location: location.clone(),
            bytes: 0,
            started: chrono::Utc::now(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        retry("get", location.as_ref(), || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        retry("get ranges", location.as_ref(), || {
            self.inner.get_ranges(location, ranges)
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // In batches of S3's bulk delete (1,000 keys); a batch with a
        // transient failure is sent again whole (deleting twice is harmless).
        let inner = self.inner.clone();
        locations
            .chunks(1000)
            .then(move |batch| {
                let inner = inner.clone();
                async move {
                    let (paths, bad): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| p.is_ok());
                    let paths: Vec<Path> = paths.into_iter().map(|p| p.expect("ok")).collect();
                    let first = paths.first().map(|p| p.to_string()).unwrap_or_default();
                    let done = retry("delete", &first, || {
                        let inner = inner.clone();
                        let paths = paths.clone();
                        async move {
                            let out: Vec<Result<Path>> = inner
                                .delete_stream(
                                    futures::stream::iter(paths.into_iter().map(Ok)).boxed(),
                                )
                                .collect()
                                .await;
                            let mut out = out;
                            match out.iter().position(|r| r.as_ref().is_err_and(transient)) {
                                Some(i) => Err(out.swap_remove(i).expect_err("an error")),
                                None => Ok(out),
                            }
                        }
                    })
                    .await;
                    let mut out = bad;
                    match done {
                        Ok(results) => out.extend(results),
                        Err(e) => out.push(Err(e)),
                    }
                    futures::stream::iter(out)
                }
            })
            .flatten()
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.listing(prefix, None)
    }

    /// The store's own listing from `offset` (S3's `start-after`): without
    /// it, object_store's default lists the whole prefix and drops the keys
    /// up to `offset`, so each page of a backfill listed every page before it.
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.listing(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let at = prefix.map(|p| p.to_string()).unwrap_or_default();
        retry("list", &at, || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        retry("copy", from.as_ref(), || {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_policy_waits_between_half_and_all_of_its_doubling_wait_up_to_its_cap() {
        let p = Policy {
            attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            within: None,
        };
        for (attempt, full) in [(1, 200), (2, 400), (3, 800), (4, 1000), (30, 1000)] {
            for _ in 0..50 {
                let w = p.wait(attempt).as_millis() as u64;
                assert!((full / 2..=full).contains(&w), "attempt {attempt}: {w} ms");
            }
        }
    }

    #[test]
    fn a_policy_stops_at_its_attempts_or_once_its_time_is_up() {
        let started = std::time::Instant::now();
        let p = Policy {
            attempts: 3,
            ..Policy::CONFLICT
        };
        assert!(p.again(1, started) && p.again(2, started) && !p.again(3, started));
        let timed = Policy::lease(Duration::ZERO);
        assert!(!timed.again(1, started));
        assert!(Policy::lease(Duration::from_secs(60)).again(1_000, started));
    }

    #[tokio::test]
    async fn a_policy_tries_again_only_what_is_worth_it_and_says_how_often() {
        let quick = Policy {
            attempts: 4,
            base: Duration::ZERO,
            cap: Duration::ZERO,
            within: None,
        };
        let calls = AtomicU32::new(0);
        let flaky = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 3 {
                Err(format!("transient {n}"))
            } else {
                Ok(n)
            }
        };
        let (out, attempts) = quick.run("t", |_: &String| true, flaky).await;
        assert_eq!((out, attempts), (Ok(3), 3));
        calls.store(0, Ordering::SeqCst);
        let (out, attempts) = quick.run("t", |e: &String| e != "transient 1", flaky).await;
        assert_eq!((out, attempts), (Err("transient 1".to_string()), 1));
        calls.store(0, Ordering::SeqCst);
        let never = || async { Err::<u32, _>("down".to_string()) };
        let (out, attempts) = quick.run("t", |_: &String| true, never).await;
        assert_eq!((out, attempts), (Err("down".to_string()), 4));
    }

    /// Fails the first `n` listings after their first item with a body error.
    #[derive(Debug)]
    struct Flaky {
        inner: InMemory,
        breaks: AtomicU32,
        /// Listings to fail before their first item.
        cold_breaks: AtomicU32,
        /// Listings asked of this store: whole, and from an offset.
        lists: AtomicU32,
        offset_lists: AtomicU32,
    }

    impl Flaky {
        fn new() -> Flaky {
            Flaky {
                inner: InMemory::new(),
                breaks: AtomicU32::new(0),
                cold_breaks: AtomicU32::new(0),
                lists: AtomicU32::new(0),
                offset_lists: AtomicU32::new(0),
            }
        }

        /// `items`, broken before its first item while cold breaks are
        /// left, then after its first item while breaks are left.
        fn breaking(
            &self,
            items: BoxStream<'static, Result<ObjectMeta>>,
        ) -> BoxStream<'static, Result<ObjectMeta>> {
            if self.cold_breaks.load(Ordering::SeqCst) > 0 {
                self.cold_breaks.fetch_sub(1, Ordering::SeqCst);
                return futures::stream::once(async { Err(body_error()) }).boxed();
            }
            if self.breaks.load(Ordering::SeqCst) > 0 {
                self.breaks.fetch_sub(1, Ordering::SeqCst);
                return items
                    .take(1)
                    .chain(futures::stream::once(async { Err(body_error()) }))
                    .boxed();
            }
            items
        }
    }

    impl fmt::Display for Flaky {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Flaky")
        }
    }

    fn body_error() -> object_store::Error {
        // What object_store's HTTP client gives for a body cut short.
        object_store::Error::Generic {
            store: "Flaky",
            source: Box::new(object_store::client::HttpError::new(
                object_store::client::HttpErrorKind::Request,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "error reading a body from connection: end of file before message length reached",
                ),
            )),
        }
    }

    #[async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
            self.inner.put_opts(l, p, o).await
        }
        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
            if self.breaks.load(Ordering::SeqCst) > 0 {
                self.breaks.fetch_sub(1, Ordering::SeqCst);
                return Err(body_error());
            }
            self.inner.get_opts(l, o).await
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(l)
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            self.breaking(self.inner.list(p))
        }
        fn list_with_offset(
            &self,
            p: Option<&Path>,
            offset: &Path,
        ) -> BoxStream<'static, Result<ObjectMeta>> {
            self.offset_lists.fetch_add(1, Ordering::SeqCst);
            self.breaking(self.inner.list_with_offset(p, offset))
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> Result<()> {
            self.inner.copy_opts(f, t, o).await
        }
    }

    #[tokio::test]
    async fn a_broken_listing_resumes_after_its_last_key_and_gets_retry() {
        let flaky = Arc::new(Flaky::new());
        for k in ["a", "b", "c", "d"] {
            flaky.put(&Path::from(k), "x".into()).await.unwrap();
        }
        flaky.breaks.store(2, Ordering::SeqCst);
        let store = RetryStore::new(flaky.clone());
        let keys: Vec<String> = store
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert_eq!(keys, ["a", "b", "c", "d"], "each key once, in order");
        flaky.breaks.store(3, Ordering::SeqCst);
        let got = store
            .get(&Path::from("c"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], b"x");
        // Past the attempts, the error comes through.
        flaky.breaks.store(ATTEMPTS, Ordering::SeqCst);
        assert!(store.get(&Path::from("c")).await.is_err());
        // Answers about the object are not retried.
        assert!(matches!(
            store.get(&Path::from("zz")).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_listing_from_an_offset_is_the_stores_own_and_resumes_after_its_last_key() {
        // A backfill's later pages list from the previous page's last key:
        // the store is asked for that (S3's start-after), not for the whole
        // prefix to be filtered here, also when a break makes it start again.
        let flaky = Arc::new(Flaky::new());
        for k in ["a", "b", "c", "d", "e"] {
            flaky.put(&Path::from(k), "x".into()).await.unwrap();
        }
        let store = RetryStore::new(flaky.clone());
        let after = |store: &RetryStore| {
            store
                .list_with_offset(None, &Path::from("b"))
                .map(|m| m.unwrap().location.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(after(&store).await, ["c", "d", "e"]);
        assert_eq!(flaky.lists.load(Ordering::SeqCst), 0);
        assert_eq!(flaky.offset_lists.load(Ordering::SeqCst), 1);
        flaky.breaks.store(2, Ordering::SeqCst);
        assert_eq!(
            after(&store).await,
            ["c", "d", "e"],
            "each key once, in order"
        );
        assert_eq!(flaky.offset_lists.load(Ordering::SeqCst), 4);
        // Broken before it gave a key: it starts again from the offset.
        flaky.cold_breaks.store(1, Ordering::SeqCst);
        assert_eq!(after(&store).await, ["c", "d", "e"]);
        assert_eq!(flaky.lists.load(Ordering::SeqCst), 0);
        assert_eq!(flaky.offset_lists.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn each_text_pattern_gives_its_verdict() {
        let cases = [
            (
                "Server returned non-2xx status code: 503 Service Unavailable: ",
                Verdict::Transient,
            ),
            (
                "Server returned non-2xx status code: 500 Internal Server Error: ",
                Verdict::Transient,
            ),
            (
                "Server returned non-2xx status code: 429 Too Many Requests: ",
                Verdict::Transient,
            ),
            (
                "Server returned non-2xx status code: 408 Request Timeout: ",
                Verdict::Transient,
            ),
            (
                "Server returned non-2xx status code: 400 Bad Request: ",
                Verdict::Permanent,
            ),
            (
                "Server returned non-2xx status code: 403 Forbidden: ",
                Verdict::Permanent,
            ),
            (
                "Server returned error response: <Error><Code>SlowDown</Code></Error>",
                Verdict::Transient,
            ),
            (
                "Server returned error response: <Error><Code>InternalError</Code></Error>",
                Verdict::Transient,
            ),
            (
                "Server returned error response: <Error><Code>ServiceUnavailable</Code></Error>",
                Verdict::Transient,
            ),
            (
                "Server returned error response: <Error><Code>RequestTimeout</Code></Error>",
                Verdict::Transient,
            ),
            (
                "Server returned error response: <Error><Code>RequestTimeTooSkewed</Code></Error>",
                Verdict::Transient,
            ),
            (
                "Server returned error response: <Error><Code>AccessDenied</Code></Error>",
                Verdict::Unknown,
            ),
            ("invalid gzip header", Verdict::Unknown),
            // A 503 in a value is not a status.
            ("record 503: not an integer", Verdict::Unknown),
        ];
        for (text, want) in cases {
            assert_eq!(verdict_from_text(text), want, "{text}");
        }
    }

    #[test]
    fn causes_are_read_from_their_types() {
        use object_store::client::{HttpError, HttpErrorKind};
        let generic =
            |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                store: "S3",
                source,
            };
        let io = |k| std::io::Error::from(k);
        for kind in [
            HttpErrorKind::Connect,
            HttpErrorKind::Request,
            HttpErrorKind::Timeout,
            HttpErrorKind::Interrupted,
            HttpErrorKind::Decode,
        ] {
            let e = generic(Box::new(HttpError::new(
                kind,
                io(std::io::ErrorKind::Other),
            )));
            assert!(transient(&e), "{kind:?}");
        }
        assert!(transient(&generic(Box::new(io(
            std::io::ErrorKind::ConnectionReset
        )))));
        assert!(!transient(&generic(Box::new(io(
            std::io::ErrorKind::PermissionDenied
        )))));
        assert!(
            !transient(&object_store::Error::NotFound {
                path: "k".into(),
                source: "Server returned non-2xx status code: 503".into(),
            }),
            "the variant is the answer, whatever the text below it"
        );
        assert!(!transient(&object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "403".into(),
        }));
        assert_eq!(
            classify(&generic("what happened is unknown".into())),
            Verdict::Unknown
        );
    }
}
