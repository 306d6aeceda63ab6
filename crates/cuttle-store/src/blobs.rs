//! The blob store: where the files that live outside the database (package
//! files today) are kept, so that every server node on one PostgreSQL
//! database reaches the same ones.
//!
//! Two places, through one interface (the `object_store` crate):
//!
//! - a **directory** (the default is the data directory itself, so package
//!   files stay at `<data dir>/packages/<sha256>` as they always were; on a
//!   shared volume several nodes can use it);
//! - an **S3-compatible bucket** (`s3://BUCKET[/PREFIX]?endpoint=…&region=…`,
//!   credentials from the usual `AWS_*` environment variables).
//!
//! Blobs are content-addressed and written whole or not at all: a file is
//! published only once it is complete (a rename in a directory; one `PUT`, or
//! a multipart upload completed at the end, in a bucket), so no reader ever
//! sees half of one. Code that needs a local file (memory-mapping a package
//! for a delta, unpacking it on the built-in worker) asks [`Blobs::local_file`]:
//! in a directory that is the blob itself; from a bucket it is a copy in a
//! local cache under the data directory, checked against its hash when it is
//! fetched, removed when the blob is deleted, and trimmed oldest-first when
//! the cache outgrows its bound.

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Files up to this size go to a bucket in one request; larger ones as a
/// multipart upload of parts this size, so that no package is ever held in
/// memory whole.
pub const PART_SIZE: usize = 8 << 20;

/// Parts of one multipart upload in flight at once: at most this many
/// parts' bytes are in memory.
const PARTS_IN_FLIGHT: usize = 2;

/// The local cache of bucket blobs is trimmed back under this.
pub const DEFAULT_CACHE_LIMIT: u64 = 10 << 30;

/// A store that does not answer is reported within seconds rather than
/// retried for minutes; the push that needed it fails and can be repeated.
const RETRIES: usize = 2;
const RETRY_FOR: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The `--blob-store` setting cannot be used.
    #[error("blob_store: {0}")]
    Setting(String),
    /// The store did not answer, or refused.
    #[error("the blob store {store} could not {doing}: {detail}")]
    Unavailable {
        store: String,
        doing: String,
        detail: String,
    },
    #[error("the blob {0} is not in the blob store")]
    NotFound(String),
    /// A fetched copy did not have the content its name promises.
    #[error("the blob {hash} fetched from {store} is damaged: its content hashes to {actual}")]
    Damaged {
        store: String,
        hash: String,
        actual: String,
    },
    #[error("{doing} {path}: {source}")]
    Local {
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where blobs are kept, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobLocation {
    /// `None`: the data directory.
    Directory(Option<PathBuf>),
    Bucket(Bucket),
}

/// An S3-compatible bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    /// Keys start with this (no leading or trailing slash); may be empty.
    pub prefix: String,
    /// `None`: AWS itself (or `AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    /// `None`: `AWS_DEFAULT_REGION`/`AWS_REGION`, else us-east-1.
    pub region: Option<String>,
    /// Plain HTTP to the endpoint; only for a store on this machine.
    pub allow_http: bool,
}

