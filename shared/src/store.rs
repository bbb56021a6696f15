//! Opening storage from a URL or a path: `s3://bucket/prefix`, `file:///dir`,
//! a plain path, or `memory://` (tests). Everything else in the engine talks
//! to `Arc<dyn ObjectStore>` and a prefix.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::chunked::ChunkedStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{Error, Result};

/// How many independent requests to storage one task makes at once where it
/// has many to make (the files a chunk closes, the partitions a local
/// catalog adds). On S3 a small PUT takes tens of milliseconds, nearly all
/// of it waiting: 56 one after another held a stream batch for 1.6 s
/// (bench/README.md, "Streams").
pub const REQUESTS_AT_ONCE: usize = 16;

/// Size of the pieces local files are read in.
const LOCAL_READ_PIECE: usize = 1024 * 1024;

/// How to reach AWS: from the environment (the default: credentials, region
/// and `AWS_ENDPOINT_URL` as the SDKs read them), or set explicitly, as tests
/// do to point everything at a local S3/Glue server.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// An endpoint for every service (`http://127.0.0.1:5000`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Static credentials: (access key id, secret access key).
    pub credentials: Option<(String, String)>,
}

impl AwsOptions {
    /// The S3 store of one bucket.
    pub fn s3(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        if let Some((id, secret)) = &self.credentials {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let store = b
            .build()
            .map_err(|e| Error::Config(format!("cannot open s3://{bucket}: {e}")))?;
        Ok(Arc::new(crate::retry::RetryStore::new(Arc::new(store))))
    }

    /// The SDK configuration (for Glue and SQS clients).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        // The SDK retries throttling, transient and server errors of each
        // call itself (standard mode, jittered backoff); callers retry only
        // what it cannot see (SQS entries a batch failed, Glue conflicts).
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5));
        if let Some(e) = &self.endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some((id, secret)) = &self.credentials {
            loader = loader.credentials_provider(aws_sdk_glue::config::Credentials::new(
                id, secret, None, None, "sluice",
            ));
        }
        loader.load().await
    }
}

/// Read a whole small text object (a pipeline file) from a path or URL.
pub async fn read_text(spec: &str, aws: &AwsOptions) -> Result<String> {
    if spec.starts_with("s3://") {
        let (dir, name) = spec
            .rsplit_once('/')
            .ok_or_else(|| Error::Config(format!("{spec}: not an object URL")))?;
        let location = Location::open_with(dir, false, aws)?;
        return location.read_text(name).await;
    }
    let path = spec.strip_prefix("file://").unwrap_or(spec);
    std::fs::read_to_string(path).map_err(|e| Error::read(spec, e))
}

/// A store and the prefix inside it that is the root of a lake or an input.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The URL the location was opened from, without a trailing `/`.
    pub url: String,
}

impl Location {
    /// Open a location. A plain path is a local folder; with `create` it is
    /// made if missing (a lake), otherwise it must exist (an input).
    pub fn open(spec: &str, create: bool) -> Result<Location> {
        Location::open_with(spec, create, &AwsOptions::default())
    }

    /// [`Location::open`], reaching S3 as `aws` says.
    pub fn open_with(spec: &str, create: bool, aws: &AwsOptions) -> Result<Location> {
        let spec = spec.trim();
        if spec.starts_with("s3://") || spec.starts_with("s3a://") {
            let url = Url::parse(spec)
                .map_err(|e| Error::Config(format!("invalid URL {spec:?}: {e}")))?;
            let bucket = url
                .host_str()
                .ok_or_else(|| Error::Config(format!("no bucket in {spec:?}")))?;
            let store = aws.s3(bucket)?;
            let prefix = Path::parse(url.path())
                .map_err(|e| Error::Config(format!("bad path in {spec:?}: {e}")))?;
            return Ok(Location {
                store,
                url: format!("s3://{bucket}/{prefix}")
                    .trim_end_matches('/')
                    .to_string(),
                prefix,
            });
        }
        if spec.starts_with("memory://") {
            return Ok(Location {
                store: Arc::new(InMemory::new()),
                prefix: Path::default(),
                url: "memory://".into(),
            });
        }
        let path = match spec.strip_prefix("file://") {
            Some(p) => std::path::PathBuf::from(p),
            None => std::path::PathBuf::from(spec),
        };
        if create {
            std::fs::create_dir_all(&path).map_err(|e| {
                Error::Config(format!("cannot create the folder {}: {e}", path.display()))
            })?;
        }
        let dir = std::fs::canonicalize(&path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if !dir.is_dir() {
            return Err(Error::Config(format!("{} is not a folder", path.display())));
        }
        // The store is the file system's root and the folder its prefix, as
        // an S3 location is a bucket and a prefix: a key and the folder's
        // URL then name the same file (Delta's log store resolves a table's
        // URL path against the store's root).
        let store = LocalFileSystem::new().with_automatic_cleanup(true);
        let prefix = Path::from_filesystem_path(&dir)
            .map_err(|e| Error::Config(format!("cannot open {}: {e}", dir.display())))?;
        // Local reads come in 8 KiB pieces, each a blocking task; read 1 MiB at a time.
        let store = ChunkedStore::new(Arc::new(store), LOCAL_READ_PIECE);
        let store = FolderRace(store);
        Ok(Location {
            store: Arc::new(store),
            prefix,
            url: format!("file://{}", dir.display()),
        })
    }

    /// An in-memory location (for tests).
    pub fn memory() -> Location {
        Location::open("memory://", false).expect("memory store")
    }

    /// The path of `relative` (already-safe `/`-separated segments) under the prefix.
    pub fn child(&self, relative: &str) -> Result<Path> {
        let joined = if self.prefix.as_ref().is_empty() {
            relative.to_string()
        } else {
            format!("{}/{}", self.prefix, relative)
        };
        // Never retryable: a key with a `.` or `..` segment, an empty
        // segment or a control character is refused for good, naming it.
        Path::parse(&joined).map_err(|e| {
            Error::Config(format!(
                "{}/{relative:?} is not a key sluice reads or writes: {e}",
                self.url
            ))
        })
    }

    /// `path` relative to the prefix.
    pub fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        let p = self.prefix.as_ref();
        if p.is_empty() {
            return full.to_string();
        }
        full.strip_prefix(p)
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(full)
            .to_string()
    }

