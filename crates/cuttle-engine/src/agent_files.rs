//! The agent's content-addressed file cache: uploads arrive in chunks at
//! `partial/<sha256>.part`, resume from whatever length is there after a
//! broken connection, and become `<sha256>` only once their size and
//! SHA-256 are verified, by an atomic rename. A file already cached is
//! never sent again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cuttle_protocol::messages::FileStatus;
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

    fn partial(&self, hash: &str) -> PathBuf {
        self.root.join("partial").join(format!("{hash}.part"))
    }

    pub async fn status(&self, hash: &str) -> Result<FileStatus, FileError> {
        let _held = self.lock.lock().await;
        self.status_now(hash)
    }

    fn status_now(&self, hash: &str) -> Result<FileStatus, FileError> {
        if let Ok(meta) = std::fs::metadata(self.path(hash)) {
            return Ok(FileStatus {
                hash: hash.to_owned(),
                complete: true,
                received_bytes: meta.len(),
            });
        }
        let received_bytes = match std::fs::metadata(self.partial(hash)) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(storage("reading the upload", &self.partial(hash), e)),
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
        offset: u64,
        chunk: Bytes,
    ) -> Result<FileStatus, FileError> {
        let _held = self.lock.lock().await;
        let status = self.status_now(hash)?;
        if status.complete {
            return Ok(status);
        }
        if offset != status.received_bytes {
            return Err(FileError::Offset {
                received_bytes: status.received_bytes,
            });
        }
        let partial = self.partial(hash);
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
        self.status_now(hash)
    }

    /// Verifies the upload's size and SHA-256 and moves it into the cache.
    /// A mismatch drops the upload, so the next attempt starts clean.
    pub async fn complete(&self, hash: &str, size: u64) -> Result<FileStatus, FileError> {
        let _held = self.lock.lock().await;
        let status = self.status_now(hash)?;
        if status.complete {
            return Ok(status);
        }
        let partial = self.partial(hash);
        if status.received_bytes != size {
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
        self.status_now(hash)
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
        assert_eq!(cache.status(&h).await.unwrap().received_bytes, 0);
        let first = cache
            .write_chunk(&h, 0, Bytes::copy_from_slice(&data[..500]))
            .await
            .unwrap();
        assert_eq!(first.received_bytes, 500);
        // A chunk at the wrong place is refused, naming where it stands.
        assert_eq!(
            cache
                .write_chunk(&h, 0, Bytes::copy_from_slice(&data[..10]))
                .await,
            Err(FileError::Offset {
                received_bytes: 500
            })
        );
        cache
            .write_chunk(&h, 500, Bytes::copy_from_slice(&data[500..]))
            .await
            .unwrap();
        let done = cache.complete(&h, data.len() as u64).await.unwrap();
        assert!(done.complete);
        assert_eq!(std::fs::read(cache.path(&h)).unwrap(), data);
        // Complete is idempotent, and a complete file takes no more chunks.
        assert!(
            cache
                .complete(&h, data.len() as u64)
                .await
                .unwrap()
                .complete
        );
        assert!(
            cache
                .write_chunk(&h, 0, Bytes::new())
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
            .write_chunk(&h, 0, Bytes::from_static(b"something else"))
            .await
            .unwrap();
        let err = cache.complete(&h, 14).await.unwrap_err();
        assert!(
            matches!(&err, FileError::Mismatch(m) if m.contains("SHA-256")),
            "{err:?}"
        );
        let status = cache.status(&h).await.unwrap();
        assert!(!status.complete && status.received_bytes == 0);
        assert!(!cache.path(&h).exists());
        // A size that does not match is refused before hashing.
        cache
            .write_chunk(&h, 0, Bytes::from_static(b"the real"))
            .await
            .unwrap();
        assert!(matches!(
            cache.complete(&h, 14).await,
            Err(FileError::Mismatch(_))
        ));
    }
}
