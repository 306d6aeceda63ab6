//! Backups of a whole installation while it runs, and restoring one into an
//! empty installation on either database.
//!
//! # Layout
//! - this file: taking a backup: one database snapshot, the package files
//!   its rows use, the server's certificates, and the master key only when
//!   asked (sealed with a passphrase).
//! - [`format`]: the file's layout, its manifest and digests.
//! - [`sealed_key`]: the master key sealed under a passphrase.
//! - [`restore`]: checking a whole backup, then restoring it.
//!
//! A backup is consistent: every row is read in one database snapshot, and
//! the package files its rows use are taken (hard-linked, so a later delete
//! cannot take them away) before pushes and deletes may pair or part files
//! and rows again. A package pushed while the backup runs has neither its
//! row nor its file in it.

pub mod format;
pub mod restore;
pub mod sealed_key;

use crate::packages::{packages_dir, upload_dir};
use crate::{Instance, Result, ServiceError};
use cuttle_model::user::ADMIN_USERNAME;
use cuttle_model::{Timestamp, User};
use cuttle_store::backup::{Snapshot, Table};
use cuttle_store::StoreError;
use format::{Entry, Hashing, Manifest, TableEntry};
use sealed_key::SealedKey;
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use restore::{restore, verify, RestoreTarget, Restored, Verified};

/// The master key to put in a backup, and the passphrase that seals it.
pub struct MasterKeyExport {
    pub key: String,
    pub passphrase: String,
}

/// The master key of an installation as text: `configured` (the
/// `CUTTLE_MASTER_KEY` the server runs with) or the data directory's file.
pub fn master_key_text(data_dir: &Path, configured: Option<&str>) -> Result<String> {
    if let Some(k) = configured.filter(|k| !k.trim().is_empty()) {
        return Ok(k.trim().to_owned());
    }
    let path = data_dir.join("master.key");
    std::fs::read_to_string(&path)
        .map(|k| k.trim().to_owned())
        .map_err(|e| {
            ServiceError::Internal(format!(
                "The master key {} could not be read: {e}",
                path.display()
            ))
        })
}

/// Only the administrator may copy out everything at once.
pub fn require_administrator(caller: &User) -> Result<()> {
    if caller.username != ADMIN_USERNAME {
        return Err(ServiceError::Forbidden(
            "Only the administrator may take a backup".into(),
        ));
    }
    Ok(())
}

/// A backup of the running `inst`, for `caller`; with the master key
/// sealed under `passphrase` when one is given.
pub async fn of_instance(
    inst: &Instance,
    caller: &User,
    passphrase: Option<String>,
) -> Result<Prepared> {
    require_administrator(caller)?;
    let export = match passphrase {
        Some(passphrase) => {
            sealed_key::check_passphrase(&passphrase)?;
            Some(MasterKeyExport {
                key: master_key_text(&inst.config.data_dir, inst.config.master_key.as_deref())?,
                passphrase,
            })
        }
        None => None,
    };
    // Held from before the snapshot until its files are taken: a push or
    // delete pairing a file and its row meanwhile waits.
    let files = inst.package_files.lock().await;
    let snapshot = inst.store.snapshot().await?;
    // Package files in a bucket are the bucket's to back up (its own
    // versioning or replication): the backup holds the rows naming them.
    let packages_from = inst.blobs.directory_root();
    prepare(
        snapshot,
        &inst.config.data_dir,
        packages_from,
        Some(files),
        export,
    )
    .await
}

/// A backup of the installation in `data_dir`, read from outside the
/// server (which may be running on it: SQLite lets a reader in beside it);
/// its database at `database_url`, else SQLite in the directory.
/// `configured_key` is the `CUTTLE_MASTER_KEY` the server runs with, if any.
pub async fn of_data_dir(
    data_dir: &Path,
    database_url: Option<&str>,
    passphrase: Option<String>,
    configured_key: Option<&str>,
) -> Result<Prepared> {
    let url = match database_url {
        Some(url) => url.to_owned(),
        None => {
            let db = data_dir.join("cuttle.db");
            if !db.is_file() {
                return Err(ServiceError::bad_request(format!(
                    "There is no Cuttle database at {} (for an installation on PostgreSQL, \
                     give its --database-url)",
                    db.display()
                )));
            }
            cuttle_store::Store::sqlite_url_existing(&db)
        }
    };
    let export = match passphrase {
        Some(passphrase) => {
            sealed_key::check_passphrase(&passphrase)?;
            Some(MasterKeyExport {
                key: master_key_text(data_dir, configured_key)?,
                passphrase,
            })
        }
        None => None,
    };
    let snapshot = Snapshot::connect(&url).await?;
    prepare(snapshot, data_dir, Some(data_dir), None, export).await
}