impl BlobLocation {
    /// Reads a `--blob-store` value: `s3://BUCKET[/PREFIX][?endpoint=URL&region=R]`,
    /// `file:///PATH` or an absolute `/PATH`, or empty for the data directory.
    pub fn parse(text: &str) -> Result<BlobLocation, BlobError> {
        let text = text.trim();
        let bad = |why: String| BlobError::Setting(format!("'{text}' {why}"));
        if text.is_empty() {
            return Ok(BlobLocation::Directory(None));
        }
        if let Some(path) = text.strip_prefix("file://") {
            return directory(path).ok_or_else(|| bad("must name an absolute path".into()));
        }
        if text.starts_with('/') {
            return directory(text).ok_or_else(|| bad("must name an absolute path".into()));
        }
        let Some(rest) = text.strip_prefix("s3://") else {
            return Err(bad(
                "is not a blob store: use s3://BUCKET?endpoint=URL&region=REGION or an absolute directory path"
                    .into(),
            ));
        };
        let (place, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (name, prefix) = place.split_once('/').unwrap_or((place, ""));
        if !valid_bucket_name(name) {
            return Err(bad(format!(
                "names the bucket '{name}'; a bucket name is 3 to 63 lower-case letters, digits, dots and dashes"
            )));
        }
        let mut bucket = Bucket {
            name: name.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            region: None,
            allow_http: false,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "endpoint" => bucket.endpoint = Some(value.to_owned()),
                "region" => bucket.region = Some(value.to_owned()),
                "allow_http" => {
                    bucket.allow_http = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("has allow_http other than true or false".into())),
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "has the parameter '{key}'; the parameters are endpoint, region and allow_http \
                         (credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    )))
                }
            }
        }
        if let Some(endpoint) = &bucket.endpoint {
            let Some((scheme, host)) = endpoint.split_once("://") else {
                return Err(bad(format!(
                    "has the endpoint '{endpoint}', which is not a URL"
                )));
            };
            match scheme {
                "https" => {}
                // A loopback store (a development or test one) may be spoken
                // to in plain HTTP without saying so; anything else must ask.
                "http" if is_loopback(host) => bucket.allow_http = true,
                "http" if bucket.allow_http => {}
                "http" => {
                    return Err(bad(format!(
                        "has the plain-HTTP endpoint '{endpoint}'; add allow_http=true to send credentials unencrypted"
                    )))
                }
                _ => return Err(bad(format!("has the endpoint '{endpoint}', which is not http(s)"))),
            }
        }
        Ok(BlobLocation::Bucket(bucket))
    }
}

fn directory(path: &str) -> Option<BlobLocation> {
    let path = Path::new(path);
    path.is_absolute()
        .then(|| BlobLocation::Directory(Some(path.to_path_buf())))
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

fn is_loopback(host: &str) -> bool {
    let host = host.split('/').next().unwrap_or(host);
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "[::1]") || name.starts_with("127.")
}

/// The installation's blob store; cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    inner: Arc<Inner>,
}

struct Inner {
    objects: Arc<dyn ObjectStore>,
    /// Package files' keys begin with this.
    keys: String,
    /// `Some` for a directory: blobs are files there, read in place.
    root: Option<PathBuf>,
    /// Said in errors and at start.
    describe: String,
    /// Copies of bucket blobs, by hash.
    cache: PathBuf,
    cache_limit: u64,
    /// One fetch into the cache at a time, so that two deployments of the
    /// same package fetch it once.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.inner.describe)
    }
}

impl Blobs {
    /// Package files in `<dir>/packages`, as the data directory has always
    /// kept them; the directory is made on first write.
    pub fn directory(dir: &Path) -> Blobs {
        // Keys are the files' absolute paths, under a store rooted at `/`.
        let packages = dir.join("packages");
        let keys = packages
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned();
        Blobs {
            inner: Arc::new(Inner {
                objects: Arc::new(LocalFileSystem::new()),
                keys,
                root: Some(dir.to_path_buf()),
                describe: format!("directory {}", dir.display()),
                cache: dir.join("blob-cache"),
                cache_limit: DEFAULT_CACHE_LIMIT,
                fetching: Default::default(),
            }),
        }
    }

    /// Opens `location` and makes sure it answers, so that a wrong bucket,
    /// endpoint or credentials stop the server at start with a clear error
    /// rather than failing the first push. `data_dir` holds the default
    /// directory and the cache of bucket blobs.
    pub async fn open(location: &BlobLocation, data_dir: &Path) -> Result<Blobs, BlobError> {
        let bucket = match location {
            BlobLocation::Directory(dir) => {
                return Ok(Blobs::directory(dir.as_deref().unwrap_or(data_dir)))
            }
            BlobLocation::Bucket(b) => b,
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket.name)
            .with_retry(RetryConfig {
                max_retries: RETRIES,
                retry_timeout: RETRY_FOR,
                ..RetryConfig::default()
            })
            .with_client_options(ClientOptions::new().with_connect_timeout(CONNECT_TIMEOUT));
        if let Some(endpoint) = &bucket.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &bucket.region {
            builder = builder.with_region(region);
        }
        builder = builder.with_allow_http(bucket.allow_http);
        let place = match bucket.prefix.as_str() {
            "" => format!("s3://{}", bucket.name),
            prefix => format!("s3://{}/{prefix}", bucket.name),
        };
        let describe = match &bucket.endpoint {
            Some(e) => format!("{place} at {e}"),
            None => place,
        };
        let s3 = builder
            .build()
            .map_err(|e| BlobError::Setting(format!("{describe}: {e}")))?;
        let objects: Arc<dyn ObjectStore> = match bucket.prefix.as_str() {
            "" => Arc::new(s3),
            p => Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
        };
        let blobs = Blobs {
            inner: Arc::new(Inner {
                objects,
                keys: "packages".into(),
                root: None,
                describe,
                cache: data_dir.join("blob-cache"),
                cache_limit: DEFAULT_CACHE_LIMIT,
                fetching: Default::default(),
            }),
        };
        blobs.check().await?;
        Ok(blobs)
    }

