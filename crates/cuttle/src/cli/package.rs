//! `cuttle package push|list`: the built-in feed from the command line.
//! Files are streamed from disk (never read whole into memory), with a
//! progress bar on a terminal.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use reqwest::Method;
use serde::Deserialize;

use super::api::{Api, ApiError};
use super::Connection;

#[derive(clap::Subcommand, Debug)]
pub enum PackageCommand {
    /// Upload packages to the space's built-in feed; each file's name gives
    /// its package id and version (Acme.Web.1.2.3.zip)
    Push {
        /// The package files (.zip, .tar.gz, .tgz, .tar, .tar.bz2, .nupkg)
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// What to do when the version is already in the feed
        #[arg(long, value_enum, default_value_t = OverwriteMode::FailIfExists)]
        overwrite_mode: OverwriteMode,
    },
    /// List the packages in the built-in feed, newest first
    List {
        /// Only package ids containing this text
        #[arg(long)]
        filter: Option<String>,
        /// Only the newest version of each package
        #[arg(long)]
        latest: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OverwriteMode {
    FailIfExists,
    OverwriteExisting,
    IgnoreIfExists,
}

impl OverwriteMode {
    fn as_str(self) -> &'static str {
        match self {
            OverwriteMode::FailIfExists => "FailIfExists",
            OverwriteMode::OverwriteExisting => "OverwriteExisting",
            OverwriteMode::IgnoreIfExists => "IgnoreIfExists",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Package {
    package_id: String,
    version: String,
    #[serde(default)]
    hash: String,
    #[serde(default)]
    package_size_bytes: u64,
    #[serde(default)]
    published: Option<String>,
}

pub async fn run(conn: &Connection, cmd: PackageCommand) -> anyhow::Result<i32> {
    let api = Api::new(conn)?;
    let space = api.space_id(&conn.space).await?;
    match cmd {
        PackageCommand::Push {
            files,
            overwrite_mode,
        } => {
            for file in &files {
                push(&api, &space, file, overwrite_mode).await?;
            }
            Ok(0)
        }
        PackageCommand::List { filter, latest } => list(&api, &space, filter, latest).await,
    }
}

async fn push(
    api: &Api,
    space: &str,
    path: &std::path::Path,
    mode: OverwriteMode,
) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not a file name", path.display()))?
        .to_owned();
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("could not open {}", path.display()))?;
    let size = file.metadata().await?.len();
    let bar = progress_bar(&name, size);
    let reading = {
        let bar = bar.clone();
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                bar.inc(bytes.len() as u64);
            }
        })
    };
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(reading), size)
            .file_name(name.clone())
            .mime_str("application/octet-stream")?;
    let form = reqwest::multipart::Form::new().part("file", part);
    let request = api
        .request(Method::POST, &["api", space, "packages", "raw"])
        .query(&[("overwriteMode", mode.as_str())])
        .multipart(form);
    let response = request
        .send()
        .await
        .with_context(|| format!("could not upload {name}"))?;
    bar.finish_and_clear();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(anyhow::Error::from(ApiError::from_body(status, &body)))
            .with_context(|| format!("{name} was not pushed"));
    }
    let pushed: Package = serde_json::from_str(&body)
        .with_context(|| format!("unexpected answer to the upload of {name}"))?;
    println!(
        "Pushed {} {} ({}, SHA-256 {})",
        pushed.package_id,
        pushed.version,
        human_bytes(pushed.package_size_bytes),
        pushed.hash
    );
    Ok(())
}

/// A bar on a terminal; nothing when the output is a file or a pipe.
fn progress_bar(name: &str, size: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_owned());
    bar
}

async fn list(api: &Api, space: &str, filter: Option<String>, latest: bool) -> anyhow::Result<i32> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Page {
        items: Vec<Package>,
    }
    let mut query = vec![("take", "2147483647".to_owned())];
    if let Some(f) = filter {
        query.push(("filter", f));
    }
    if latest {
        query.push(("latest", "true".into()));
    }
    let page: Page = api
        .send(
            api.request(Method::GET, &["api", space, "packages"])
                .query(&query),
        )
        .await?;
    if page.items.is_empty() {
        println!("No packages.");
        return Ok(0);
    }
    let id_width = page
        .items
        .iter()
        .map(|p| p.package_id.len())
        .max()
        .unwrap_or(0)
        .max("PACKAGE".len());
    let version_width = page
        .items
        .iter()
        .map(|p| p.version.len())
        .max()
        .unwrap_or(0)
        .max("VERSION".len());
    println!(
        "{:id_width$}  {:version_width$}  {:>10}  PUBLISHED",
        "PACKAGE", "VERSION", "SIZE"
    );
    for p in &page.items {
        println!(
            "{:id_width$}  {:version_width$}  {:>10}  {}",
            p.package_id,
            p.version,
            human_bytes(p.package_size_bytes),
            p.published.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(200 << 20), "200.0 MiB");
    }
}
