//! `cuttle host`: provisioning time (a control-plane create until the new
//! instance's `/api` answers 200 through its host name) and the host's
//! resident memory with no instance and with N idle ones.

use super::{ms, Stats, READY_TIMEOUT};
use anyhow::{bail, ensure, Context, Result};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "cuttle-bench-host-control-token-0123";
const DOMAIN: &str = "bench.test";

#[derive(clap::Args)]
pub struct HostArgs {
    /// Instances created and timed.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    instances: u32,
    /// Also on PostgreSQL: the host's registry and every instance's database
    /// are made on this server (in databases named for a scratch one).
    #[arg(long, env = "CUTTLE_BENCH_DATABASE_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Instances on PostgreSQL: each holds connections (up to 5 while busy),
    /// and the server's max_connections is shared.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    postgres_instances: u32,
}

pub async fn run(cuttle: &Path, args: &HostArgs) -> Result<()> {
    println!("cuttle-bench host: instances created one after another through the control plane");
    scenario(cuttle, args.instances, None).await?;
    if let Some(admin) = &args.postgres {
        let db = super::PgDatabase::create(admin)?;
        let outcome = scenario(cuttle, args.postgres_instances, Some(&db.url)).await;
        // Each instance's database, named for the scratch one.
        drop_instance_databases(admin, &digest8(&db.url));
        outcome?;
    }
    Ok(())
}

/// Drops the databases `cuttle_*_<digest>` one at a time (DROP DATABASE
/// cannot run inside a function or transaction).
fn drop_instance_databases(admin: &str, digest: &str) {
    let listed = Command::new("psql")
        .args(["-X", "-w", "-At", "-c"])
        .arg(format!(
            "SELECT datname FROM pg_database WHERE datname LIKE 'cuttle\\_%\\_{digest}'"
        ))
        .arg(admin)
        .output();
    let Ok(listed) = listed else { return };
    for name in String::from_utf8_lossy(&listed.stdout).lines() {
        if let Err(e) = super::psql(
            admin,
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        ) {
            eprintln!("cuttle-bench: could not drop {name}: {e:#}");
        }
    }
}

/// As the host names instances' databases: the first 8 hex of the SHA-256
/// of its registry database's name.
fn digest8(url: &str) -> String {
    use sha2::Digest as _;
    let path = url.split('?').next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or_default();
    hex::encode(sha2::Sha256::digest(name.as_bytes()))[..8].to_owned()
}

struct HostProcess {
    child: Child,
    public: String,
    control: String,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HostProcess {
    fn start(cuttle: &Path, dir: &Path, database_url: Option<&str>) -> Result<HostProcess> {
        let mut cmd = Command::new(cuttle);
        cmd.args([
            "host",
            "--listen",
            "127.0.0.1:0",
            "--control-listen",
            "127.0.0.1:0",
            "--domain",
            DOMAIN,
            "--data-dir",
        ])
        .arg(dir)
        .env("CUTTLE_HOST_CONTROL_TOKEN", TOKEN)
        .env("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true")
        .env("RUST_LOG", "warn")
        .env_remove("CUTTLE_HOST_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let mut child = cmd.spawn().context("could not start cuttle host")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..].trim().to_owned();
                    let _ = tx.send((line.contains("control plane"), url));
                }
            }
        });
        let (mut public, mut control) = (None, None);
        let until = Instant::now() + READY_TIMEOUT;
        while public.is_none() || control.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, url)) => control = Some(url),
                Ok((false, url)) => public = Some(url),
                Err(_) => {
                    let _ = child.kill();
                    bail!("cuttle host did not announce its listeners");
                }
            }
        }
        Ok(HostProcess {
            child,
            public: public.unwrap_or_default(),
            control: control.unwrap_or_default(),
        })
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }
}

async fn scenario(cuttle: &Path, instances: u32, database_url: Option<&str>) -> Result<()> {
    let label = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let dir = tempfile::Builder::new()
        .prefix("cuttle-bench-host-")
        .tempdir()?;
    let host = HostProcess::start(cuttle, dir.path(), database_url)?;
    let http = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_empty = host.rss_kib()?;
    let mut took = vec![];
    for i in 0..instances {
        let name = format!("bench{i}");
        let t0 = Instant::now();
        let created = http
            .post(format!("{}/instances", host.control))
            .bearer_auth(TOKEN)
            .json(&json!({"Name": name, "TaskCap": 2}))
            .send()
            .await?;
        ensure!(
            created.status() == StatusCode::CREATED,
            "creating {name} answered {}",
            created.status()
        );
        let created: Value = created.json().await?;
        let key = created["ApiKey"].as_str().context("no ApiKey")?.to_owned();
        loop {
            let r = http
                .get(format!("{}/api", host.public))
                .header("Host", format!("{name}.{DOMAIN}"))
                .header("X-Octopus-ApiKey", &key)
                .send()
                .await?;
            if r.status() == StatusCode::OK {
                break;
            }
            ensure!(t0.elapsed() < READY_TIMEOUT, "{name} never answered /api");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(ms(t0.elapsed()));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_full = host.rss_kib()?;
    let s = Stats::of(took);
    println!(
        "  {label:<8} provisioning (create → 200 from /api): median {:.0} ms, p95 {:.0} ms, min {:.0} ms, max {:.0} ms",
        s.median, s.p95, s.min, s.max
    );
    let per = (idle_full.saturating_sub(idle_empty)) as f64 / f64::from(instances) / 1024.0;
    println!(
        "  {label:<8} host RSS idle: {:.1} MiB with 0 instances, {:.1} MiB with {} ({per:.1} MiB each)",
        idle_empty as f64 / 1024.0,
        idle_full as f64 / 1024.0,
        instances
    );
    Ok(())
}
