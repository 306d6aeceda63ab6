//! `cuttle backup` and `cuttle restore`: a backup of a running installation,
//! taken through its server's API or straight from its data directory, and
//! an installation rebuilt from one, on SQLite or PostgreSQL.

use super::api::{Api, ApiError};
use super::Connection;
use anyhow::{bail, Context as _};
use cuttle_service::backup::{self, RestoreTarget};
use futures_util::StreamExt as _;
use reqwest::Method;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup; it appears there only once it is whole
    /// and checked
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// Read the installation in this data directory directly instead of
    /// asking a server (the server may be running on it)
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// With --data-dir: the installation's PostgreSQL database [default:
    /// SQLite in the data directory]
    #[arg(long, requires = "data_dir", hide_env_values = true)]
    database_url: Option<String>,
    /// Put the master key in the backup, sealed with the passphrase read
    /// from --passphrase-file
    #[arg(long, requires = "passphrase_file")]
    include_master_key: bool,
    /// A file whose first line is the passphrase (at least 8 characters)
    #[arg(long, value_name = "FILE", requires = "include_master_key")]
    passphrase_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup to restore
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The new installation's data directory: empty or not yet there
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// An empty PostgreSQL database to restore into [default: SQLite in the
    /// data directory]
    #[arg(long, hide_env_values = true)]
    database_url: Option<String>,
    /// A file whose first line is the passphrase that opens the master key
    /// the backup carries
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

fn read_passphrase(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the passphrase file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The master key the server is given in its environment, if any.
fn configured_master_key() -> Option<String> {
    std::env::var("CUTTLE_MASTER_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
}

/// Removes the partly written backup unless it was finished.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub async fn backup(conn: &Connection, args: BackupArgs) -> anyhow::Result<i32> {
    let passphrase = args
        .passphrase_file
        .as_deref()
        .map(read_passphrase)
        .transpose()?;
    let started = std::time::Instant::now();
    let dir = match args.to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = args
        .to
        .file_name()
        .context("--to must name a file")?
        .to_string_lossy()
        .into_owned();
    let part = dir.join(format!(".{name}.{}.part", std::process::id()));
    let mut partial = Partial(Some(part.clone()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .with_context(|| format!("could not create {}", part.display()))?;

    match &args.data_dir {
        Some(data_dir) => {
            let prepared = backup::of_data_dir(
                data_dir,
                args.database_url.as_deref(),
                passphrase.clone(),
                configured_master_key().as_deref(),
            )
            .await?;
            let mut file = file;
            tokio::task::spawn_blocking(move || {
                prepared.write(std::io::BufWriter::with_capacity(1 << 16, &mut file))?;
                file.sync_all()
                    .map_err(|e| cuttle_service::ServiceError::Internal(e.to_string()))
            })
            .await??;
        }
        None => download(conn, passphrase.as_deref(), file).await?,
    }

    // The file is read back whole before it takes its name: a backup that
    // cannot be restored is no backup.
    let check = part.clone();
    let verify_with = passphrase.clone();
    let verified =
        tokio::task::spawn_blocking(move || backup::verify(&check, verify_with.as_deref()))
            .await??;
    std::fs::rename(&part, &args.to)
        .with_context(|| format!("could not write {}", args.to.display()))?;
    partial.0 = None;
    let m = &verified.manifest;
    let size = std::fs::metadata(&args.to).map(|m| m.len()).unwrap_or(0);
    println!(
        "Backed up {} tables ({} rows) and {} files ({} bytes) at schema version {}{} to {} \
         ({} bytes, {:.1} s)",
        m.tables.len(),
        m.rows(),
        m.files.len(),
        m.files.iter().map(|f| f.size).sum::<u64>(),
        m.schema_version,
        if m.master_key.is_some() {
            ", with the master key sealed"
        } else {
            ""
        },
        args.to.display(),
        size,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// Streams the server's backup into `file`.
async fn download(
    conn: &Connection,
    passphrase: Option<&str>,
    file: std::fs::File,
) -> anyhow::Result<()> {
    let api = Api::new(conn)?;
    let request = match passphrase {
        Some(p) => api
            .request(Method::POST, &["api", "backup"])
            .json(&serde_json::json!({ "Passphrase": p })),
        None => api.request(Method::GET, &["api", "backup"]),
    };
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(ApiError::from_body(status, &body).into());
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the server's backup stopped before its end")?;
        out.write_all(&chunk)?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<i32> {
    let passphrase = args
        .passphrase_file
        .as_deref()
        .map(read_passphrase)
        .transpose()?;
    if !args.from.is_file() {
        bail!("there is no backup file at {}", args.from.display());
    }
    let started = std::time::Instant::now();
    let restored = backup::restore(
        &args.from,
        RestoreTarget {
            data_dir: args.data_dir.clone(),
            database_url: args.database_url.clone(),
            passphrase,
            master_key: configured_master_key(),
        },
    )
    .await?;
    let m = &restored.manifest;
    println!(
        "Restored {} tables ({} rows) and {} files from a {} backup of {} into {}{} ({:.1} s)",
        m.tables.len(),
        m.rows(),
        m.files.len(),
        m.source_database,
        m.created,
        args.data_dir.display(),
        match &args.database_url {
            Some(url) => format!(" with the database {}", redact(url)),
            None => String::new(),
        },
        started.elapsed().as_secs_f64()
    );
    if restored.wrote_master_key {
        println!("The master key was restored to the data directory.");
    }
    if restored.needs_master_key {
        println!(
            "The backup holds no master key: start the server with the original one \
             (CUTTLE_MASTER_KEY, or its master.key file copied into the data directory)."
        );
    }
    Ok(0)
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..s + 3 + colon], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}
