//! The agent's content-addressed file cache: uploads arrive in chunks at
//! `partial/<sha256>.part`, resume from whatever length is there after a
//! broken connection, and become `<sha256>` only once their size and
//! SHA-256 are verified, by an atomic rename. A file already cached is
//! never sent again. An upload may instead be a delta against a cached file
//! (the basis): it is received the same way, then applied to the basis, and
//! the result is verified like any upload.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cuttle_protocol::messages::{FileList, FileStatus};
use cuttle_protocol::service::FileError;
use hyper::body::Bytes;
use sha2::{Digest, Sha256};

/// The cache under one directory. Requests for one file are serialised by
/// a lock, so two connections cannot interleave chunks of the same upload.
pub struct FileCache {
    root: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileCache {
    pub fn new(root: PathBuf) -> FileCache {
        FileCache {
            root,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Where a complete file with this SHA-256 is kept (callers have checked
    /// the hash is 64 lowercase hex, so it is a plain file name).
    pub fn path(&self, hash: &str) -> PathBuf {
        self.root.join(hash)
    }

    /// Where an upload in progress is kept: the file itself, or its delta
    /// from `basis`.
    fn partial(&self, hash: &str, basis: Option<&str>) -> PathBuf {
        let name = match basis {
            None => format!("{hash}.part"),
            Some(b) => format!("{hash}.from-{b}.delta"),
        };
        self.root.join("partial").join(name)
    }

    /// The complete files, by SHA-256.
    pub async fn list(&self) -> Result<FileList, FileError> {
        let _held = self.lock.lock().await;
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileList::default()),
            Err(e) => return Err(storage("listing the cache", &self.root, e)),
        };
        let mut hashes: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| cuttle_protocol::messages::valid_file_hash(name))
            .collect();
        hashes.sort();
        Ok(FileList { hashes })
    }

    /// The rsync signature of a cached file.
    pub async fn signature(&self, hash: &str) -> Result<Bytes, FileError> {
        let path = self.path(hash);
        if !path.exists() {
            return Err(FileError::Mismatch(format!(
                "this agent does not hold {hash}"
            )));
        }
        let signing = move || crate::delta::signature_of(&path);
        let signature = tokio::task::spawn_blocking(signing)
            .await
            .map_err(|e| FileError::Storage(format!("signing failed: {e}")))?
            .map_err(|e| FileError::Storage(e.to_string()))?;
        Ok(Bytes::from(signature))
    }

    pub async fn status(&self, hash: &str, basis: Option<&str>) -> Result<FileStatus, FileError> {
        let _held = self.lock.lock().await;
        self.status_now(hash, basis)
    }

    fn status_now(&self, hash: &str, basis: Option<&str>) -> Result<FileStatus, FileError> {
        if let Ok(meta) = std::fs::metadata(self.path(hash)) {
            return Ok(FileStatus {
                hash: hash.to_owned(),
                complete: true,
                received_bytes: meta.len(),
            });
        }
        let partial = self.partial(hash, basis);
        let received_bytes = match std::fs::metadata(&partial) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(storage("reading the upload", &partial, e)),
        };
        Ok(FileStatus {
            hash: hash.to_owned(),
            complete: false,
            received_bytes,
        })
    }