/// Everything a backup holds, gathered and ready to be written out.
pub struct Prepared {
    /// Rows and linked files until written; removed when dropped.
    _spool: tempfile::TempDir,
    schema_version: i64,
    source_database: &'static str,
    tables: Vec<(Table, u64, PathBuf)>,
    /// Archive path and where its content waits.
    files: Vec<(String, PathBuf)>,
    master_key: Option<SealedKey>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::Internal(format!("{what} {}: {e}", path.display()))
}

/// Reads the snapshot out: the packages' rows first, then their files from
/// `packages_from`'s `packages/` (none when `None`: they are in a bucket),
/// after which `files_lock` is released, then every other table.
pub async fn prepare(
    mut snapshot: Snapshot,
    data_dir: &Path,
    packages_from: Option<&Path>,
    files_lock: Option<tokio::sync::MutexGuard<'_, ()>>,
    export: Option<MasterKeyExport>,
) -> Result<Prepared> {
    let schema_version = snapshot.schema_version().await?;
    let source_database = snapshot.backend().name();
    let mut tables = snapshot.tables().await?;
    // Beside the packages, so files are linked, not copied.
    let tmp = upload_dir(data_dir);
    std::fs::create_dir_all(&tmp).map_err(|e| io("could not create", &tmp, e))?;
    let spool = tempfile::Builder::new()
        .prefix("backup-")
        .tempdir_in(&tmp)
        .map_err(|e| io("could not create a directory in", &tmp, e))?;
    for dir in ["tables", "packages", "certs"] {
        let d = spool.path().join(dir);
        std::fs::create_dir(&d).map_err(|e| io("could not create", &d, e))?;
    }

    // The packages table first, so its files are taken at once.
    tables.sort_by_key(|t| t.name != "packages");
    let mut spooled = Vec::with_capacity(tables.len());
    let mut files = Vec::new();
    let mut files_lock = files_lock;
    for table in tables {
        let path = spool
            .path()
            .join("tables")
            .join(format!("{}.jsonl", table.name));
        let hash_column = (table.name == "packages")
            .then(|| table.columns.iter().position(|c| c.name == "hash"))
            .flatten();
        let mut hashes = BTreeSet::new();
        let file = std::fs::File::create(&path).map_err(|e| io("could not create", &path, e))?;
        let mut out = BufWriter::new(file);
        let rows = snapshot
            .each_row(&table, |row| -> Result<()> {
                if let Some(h) = hash_column.and_then(|i| row[i].as_str()) {
                    hashes.insert(h.to_owned());
                }
                serde_json::to_writer(&mut out, &row)
                    .map_err(|e| ServiceError::Internal(format!("writing a row: {e}")))?;
                out.write_all(b"\n")
                    .map_err(|e| io("could not write", &path, e))
            })
            .await?;
        out.flush().map_err(|e| io("could not write", &path, e))?;
        for hash in hashes.iter().filter(|_| packages_from.is_some()) {
            let from = packages_from.unwrap_or(data_dir);
            files.push(take_package_file(from, spool.path(), hash)?);
        }
        if table.name == "packages" {
            files_lock.take();
        }
        spooled.push((table, rows, path));
    }
    drop(files_lock);
    snapshot.finish().await?;
    spooled.sort_by(|a, b| a.0.name.cmp(&b.0.name));

    // The server's certificates: small, copied as they are now.
    let certs = data_dir.join("certs");
    if let Ok(dir) = std::fs::read_dir(&certs) {
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let archived = format!("{}certs/{name}", format::FILES);
            if format::data_path(&archived).is_none() {
                continue;
            }
            let to = spool.path().join("certs").join(&name);
            std::fs::copy(certs.join(&name), &to).map_err(|e| io("could not copy", &to, e))?;
            files.push((archived, to));
        }
    }

    let master_key = match export {
        Some(e) => Some(
            tokio::task::spawn_blocking(move || sealed_key::seal(&e.key, &e.passphrase))
                .await
                .map_err(|e| ServiceError::Internal(format!("sealing the master key: {e}")))??,
        ),
        None => None,
    };
    Ok(Prepared {
        _spool: spool,
        schema_version,
        source_database,
        tables: spooled,
        files,
        master_key,
    })
}