    /// The full URL of a path in this store.
    pub fn url_of(&self, path: &Path) -> String {
        format!("{}/{}", self.url, self.relative(path))
    }

    /// The object at `path`, or `None` if there is none. A failure keeps the
    /// storage error as its cause.
    pub async fn get_bytes(&self, path: &Path) -> Result<Option<bytes::Bytes>> {
        let read = async { self.store.get(path).await?.bytes().await };
        match read.await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::read(self.url_of(path), e)),
        }
    }

    /// The text of the object `name` under this location (a pipeline file);
    /// a missing object is an error naming it.
    pub async fn read_text(&self, name: &str) -> Result<String> {
        let path = self.child(name)?;
        let url = self.url_of(&path);
        let read = async { self.store.get(&path).await?.bytes().await };
        let bytes = read.await.map_err(|e| Error::read(&url, e))?;
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::read(&url, format!("not UTF-8: {e}")))
    }

    /// The JSON document at `path`, or `None` if there is none; one that does
    /// not parse is an error naming the object.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<Option<T>> {
        match self.get_bytes(path).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::read(
                    self.url_of(path),
                    format!("not the JSON expected here: {e}"),
                )
            }),
        }
    }

    /// Write `value` as (pretty) JSON to `path`, replacing what is there.
    pub async fn put_json<T: serde::Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let body = serde_json::to_vec_pretty(value).expect("our documents serialize");
        self.store
            .put(path, object_store::PutPayload::from(body))
            .await
            .map_err(|e| Error::write(self.url_of(path), e))?;
        Ok(())
    }
}

/// A local store that deletes emptied folders (so a lake on disk holds no
/// husks of leases and staging files) has a race: one task's delete can
/// remove a folder between another task creating it and writing its file
/// there, and the write fails with "Unable to create dir". The folder is
/// then simply missing again, so such a write is tried again; anything else,
/// a missing source of a copy or an existing target of a create-only write
/// included (those are not `Generic` errors), fails at once.
#[derive(Debug)]
struct FolderRace(ChunkedStore);

/// Tries of a write whose folder vanished under it, at once.
const FOLDER_RACE: crate::retry::Policy = crate::retry::Policy {
    attempts: 8,
    base: std::time::Duration::ZERO,
    cap: std::time::Duration::ZERO,
    within: None,
};

impl std::fmt::Display for FolderRace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether a local write failed because a folder on its path vanished.
fn folder_vanished(e: &object_store::Error) -> bool {
    let object_store::Error::Generic { source, .. } = e else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            // NotFound: a folder on the path went before the file was made;
            // AlreadyExists: creating a folder found it, and it went before
            // the check that it is a folder.
            use std::io::ErrorKind::{AlreadyExists, NotFound};
            return matches!(io.kind(), NotFound | AlreadyExists);
        }
        cause = c.source();
    }
    false
}

/// Runs a local write, again (at once) while its folder vanishes under it.
async fn retry_vanished<T, F, Fut>(op: F) -> object_store::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    FOLDER_RACE.run("local write", folder_vanished, op).await.0
}

#[async_trait::async_trait]
impl ObjectStore for FolderRace {
    async fn put_opts(
        &self,
        location: &Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        retry_vanished(|| self.0.put_opts(location, payload.clone(), opts.clone())).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        retry_vanished(|| self.0.put_multipart_opts(location, opts.clone())).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.0.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        retry_vanished(|| self.0.copy_opts(from, to, options.clone())).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        retry_vanished(|| self.0.rename_opts(from, to, options.clone())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_climb_out_are_refused_for_good() {
        let lake = Location::memory();
        for bad in ["a/../b", "../b", "a/./b", "a//b"] {
            let e = lake.child(bad).unwrap_err();
            assert!(!e.is_retryable(), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
        assert_eq!(lake.child("a/b.jsonl").unwrap().as_ref(), "a/b.jsonl");
    }

    /// Two writers in neighbouring folders, each deleting its file again:
    /// every delete empties and removes the shared parents while the other
    /// writer may be creating them. No write may fail, and the folders are
    /// gone at the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_survive_a_neighbour_removing_their_emptied_folders() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Location::open(dir.path().to_str().unwrap(), false).unwrap();
        let writer = |folder: &'static str| {
            let lake = lake.clone();
            tokio::spawn(async move {
                let path = lake.child(&format!("a/b/{folder}/lease.json")).unwrap();
                for i in 0..1500 {
                    lake.store
                        .put(&path, format!("{i}").into())
                        .await
                        .map_err(|e| format!("write {i} in {folder}: {e}"))?;
                    lake.store.delete(&path).await.unwrap();
                }
                Ok::<_, String>(())
            })
        };
        let (one, two) = (writer("c"), writer("d"));
        one.await.unwrap().unwrap();
        two.await.unwrap().unwrap();
        assert!(!dir.path().join("a").exists());
    }
}
