//! Restoring a backup: the whole file is read and checked first (every
//! digest, the manifest, the passphrase, the master key against the
//! database's key check, the schema version, an empty target); only then is
//! anything written. The rows go in one transaction, committed once every
//! entry has been read again and matched its digest.

use super::format::{self, damaged, Hashing, Manifest};
use crate::{Result, ServiceError};
use cuttle_store::backup::{
    database_is_empty, drop_restored_schema, is_known_schema_version, known_schema_version, Loader,
};
use cuttle_store::secrets::KEY_CHECK_SETTING;
use cuttle_store::{MasterKey, Store};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Larger than any manifest: a backup claiming more is damaged.
const MANIFEST_LIMIT: u64 = 256 << 20;
/// Rows handed to the database at a time.
const BATCH: usize = 2_000;

/// A backup file that passed every check.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    /// The master key's text, when the backup carries it and the passphrase
    /// opened it.
    pub master_key: Option<String>,
    /// The database's master key check (`settings.master_key_check`).
    key_check: Option<String>,
}

fn settings_key_check(manifest: &Manifest, settings: &[u8]) -> Result<Option<String>> {
    let Some(table) = manifest.tables.iter().find(|t| t.table.name == "settings") else {
        return Ok(None);
    };
    let column = |name: &str| table.table.columns.iter().position(|c| c.name == name);
    let (Some(k), Some(v)) = (column("key"), column("value")) else {
        return Ok(None);
    };
    for line in settings.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let row: Vec<serde_json::Value> =
            serde_json::from_slice(line).map_err(|e| damaged(format!("a settings row: {e}")))?;
        if row.get(k).and_then(|x| x.as_str()) == Some(KEY_CHECK_SETTING) {
            return Ok(row.get(v).and_then(|x| x.as_str()).map(str::to_owned));
        }
    }
    Ok(None)
}

/// Reads the whole backup at `file` and checks it; nothing is written.
pub fn verify(file: &Path, passphrase: Option<&str>) -> Result<Verified> {
    let opened = std::fs::File::open(file).map_err(|e| {
        ServiceError::bad_request(format!(
            "The backup {} could not be read: {e}",
            file.display()
        ))
    })?;
    let mut gz = flate2::bufread::GzDecoder::new(BufReader::new(opened));
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let (mut manifest_bytes, mut digest_bytes, mut settings) = (None, None, Vec::new());
    {
        let mut archive = tar::Archive::new(&mut gz);
        for entry in archive.entries().map_err(damaged)? {
            let entry = entry.map_err(damaged)?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(damaged("it holds an entry that is not a file"));
            }
            let path = String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|_| damaged("an entry's name is not UTF-8"))?;
            if manifest_bytes.is_some() && path != format::DIGEST {
                return Err(damaged(format!("the entry {path} follows the manifest")));
            }
            let mut reader = Hashing::new(entry);
            if path == format::MANIFEST || path == format::DIGEST {
                let mut bytes = Vec::new();
                (&mut reader)
                    .take(MANIFEST_LIMIT)
                    .read_to_end(&mut bytes)
                    .map_err(damaged)?;
                if path == format::MANIFEST {
                    manifest_bytes = Some(bytes);
                } else {
                    digest_bytes = Some(bytes);
                }
            } else if path == format::table_entry_path("settings") {
                reader.read_to_end(&mut settings).map_err(damaged)?;
            } else {
                std::io::copy(&mut reader, &mut std::io::sink()).map_err(damaged)?;
            }
            if seen.insert(path.clone(), reader.finish()).is_some() {
                return Err(damaged(format!("the entry {path} appears twice")));
            }
        }
    }
    // The tar stream ends before gzip's trailer; reading on checks its CRC
    // and length, and nothing may follow.
    std::io::copy(&mut gz, &mut std::io::sink()).map_err(damaged)?;
    let mut rest = gz.into_inner();
    if !rest.fill_buf().map_err(damaged)?.is_empty() {
        return Err(damaged("bytes follow the end of the compressed stream"));
    }
    let (Some(manifest_bytes), Some(digest_bytes)) = (manifest_bytes, digest_bytes) else {
        return Err(damaged(
            "it ends before its manifest and digest (was it cut short?)",
        ));
    };
    let digest = format::hex_digest(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        &manifest_bytes,
    ));
    if String::from_utf8_lossy(&digest_bytes).trim() != digest {
        return Err(damaged("the manifest does not match its digest"));
    }
    let manifest = format::parse_manifest(&manifest_bytes)?;
    seen.remove(format::MANIFEST);
    seen.remove(format::DIGEST);
    for t in &manifest.tables {
        if t.entry.path != format::table_entry_path(&t.table.name) {
            return Err(damaged(format!(
                "the table {} has the entry {}",
                t.table.name, t.entry.path
            )));
        }
    }
    for f in &manifest.files {
        if format::data_path(&f.path).is_none() {
            return Err(damaged(format!(
                "the file entry {} names no data directory file",
                f.path
            )));
        }
    }
    for e in manifest.entries() {
        match seen.remove(&e.path) {
            Some((size, sha)) if size == e.size && sha == e.sha256 => {}
            Some(_) => {
                return Err(damaged(format!(
                    "the entry {} does not match its digest",
                    e.path
                )))
            }
            None => return Err(damaged(format!("the entry {} is missing", e.path))),
        }
    }
    if let Some(extra) = seen.keys().next() {
        return Err(damaged(format!("the entry {extra} is not in the manifest")));
    }
    let known = known_schema_version();
    if manifest.schema_version > known || !is_known_schema_version(manifest.schema_version) {
        return Err(ServiceError::bad_request(format!(
            "The backup's schema version is {} (written by Cuttle {}), but this Cuttle knows \
             schema versions up to {known}: restore it with a Cuttle at least as new as the one \
             that wrote it",
            manifest.schema_version, manifest.cuttle_version
        )));
    }
    let master_key = match (&manifest.master_key, passphrase) {
        (Some(sealed), Some(p)) => Some(sealed.open(p)?),
        (Some(_), None) => {
            return Err(ServiceError::bad_request(
                "The backup carries the master key sealed with a passphrase: give it with \
                 --passphrase-file",
            ))
        }
        (None, _) => None,
    };
    let key_check = settings_key_check(&manifest, &settings)?;
    Ok(Verified {
        manifest,
        master_key,
        key_check,
    })
}