/// Links (or, across file systems, copies) a package file into the spool.
fn take_package_file(blob_dir: &Path, spool: &Path, hash: &str) -> Result<(String, PathBuf)> {
    let archived = format!("{}packages/{hash}", format::FILES);
    if format::data_path(&archived).is_none() {
        return Err(StoreError::Corrupt(format!("a package row has the hash '{hash}'")).into());
    }
    let from = packages_dir(blob_dir).join(hash);
    let to = spool.join("packages").join(hash);
    if std::fs::hard_link(&from, &to).is_err() {
        std::fs::copy(&from, &to).map_err(|e| {
            ServiceError::Internal(format!(
                "The package file {} that the database uses could not be read ({e}); if a \
                 package was deleted while this backup began, take the backup again",
                from.display()
            ))
        })?;
    }
    Ok((archived, to))
}

/// What a written backup holds.
#[derive(Debug)]
pub struct Summary {
    pub tables: usize,
    pub rows: u64,
    pub files: usize,
    pub file_bytes: u64,
}

impl Prepared {
    /// Writes the backup file to `out` (blocking: run it off the async
    /// workers).
    pub fn write(self, out: impl Write) -> Result<Summary> {
        let failed = |e: std::io::Error| ServiceError::Internal(format!("writing the backup: {e}"));
        // Fast compression: rows are JSON and shrink well at level 1, and
        // the backup of a busy server should not take a core for long.
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let created = Timestamp::now();
        let mtime = u64::try_from(created.millis() / 1000).unwrap_or(0);
        let mut append = |path: &str, from: &Path| -> Result<Entry> {
            let file = std::fs::File::open(from).map_err(|e| io("could not read", from, e))?;
            let len = file
                .metadata()
                .map_err(|e| io("could not read", from, e))?
                .len();
            let mut reader = Hashing::new(file);
            let mut header = header(len, mtime);
            tar.append_data(&mut header, path, &mut reader)
                .map_err(failed)?;
            let (size, sha256) = reader.finish();
            if size != len {
                return Err(ServiceError::Internal(format!(
                    "{} changed while it was written into the backup",
                    from.display()
                )));
            }
            Ok(Entry {
                path: path.to_owned(),
                size,
                sha256,
            })
        };
        let mut tables = Vec::with_capacity(self.tables.len());
        for (table, rows, path) in &self.tables {
            let entry = append(&format::table_entry_path(&table.name), path)?;
            tables.push(TableEntry {
                table: table.clone(),
                rows: *rows,
                entry,
            });
        }
        let mut files = Vec::with_capacity(self.files.len());
        for (archived, path) in &self.files {
            files.push(append(archived, path)?);
        }
        let manifest = Manifest {
            format: format::FORMAT.into(),
            format_version: format::FORMAT_VERSION,
            schema_version: self.schema_version,
            cuttle_version: crate::instance::CUTTLE_VERSION.into(),
            created: created.to_string(),
            source_database: self.source_database.into(),
            tables,
            files,
            master_key: self.master_key.clone(),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ServiceError::Internal(format!("the backup's manifest: {e}")))?;
        let digest = format::hex_digest(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            &json,
        ));
        for (path, bytes) in [
            (format::MANIFEST, json.as_slice()),
            (format::DIGEST, digest.as_bytes()),
        ] {
            let mut header = header(bytes.len() as u64, mtime);
            tar.append_data(&mut header, path, bytes).map_err(failed)?;
        }
        let mut out = tar
            .into_inner()
            .and_then(|gz| gz.finish())
            .map_err(failed)?;
        out.flush().map_err(failed)?;
        Ok(Summary {
            tables: manifest.tables.len(),
            rows: manifest.rows(),
            files: manifest.files.len(),
            file_bytes: manifest.files.iter().map(|f| f.size).sum(),
        })
    }
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_administrator_takes_backups() {
        let admin = User {
            username: ADMIN_USERNAME.into(),
            ..Default::default()
        };
        assert!(require_administrator(&admin).is_ok());
        let other = User {
            username: "reader".into(),
            ..Default::default()
        };
        assert!(matches!(
            require_administrator(&other),
            Err(ServiceError::Forbidden(_))
        ));
    }
}