    /// The same store with a cache bounded by `bytes`.
    pub fn with_cache_limit(self, bytes: u64) -> Blobs {
        let inner = Inner {
            objects: self.inner.objects.clone(),
            keys: self.inner.keys.clone(),
            root: self.inner.root.clone(),
            describe: self.inner.describe.clone(),
            cache: self.inner.cache.clone(),
            cache_limit: bytes,
            fetching: Default::default(),
        };
        Blobs {
            inner: Arc::new(inner),
        }
    }

    /// Lists the packages' keys once: the bucket exists and the credentials
    /// may read it.
    async fn check(&self) -> Result<(), BlobError> {
        let packages = Key::from(self.inner.keys.as_str());
        let listed = self.inner.objects.list_with_delimiter(Some(&packages));
        match tokio::time::timeout(RETRY_FOR + CONNECT_TIMEOUT, listed).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.unavailable("be read", e)),
            Err(_) => Err(BlobError::Unavailable {
                store: self.inner.describe.clone(),
                doing: "be read".into(),
                detail: "it did not answer".into(),
            }),
        }
    }

    /// A package file's key: `packages/<sha256>` (in a directory, under its path).
    fn package_key(&self, hash: &str) -> Key {
        Key::from(format!("{}/{hash}", self.inner.keys))
    }

    /// What and where the store is, for the start-up line and errors.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// The directory blobs are kept in, for a directory store.
    pub fn directory_root(&self) -> Option<&Path> {
        self.inner.root.as_deref()
    }

    /// Whether [`Blobs::publish_package`] moves the file it is given
    /// (a directory) rather than copying it (a bucket).
    pub fn publish_moves(&self) -> bool {
        self.inner.root.is_some()
    }

    fn unavailable(&self, doing: &str, e: object_store::Error) -> BlobError {
        BlobError::Unavailable {
            store: self.inner.describe.clone(),
            doing: doing.to_owned(),
            detail: e.to_string(),
        }
    }

    /// Publishes a complete, checked package file under its hash. In a
    /// directory the file is renamed into place (same file system as the
    /// data directory's uploads) and the rename made durable; to a bucket
    /// it is streamed from disk, a part at a time for a large one, and
    /// appears only once all of it is there; a failed upload is aborted.
    pub async fn publish_package(
        &self,
        file: &Path,
        hash: &str,
        size: u64,
    ) -> Result<(), BlobError> {
        if let Some(root) = &self.inner.root {
            let dir = root.join("packages");
            let to = dir.join(hash);
            tokio::fs::rename(file, &to)
                .await
                .map_err(|source| BlobError::Local {
                    doing: "could not store the package file",
                    path: to.clone(),
                    source,
                })?;
            // The rename reaches the disk before the row that names the file does.
            return tokio::task::spawn_blocking(move || {
                std::fs::File::open(&dir).and_then(|d| d.sync_all())
            })
            .await
            .map_err(|e| BlobError::Local {
                doing: "could not store the package file",
                path: to.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| BlobError::Local {
                doing: "could not store the package file",
                path: to,
                source,
            });
        }
        let key = self.package_key(hash);
        let read_error = |source| BlobError::Local {
            doing: "could not read the package file",
            path: file.to_path_buf(),
            source,
        };
        if size <= PART_SIZE as u64 {
            let bytes = tokio::fs::read(file).await.map_err(read_error)?;
            self.inner
                .objects
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| self.unavailable("store the package", e))?;
            return Ok(());
        }
        let upload = self
            .inner
            .objects
            .put_multipart(&key)
            .await
            .map_err(|e| self.unavailable("begin storing the package", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let sent: Result<(), BlobError> = async {
            let mut from = tokio::fs::File::open(file).await.map_err(read_error)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut from, &mut buf)
                    .await
                    .map_err(read_error)?;
                if n == 0 {
                    return Ok(());
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.unavailable("store the package", e))?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        match sent {
            Ok(()) => writer
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| self.unavailable("store the package", e)),
            Err(e) => {
                // The parts sent so far are dropped with the upload; where
                // the store cannot be reached even for that, they stay
                // invisible (no object) until the bucket's lifecycle rule
                // for incomplete uploads removes them.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "an interrupted package upload could not be aborted");
                }
                Err(e)
            }
        }
    }

    /// Removes a package file (and its cached copy); one already gone is fine.
    pub async fn delete_package(&self, hash: &str) -> Result<(), BlobError> {
        if self.inner.root.is_none() {
            remove_quietly(&self.inner.cache.join(hash)).await;
        }
        match self.inner.objects.delete(&self.package_key(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.unavailable("delete a package", e)),
        }
    }

    /// Whether the store holds this package file.
    pub async fn has_package(&self, hash: &str) -> Result<bool, BlobError> {
        match self.inner.objects.head(&self.package_key(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.unavailable("be read", e)),
        }
    }

    /// A local file with the package's content, to open, map or unpack: the
    /// blob itself in a directory; from a bucket, a cached copy, fetched
    /// (and checked against `hash`) when missing.
    pub async fn local_file(&self, hash: &str) -> Result<PathBuf, BlobError> {
        if let Some(root) = &self.inner.root {
            return Ok(root.join("packages").join(hash));
        }
        if !is_hash(hash) {
            return Err(BlobError::NotFound(hash.to_owned()));
        }
        let cached = self.inner.cache.join(hash);
        let _one = self.inner.fetching.lock().await;
        if tokio::fs::metadata(&cached).await.is_ok() {
            touch(&cached);
            return Ok(cached);
        }
        self.fetch(hash, &cached).await?;
        self.trim_cache(&cached).await;
        Ok(cached)
    }

    /// Streams a blob into `to`, through a temporary file renamed into
    /// place once its hash is right.
    async fn fetch(&self, hash: &str, to: &Path) -> Result<(), BlobError> {
        let tmp_dir = self.inner.cache.join("tmp");
        let local = |doing, path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobError::Local {
                doing,
                path,
                source,
            }
        };
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(local("could not create the blob cache", &tmp_dir))?;
        let part = tmp_dir.join(format!("{hash}.{}.part", uuid::Uuid::new_v4().simple()));
        let result = async {
            let got = match self.inner.objects.get(&self.package_key(hash)).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(BlobError::NotFound(hash.to_owned()))
                }
                Err(e) => return Err(self.unavailable("send a package", e)),
            };
            let mut file = tokio::fs::File::create(&part)
                .await
                .map_err(local("could not write", &part))?;
            let mut hasher = Sha256::new();
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.unavailable("send a package", e))?;
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(local("could not write", &part))?;
            }
            file.sync_all()
                .await
                .map_err(local("could not write", &part))?;
            let actual = hex::encode(hasher.finalize());
            if actual != hash {
                return Err(BlobError::Damaged {
                    store: self.inner.describe.clone(),
                    hash: hash.to_owned(),
                    actual,
                });
            }
            tokio::fs::rename(&part, to)
                .await
                .map_err(local("could not write", to))
        }
        .await;
        if result.is_err() {
            remove_quietly(&part).await;
        }
        result
    }

    /// Removes the least recently used cached copies until the cache is
    /// within its bound, keeping `keep` (just fetched). A removed copy that
    /// a deployment still has open or mapped stays readable to it (Unix
    /// unlinks, it does not truncate).
    async fn trim_cache(&self, keep: &Path) {
        let (dir, limit, keep) = (
            self.inner.cache.clone(),
            self.inner.cache_limit,
            keep.to_path_buf(),
        );
        let _ = tokio::task::spawn_blocking(move || trim(&dir, limit, &keep)).await;
    }

    /// The cached copies, by hash (a bucket store's; a directory has none).
    pub fn cached_packages(&self) -> Vec<String> {
        if self.inner.root.is_some() {
            return vec![];
        }
        let mut names: Vec<String> = std::fs::read_dir(&self.inner.cache)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// Removes the files of `dir` least recently modified first, never `keep`,
/// until they take at most `limit` bytes. Blocking.
fn trim(dir: &Path, limit: u64, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let modified = meta.modified().ok()?;
            meta.is_file().then(|| (modified, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= limit {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

/// Marks a cached copy as just used, for [`Blobs::trim_cache`]'s order.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a cached blob");
        }
    }
}

/// The SHA-256 of a local file, as hex. Blocking.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let parse = |t: &str| BlobLocation::parse(t);
        assert_eq!(parse("").unwrap(), BlobLocation::Directory(None));
        assert_eq!(
            parse("/srv/cuttle-blobs").unwrap(),
            BlobLocation::Directory(Some("/srv/cuttle-blobs".into()))
        );
        assert_eq!(
            parse("file:///srv/b").unwrap(),
            BlobLocation::Directory(Some("/srv/b".into()))
        );
        let BlobLocation::Bucket(b) =
            parse("s3://cuttle-packages/prod/?endpoint=http://127.0.0.1:9000&region=eu-west-1")
                .unwrap()
        else {
            panic!("a bucket")
        };
        assert_eq!(b.name, "cuttle-packages");
        assert_eq!(b.prefix, "prod");
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(b.region.as_deref(), Some("eu-west-1"));
        assert!(b.allow_http, "a loopback endpoint may be plain HTTP");
        let BlobLocation::Bucket(b) = parse("s3://my-bucket").unwrap() else {
            panic!("a bucket")
        };
        assert_eq!(
            (b.prefix.as_str(), b.endpoint, b.allow_http),
            ("", None, false)
        );
    }

    #[test]
    fn bad_locations_say_why() {
        for (text, says) in [
            ("relative/dir", "is not a blob store"),
            ("gs://bucket", "is not a blob store"),
            ("file://relative", "absolute path"),
            ("s3://", "names the bucket ''"),
            ("s3://No_Such", "names the bucket 'No_Such'"),
            ("s3://bucket?secret=x", "the parameter 'secret'"),
            ("s3://bucket?endpoint=minio:9000", "not a URL"),
            (
                "s3://bucket?endpoint=http://10.0.0.5:9000",
                "add allow_http=true",
            ),
            ("s3://bucket?endpoint=ftp://x", "not http(s)"),
            ("s3://bucket?allow_http=yes", "allow_http other than"),
        ] {
            let err = BlobLocation::parse(text).expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(
            BlobLocation::parse("s3://b-1?endpoint=http://10.0.0.5:9000&allow_http=true").is_ok()
        );
    }

    #[test]
    fn the_cache_is_trimmed_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let at = |secs| std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        for (name, used) in [("a", 30), ("b", 10), ("c", 20), ("new", 5)] {
            let path = dir.path().join(name);
            std::fs::write(&path, [0u8; 100]).unwrap();
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(at(used)).unwrap();
        }
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        // 400 bytes over a bound of 250: the two least recently used go,
        // except the copy just fetched (`new`, oldest by its time here).
        trim(dir.path(), 250, &dir.path().join("new"));
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a", "new", "tmp"]);
    }

    #[tokio::test]
    async fn a_directory_keeps_the_data_directory_layout() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(&BlobLocation::Directory(None), dir.path())
            .await
            .unwrap();
        let packages = dir.path().join("packages");
        std::fs::create_dir_all(&packages).unwrap();
        let file = dir.path().join("upload.part");
        std::fs::write(&file, b"content").unwrap();
        let hash = hash_file(&file).unwrap();
        blobs.publish_package(&file, &hash, 7).await.unwrap();
        assert!(!file.exists(), "moved, not copied");
        assert_eq!(std::fs::read(packages.join(&hash)).unwrap(), b"content");
        assert_eq!(blobs.local_file(&hash).await.unwrap(), packages.join(&hash));
        assert!(blobs.has_package(&hash).await.unwrap());
        blobs.delete_package(&hash).await.unwrap();
        assert!(!packages.join(&hash).exists());
        assert!(!blobs.has_package(&hash).await.unwrap());
        blobs.delete_package(&hash).await.unwrap();
    }
}