    /// Appends `chunk` if `offset` is exactly what has arrived so far; a
    /// chunk for a file already complete is acknowledged and ignored.
    pub async fn write_chunk(
        &self,
        hash: &str,
        basis: Option<&str>,
        offset: u64,
        chunk: Bytes,
    ) -> Result<FileStatus, FileError> {
        let _held = self.lock.lock().await;
        let status = self.status_now(hash, basis)?;
        if status.complete {
            return Ok(status);
        }
        if offset != status.received_bytes {
            return Err(FileError::Offset {
                received_bytes: status.received_bytes,
            });
        }
        let partial = self.partial(hash, basis);
        let write = {
            let partial = partial.clone();
            move || -> std::io::Result<()> {
                if let Some(dir) = partial.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&partial)?;
                file.write_all(&chunk)
            }
        };
        tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| FileError::Storage(format!("writing the upload failed: {e}")))?
            .map_err(|e| storage("writing the upload", &partial, e))?;
        self.status_now(hash, basis)
    }

    /// Verifies the upload's size and SHA-256 and moves it into the cache.
    /// A mismatch drops the upload, so the next attempt starts clean.
    pub async fn complete(
        &self,
        hash: &str,
        basis: Option<&str>,
        size: u64,
    ) -> Result<FileStatus, FileError> {
        let _held = self.lock.lock().await;
        let status = self.status_now(hash, basis)?;
        if status.complete {
            return Ok(status);
        }
        let mut partial = self.partial(hash, basis);
        if let Some(basis) = basis {
            // Rebuild the file from the basis, then verify it like any upload.
            let (base, delta) = (self.path(basis), partial.clone());
            if !base.exists() {
                let _ = std::fs::remove_file(&delta);
                return Err(FileError::Mismatch(format!(
                    "the basis {basis} is not in this agent's cache; send the whole file"
                )));
            }
            let rebuilt = self.partial(hash, None);
            let out = rebuilt.clone();
            let rebuild = move || {
                let result = crate::delta::apply(&base, &delta, &out, size);
                let _ = std::fs::remove_file(&delta);
                result
            };
            let applied = tokio::task::spawn_blocking(rebuild)
                .await
                .map_err(|e| FileError::Storage(format!("applying the delta failed: {e}")))?;
            if let Err(e) = applied {
                let _ = std::fs::remove_file(&rebuilt);
                return Err(FileError::Mismatch(format!("{e}; it was discarded")));
            }
            partial = rebuilt;
        } else if status.received_bytes != size {
            return Err(FileError::Mismatch(format!(
                "the upload holds {} bytes, not the {size} announced",
                status.received_bytes
            )));
        }
        let (from, to) = (partial.clone(), self.path(hash));
        let expected = hash.to_owned();
        let keep = move || -> Result<(), FileError> {
            let actual = sha256_of(&from).map_err(|e| storage("reading the upload", &from, e))?;
            if actual != expected {
                let _ = std::fs::remove_file(&from);
                return Err(FileError::Mismatch(format!(
                    "the upload's SHA-256 is {actual}, not {expected}; it was discarded"
                )));
            }
            // Durable before it is visible under its final name.
            let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&from).map_err(|e| storage("syncing the upload", &from, e))?;
            std::fs::rename(&from, &to).map_err(|e| storage("keeping the upload", &to, e))?;
            if let Some(dir) = to.parent() {
                let _ = sync(dir);
            }
            Ok(())
        };
        tokio::task::spawn_blocking(keep)
            .await
            .map_err(|e| FileError::Storage(format!("verifying the upload failed: {e}")))??;
        tracing::info!(%hash, bytes = size, "a file was received and verified");
        self.status_now(hash, None)
    }
}

fn storage(what: &str, path: &Path, e: std::io::Error) -> FileError {
    FileError::Storage(format!("{what} at {} failed: {e}", path.display()))
}

/// The SHA-256 of a file, as lowercase hex, read in blocks.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn chunks_resume_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(dir.path().to_path_buf());
        let data = b"hello, agent".repeat(100);
        let h = hash(&data);
        assert_eq!(cache.status(&h, None).await.unwrap().received_bytes, 0);
        let first = cache
            .write_chunk(&h, None, 0, Bytes::copy_from_slice(&data[..500]))
            .await
            .unwrap();
        assert_eq!(first.received_bytes, 500);
        // A chunk at the wrong place is refused, naming where it stands.
        assert_eq!(
            cache
                .write_chunk(&h, None, 0, Bytes::copy_from_slice(&data[..10]))
                .await,
            Err(FileError::Offset {
                received_bytes: 500
            })
        );
        cache
            .write_chunk(&h, None, 500, Bytes::copy_from_slice(&data[500..]))
            .await
            .unwrap();
        let done = cache.complete(&h, None, data.len() as u64).await.unwrap();
        assert!(done.complete);
        assert_eq!(std::fs::read(cache.path(&h)).unwrap(), data);
        // Complete is idempotent, and a complete file takes no more chunks.
        assert!(
            cache
                .complete(&h, None, data.len() as u64)
                .await
                .unwrap()
                .complete
        );
        assert!(
            cache
                .write_chunk(&h, None, 0, Bytes::new())
                .await
                .unwrap()
                .complete
        );
    }

    #[tokio::test]
    async fn a_wrong_upload_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(dir.path().to_path_buf());
        let h = hash(b"the real thing");
        cache
            .write_chunk(&h, None, 0, Bytes::from_static(b"something else"))
            .await
            .unwrap();
        let err = cache.complete(&h, None, 14).await.unwrap_err();
        assert!(
            matches!(&err, FileError::Mismatch(m) if m.contains("SHA-256")),
            "{err:?}"
        );
        let status = cache.status(&h, None).await.unwrap();
        assert!(!status.complete && status.received_bytes == 0);
        assert!(!cache.path(&h).exists());
        // A size that does not match is refused before hashing.
        cache
            .write_chunk(&h, None, 0, Bytes::from_static(b"the real"))
            .await
            .unwrap();
        assert!(matches!(
            cache.complete(&h, None, 14).await,
            Err(FileError::Mismatch(_))
        ));
    }
}
