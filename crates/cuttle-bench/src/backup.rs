//! `cuttle-bench backup`: how long a backup and a restore take and how large
//! the backup is, for the 10,000-deployment history of `cuttle-bench
//! history` (50 projects × 20 environments, each deployment with its task
//! and log), beside the database's own tools on the same database:
//! `sqlite3 .backup` / `.restore` and `pg_dump -Fc` / `pg_restore`.

use crate::history::fixture;
use crate::history::generator::Generator;
use crate::history::table::thousands;
use crate::{Api, PgDatabase, Server, API_KEY};
use anyhow::{ensure, Context, Result};
use reqwest::Client;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// Deployments in the history backed up.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    deployments: u64,
    /// Also restore onto PostgreSQL and measure pg_dump, in databases
    /// created on this server and dropped afterwards.
    #[arg(long, env = "CUTTLE_BENCH_DATABASE_URL", hide_env_values = true)]
    postgres: Option<String>,
}

/// Runs `program` with `args`, failing with its output unless it succeeds;
/// how long it took, in seconds.
fn timed(program: &Path, args: &[&str]) -> Result<f64> {
    let t0 = Instant::now();
    let out = Command::new(program)
        .args(args)
        .env_remove("CUTTLE_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {}", program.display()))?;
    let took = t0.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

fn size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{} is missing", path.display()))?
        .len())
}

fn mib(bytes: u64) -> String {
    format!("{:8.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn row(database: &str, what: &str, seconds: f64, bytes: Option<u64>) {
    println!(
        "{database:<9} {what:<44} {seconds:7.2} s  {}",
        bytes.map(mib).unwrap_or_default()
    );
}

pub async fn run(cuttle: &Path, args: &BackupArgs) -> Result<()> {
    let data = tempfile::Builder::new()
        .prefix("cuttle-bench-backup-")
        .tempdir()?;
    let source = data.path().join("source");
    let http = Client::builder()
        .no_proxy()
        .default_headers(
            [("X-Octopus-ApiKey".parse()?, API_KEY.parse()?)]
                .into_iter()
                .collect(),
        )
        .build()?;

    // The history, written as `cuttle-bench history` writes it.
    let (mut server, _) = Server::start(cuttle, &source, None, &http, &[]).await?;
    let fixture = fixture::create(
        &Api {
            http: &http,
            base: &server.base,
        },
        100,
    )
    .await
    .context("could not set up the projects and environments")?;
    server.stop()?;
    drop(server);
    let db = source.join("cuttle.db");
    let url = cuttle_store::Store::sqlite_url(&db);
    let mut generator = Generator::load(&url, &fixture, args.deployments).await?;
    generator.grow_to(args.deployments).await?;
    drop(generator);
    // As a running server leaves it: the write-ahead log folded in.
    ensure!(
        Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA wal_checkpoint(TRUNCATE);")
            .stdout(Stdio::null())
            .status()
            .context("sqlite3 is needed (apt-get install sqlite3)")?
            .success(),
        "sqlite3 could not checkpoint the database"
    );
    println!(
        "cuttle-bench backup: {} deployments; the SQLite database is {}",
        thousands(args.deployments),
        mib(size(&db)?).trim()
    );
    println!(
        "{:<9} {:<44} {:>9}  {:>12}",
        "database", "what", "time", "size"
    );

    let out = |name: &str| data.path().join(name);
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let cuttle_backup = out("sqlite.tar.gz");
    let t = timed(
        cuttle,
        &[
            "backup",
            "--to",
            &s(&cuttle_backup),
            "--data-dir",
            &s(&source),
        ],
    )?;
    row(
        "sqlite",
        "cuttle backup --data-dir",
        t,
        Some(size(&cuttle_backup)?),
    );
    {
        let (server, _) = Server::start(cuttle, &source, None, &http, &[]).await?;
        let via_server = out("sqlite-server.tar.gz");
        let t = timed(
            cuttle,
            &[
                "backup",
                "--to",
                &s(&via_server),
                "--server",
                &server.base,
                "--api-key",
                API_KEY,
            ],
        )?;
        row(
            "sqlite",
            "cuttle backup --server (server running)",
            t,
            Some(size(&via_server)?),
        );
    }
    let copy = out("sqlite3.db");
    let t = timed(
        Path::new("sqlite3"),
        &[&s(&db), &format!(".backup '{}'", s(&copy))],
    )?;
    row("sqlite", "sqlite3 .backup", t, Some(size(&copy)?));
    let gz = out("sqlite3.db.gz");
    let t0 = Instant::now();
    ensure!(
        Command::new("gzip")
            .args(["-1", "-k", &s(&copy)])
            .status()?
            .success(),
        "gzip failed"
    );
    row(
        "sqlite",
        "  gzip -1 of it (not included above)",
        t0.elapsed().as_secs_f64(),
        Some(size(&gz)?),
    );

    let restored = out("restored-sqlite");
    let t = timed(
        cuttle,
        &[
            "restore",
            "--from",
            &s(&cuttle_backup),
            "--data-dir",
            &s(&restored),
        ],
    )?;
    row("sqlite", "cuttle restore (onto SQLite)", t, None);
    let t = timed(
        Path::new("sqlite3"),
        &[
            &s(&out("sqlite3-restored.db")),
            &format!(".restore '{}'", s(&copy)),
        ],
    )?;
    row("sqlite", "sqlite3 .restore", t, None);

    if let Some(admin) = &args.postgres {
        let pg = PgDatabase::create(admin)?;
        let t = timed(
            cuttle,
            &[
                "restore",
                "--from",
                &s(&cuttle_backup),
                "--data-dir",
                &s(&out("restored-pg")),
                "--database-url",
                &pg.url,
            ],
        )?;
        row("postgres", "cuttle restore (onto PostgreSQL)", t, None);
        let pg_backup = out("pg.tar.gz");
        let t = timed(
            cuttle,
            &[
                "backup",
                "--to",
                &s(&pg_backup),
                "--data-dir",
                &s(&out("restored-pg")),
                "--database-url",
                &pg.url,
            ],
        )?;
        row(
            "postgres",
            "cuttle backup --data-dir",
            t,
            Some(size(&pg_backup)?),
        );
        let dump = out("pg.dump");
        let t = timed(Path::new("pg_dump"), &["-Fc", "-f", &s(&dump), &pg.url])?;
        row("postgres", "pg_dump -Fc", t, Some(size(&dump)?));
        let again = PgDatabase::create(admin)?;
        let t = timed(
            Path::new("pg_restore"),
            &["--no-owner", "-d", &again.url, &s(&dump)],
        )?;
        row("postgres", "pg_restore", t, None);
    }
    Ok(())
}
