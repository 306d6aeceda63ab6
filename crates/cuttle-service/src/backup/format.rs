//! The backup file: a gzip-compressed tar stream. Rows come first, one
//! `tables/<table>.jsonl` entry per table (a JSON array of values per line,
//! in the manifest's column order), then the installation's files under
//! `files/`, then `manifest.json` (what is inside, with the size and
//! SHA-256 of every entry) and last `manifest.sha256`, the digest of the
//! manifest: a file cut short lacks them, and a byte changed anywhere
//! breaks a digest, gzip's CRC or tar's header checksum.

use super::sealed_key::SealedKey;
use crate::{Result, ServiceError};
use cuttle_store::backup::Table;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

pub const FORMAT: &str = "cuttle-backup";
/// Bumped when a reader of the previous version could not read the new one.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const DIGEST: &str = "manifest.sha256";
pub const TABLES: &str = "tables/";
pub const FILES: &str = "files/";
/// The data directory's folders a backup carries files of.
pub const FILE_DIRS: [&str; 2] = ["packages", "certs"];

/// One entry of the archive as it was written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableEntry {
    pub table: Table,
    pub rows: u64,
    pub entry: Entry,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The newest migration of the database backed up.
    pub schema_version: i64,
    pub cuttle_version: String,
    pub created: String,
    /// SQLite or PostgreSQL.
    pub source_database: String,
    pub tables: Vec<TableEntry>,
    /// Each under `files/`, by its path in the data directory.
    pub files: Vec<Entry>,
    /// Present only when the backup was asked to carry it.
    pub master_key: Option<SealedKey>,
}

impl Manifest {
    /// Every entry the archive must hold besides the manifest and digest.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.tables.iter().map(|t| &t.entry).chain(&self.files)
    }

    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

pub fn table_entry_path(table: &str) -> String {
    format!("{TABLES}{table}.jsonl")
}

/// The data directory path of a `files/…` entry, if it is one a backup may
/// hold: `packages/<name>` or `certs/<name>`, plain names only, so no entry
/// can be written outside its folder.
pub fn data_path(entry: &str) -> Option<(&'static str, &str)> {
    let rest = entry.strip_prefix(FILES)?;
    let (dir, name) = rest.split_once('/')?;
    let dir = FILE_DIRS.into_iter().find(|d| *d == dir)?;
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    plain.then_some((dir, name))
}

pub fn hex_digest(hasher: Sha256) -> String {
    hex::encode(hasher.finalize())
}

/// Reads through, hashing and counting what passes.
pub struct Hashing<R> {
    pub inner: R,
    pub hasher: Sha256,
    pub size: u64,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub fn finish(self) -> (u64, String) {
        (self.size, hex_digest(self.hasher))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A refusal of a backup file that is not whole.
pub fn damaged(why: impl std::fmt::Display) -> ServiceError {
    ServiceError::bad_request(format!(
        "The backup file is damaged or incomplete, so nothing was restored: {why}"
    ))
}

/// Parses the manifest, checking it is one this build reads.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| damaged(format!("its manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(ServiceError::bad_request(format!(
            "This is not a Cuttle backup (its format is '{}')",
            manifest.format
        )));
    }
    if manifest.format_version > FORMAT_VERSION {
        return Err(ServiceError::bad_request(format!(
            "The backup's format version {} is newer than this Cuttle reads ({FORMAT_VERSION}): \
             restore it with a newer Cuttle",
            manifest.format_version
        )));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::data_path;

    #[test]
    fn only_plain_names_in_known_folders_are_files() {
        assert_eq!(data_path("files/packages/ab12"), Some(("packages", "ab12")));
        assert_eq!(
            data_path("files/certs/identity.key"),
            Some(("certs", "identity.key"))
        );
        for bad in [
            "files/packages/../master.key",
            "files/packages/a/b",
            "files/work/x",
            "files/certs/.hidden",
            "files/certs/",
            "tables/x.jsonl",
        ] {
            assert_eq!(data_path(bad), None, "{bad}");
        }
    }
}