/// Where a backup is restored to.
#[derive(Clone, Debug)]
pub struct RestoreTarget {
    /// Must be empty or not exist.
    pub data_dir: PathBuf,
    /// `None` means SQLite in the data directory. Must hold no tables.
    pub database_url: Option<String>,
    /// Opens the master key the backup carries.
    pub passphrase: Option<String>,
    /// The installation's original master key (as `CUTTLE_MASTER_KEY` gives
    /// it), for a backup that does not carry one: checked, never written.
    pub master_key: Option<String>,
}

/// What a restore wrote.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// The master key was written to the data directory.
    pub wrote_master_key: bool,
    /// Neither the backup nor the operator gave the master key: the server
    /// needs the original one to start.
    pub needs_master_key: bool,
}

fn empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(ServiceError::bad_request(format!(
            "The data directory {} cannot be used: {e}",
            dir.display()
        ))),
    }
}

/// Checks the whole backup, then restores it into `target`.
pub async fn restore(file: &Path, target: RestoreTarget) -> Result<Restored> {
    let (path, passphrase) = (file.to_owned(), target.passphrase.clone());
    let verified = tokio::task::spawn_blocking(move || verify(&path, passphrase.as_deref()))
        .await
        .map_err(|e| ServiceError::Internal(format!("checking the backup: {e}")))??;
    let key = verified.master_key.clone().or(target.master_key.clone());
    if let Some(text) = &key {
        let key = MasterKey::from_base64(text)
            .map_err(|e| ServiceError::bad_request(format!("The master key: {e}")))?;
        if let Some(check) = &verified.key_check {
            if !key.matches(check) {
                return Err(ServiceError::bad_request(format!(
                    "The master key given does not pass the backup's master key check (the \
                     '{KEY_CHECK_SETTING}' setting): it is not the key this installation's \
                     sensitive values were sealed with. Nothing was restored."
                )));
            }
        }
    }
    if !empty_dir(&target.data_dir)? {
        return Err(ServiceError::bad_request(format!(
            "The data directory {} is not empty: a backup is restored only into an empty or new \
             directory. Nothing was restored.",
            target.data_dir.display()
        )));
    }
    let url = target
        .database_url
        .clone()
        .unwrap_or_else(|| Store::sqlite_url(&target.data_dir.join("cuttle.db")));
    if !database_is_empty(&url).await? {
        return Err(ServiceError::bad_request(format!(
            "The database {} already holds tables: a backup is restored only into an empty \
             database. Nothing was restored.",
            cuttle_store::redact(&url)
        )));
    }

    let created = !target.data_dir.exists();
    std::fs::create_dir_all(&target.data_dir).map_err(|e| {
        ServiceError::Internal(format!(
            "could not create {}: {e}",
            target.data_dir.display()
        ))
    })?;
    let done = write_all(file, &verified, &target.data_dir, &url).await;
    if done.is_err() {
        // The database held no table before; it holds none after.
        if let Err(e) = drop_restored_schema(&url).await {
            tracing::warn!(error = %e, "the schema of a failed restore could not be dropped");
        }
        // Nothing half restored is left in the directory, which was empty.
        if created {
            let _ = std::fs::remove_dir_all(&target.data_dir);
        } else if let Ok(entries) = std::fs::read_dir(&target.data_dir) {
            for e in entries.flatten() {
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
    }
    done?;
    let wrote_master_key = match &verified.master_key {
        Some(text) => {
            write_private(&target.data_dir.join("master.key"), text.as_bytes())?;
            true
        }
        None => false,
    };
    Ok(Restored {
        manifest: verified.manifest,
        wrote_master_key,
        needs_master_key: key.is_none() && verified.key_check.is_some(),
    })
}

/// One piece of the second reading, sent to the task that writes rows.
enum Piece {
    Rows(usize, Vec<Vec<serde_json::Value>>),
    /// Every entry read, with its size and digest, and each table's rows.
    End(BTreeMap<String, (u64, String)>, Vec<u64>),
}

async fn write_all(file: &Path, verified: &Verified, data_dir: &Path, url: &str) -> Result<()> {
    let manifest = &verified.manifest;
    let mut loader = Loader::create(url, manifest.schema_version).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Piece>>(4);
    let reading = {
        let (file, data_dir) = (file.to_owned(), data_dir.to_owned());
        let tables: Vec<String> = manifest
            .tables
            .iter()
            .map(|t| t.table.name.clone())
            .collect();
        tokio::task::spawn_blocking(move || {
            let result = replay(&file, &tables, &data_dir, &tx);
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        })
    };
    let mut ended = None;
    while let Some(piece) = rx.recv().await {
        match piece? {
            Piece::Rows(i, rows) => {
                let t = &manifest.tables[i].table;
                loader.insert(&t.name, &t.columns, &rows).await?;
            }
            Piece::End(seen, rows) => ended = Some((seen, rows)),
        }
    }
    reading
        .await
        .map_err(|e| ServiceError::Internal(format!("reading the backup: {e}")))?;
    let Some((seen, rows)) = ended else {
        return Err(damaged("it changed while it was restored"));
    };
    // The file was read twice; the second reading must be the first.
    for (e, t) in manifest.tables.iter().zip(&rows) {
        if *t != e.rows {
            return Err(damaged(format!(
                "the table {} changed while it was restored",
                e.table.name
            )));
        }
    }
    for e in manifest.entries() {
        if seen.get(&e.path) != Some(&(e.size, e.sha256.clone())) {
            return Err(damaged(format!(
                "the entry {} changed while it was restored",
                e.path
            )));
        }
    }
    loader.commit().await?;
    Ok(())
}

/// Reads the backup a second time, sending rows on and writing files.
fn replay(
    file: &Path,
    tables: &[String],
    data_dir: &Path,
    tx: &tokio::sync::mpsc::Sender<Result<Piece>>,
) -> Result<()> {
    let send = |piece: Piece| {
        tx.blocking_send(Ok(piece))
            .map_err(|_| ServiceError::Internal("the restore stopped".into()))
    };
    let opened = std::fs::File::open(file)
        .map_err(|e| ServiceError::bad_request(format!("{}: {e}", file.display())))?;
    let mut archive = tar::Archive::new(flate2::bufread::GzDecoder::new(BufReader::new(opened)));
    let mut seen = BTreeMap::new();
    let mut counts = vec![0u64; tables.len()];
    for entry in archive.entries().map_err(damaged)? {
        let entry = entry.map_err(damaged)?;
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| damaged("an entry's name is not UTF-8"))?;
        let mut reader = Hashing::new(entry);
        if let Some(i) = tables
            .iter()
            .position(|t| format::table_entry_path(t) == path)
        {
            let mut batch = Vec::with_capacity(BATCH);
            let mut lines = BufReader::new(&mut reader);
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).map_err(damaged)? == 0 {
                    break;
                }
                let row: Vec<serde_json::Value> = serde_json::from_str(&line)
                    .map_err(|e| damaged(format!("a row of {}: {e}", tables[i])))?;
                batch.push(row);
                counts[i] += 1;
                if batch.len() == BATCH {
                    send(Piece::Rows(i, std::mem::take(&mut batch)))?;
                }
            }
            if !batch.is_empty() {
                send(Piece::Rows(i, batch))?;
            }
        } else if let Some((dir, name)) = format::data_path(&path) {
            let dir = data_dir.join(dir);
            std::fs::create_dir_all(&dir).map_err(|e| {
                ServiceError::Internal(format!("could not create {}: {e}", dir.display()))
            })?;
            // Keys and packages are the server's alone, as it keeps them.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            let part = dir.join(format!(".{name}.restoring"));
            let mut out = create_private(&part)?;
            std::io::copy(&mut reader, &mut out).map_err(|e| {
                ServiceError::Internal(format!("could not write {}: {e}", part.display()))
            })?;
            out.sync_all().map_err(|e| {
                ServiceError::Internal(format!("could not write {}: {e}", part.display()))
            })?;
            std::fs::rename(&part, dir.join(name)).map_err(|e| {
                ServiceError::Internal(format!("could not write {}: {e}", part.display()))
            })?;
        } else {
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(damaged)?;
        }
        seen.insert(path, reader.finish());
    }
    send(Piece::End(seen, counts))
}

fn create_private(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ServiceError::Internal(format!("could not create {}: {e}", path.display())))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = create_private(path)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ServiceError::Internal(format!("could not write {}: {e}", path.display())))
}
