//! PostgreSQL restarted under load. Two nodes run on a PostgreSQL server of
//! the test's own (initdb on a free loopback port, so the machine's server
//! is never touched) while writers on both nodes create resources and a
//! deployment runs; the server is stopped, left down for a moment and
//! started again. The nodes reconnect by themselves, every write they
//! acknowledged is there, the deployment that ran across the restart ends,
//! and a deployment queued afterwards succeeds.

use crate::support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::observe::{api, deploy, try_call};
use support::{TestServer, KEY};

const PATIENCE: Duration = Duration::from_secs(90);

/// A PostgreSQL server of the test's own, stopped when dropped.
struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Root may not run PostgreSQL: its commands run as `postgres`.
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

impl OwnPostgres {
    /// Made and started, or `None` (said) when the tests have no
    /// PostgreSQL; a machine that has one must also have its server
    /// programs.
    fn start() -> Option<OwnPostgres> {
        if std::env::var(cuttle_store::testing::TEST_DATABASE_ENV).is_err() {
            eprintln!(
                "skipped on PostgreSQL: {} is not set",
                cuttle_store::testing::TEST_DATABASE_ENV
            );
            return None;
        }
        let bin = server_programs().expect(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: install postgresql",
        );
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("cuttle-pg-")
            .tempdir_in("/var/tmp")
            .unwrap();
        if as_postgres {
            let chown = Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .unwrap();
            assert!(chown.success(), "chown to postgres");
        }
        let data = dir.path().join("data");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let pg = OwnPostgres {
            bin,
            data,
            port,
            as_postgres,
            _dir: dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        pg.up();
        Some(pg)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log").display().to_string();
        let data = self.data.display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        );
    }

    /// A fast shutdown: sessions are cut off, as in a failover or a
    /// restart for an upgrade.
    fn down(&self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let path = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The directory of initdb and pg_ctl: Debian keeps them by version.
fn server_programs() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let on_path = Command::new("sh")
            .args(["-c", "command -v initdb"])
            .output()
            .ok()?;
        let initdb = String::from_utf8(on_path.stdout).ok()?;
        let bin = Path::new(initdb.trim()).parent()?.to_path_buf();
        bin.join("pg_ctl").is_file().then_some(bin)
    })
}

/// Writes environments through `url` until `stop`, keeping the names of
/// those the server acknowledged.
fn writer(url: String, node: &'static str, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acknowledged = vec![];
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let name = format!("{node}-{i}");
        let answer = try_call(
            "POST",
            &format!("{url}/api/environments"),
            &[("X-Octopus-ApiKey", KEY)],
            Some(json!({"Name": name})),
        );
        match answer {
            Some((status, _, _)) if status.is_success() => acknowledged.push(name),
            // Refused or cut off while the database was away: not
            // acknowledged, so nothing is owed; a pause, not a flood.
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    acknowledged
}

fn environment_names(url: &str) -> Vec<String> {
    api(url, "GET", "/api/environments?take=100000", None)["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `what` until it answers `Some`, or panics after [`PATIENCE`].
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < until, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn task(url: &str, id: &str) -> Option<Value> {
    let (status, _, text) = try_call(
        "GET",
        &format!("{url}/api/tasks/{id}"),
        &[("X-Octopus-ApiKey", KEY)],
        None,
    )?;
    if !status.is_success() {
        return None;
    }
    serde_json::from_str(&text).ok()
}

#[test]
fn fault_postgres_restarted_under_load_loses_no_acknowledged_write() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let url = pg.url();
    let dirs = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dirs.path().join("a"), dirs.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let a = TestServer::start(&dir_a, Some(&url), &["--node-name", "a"]);
    std::fs::copy(dir_a.join("master.key"), dir_b.join("master.key")).unwrap();
    let b = TestServer::start(&dir_b, Some(&url), &["--node-name", "b"]);
    let (url_a, url_b) = (a.url().to_owned(), b.url().to_owned());

    // A deployment that runs across the restart.
    let across = deploy(&url_a, "Across", "sleep 6; echo 'after the restart'");

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(vec![]));
    let writers: Vec<_> = [(url_a.clone(), "a"), (url_b.clone(), "b")]
        .into_iter()
        .map(|(url, node)| {
            let (stop, written) = (stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mine = writer(url, node, stop);
                written.lock().unwrap().extend(mine);
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(2));
    pg.down();
    std::thread::sleep(Duration::from_secs(3));
    pg.up();
    // Both nodes take writes again by themselves.
    for (url, node) in [(&url_a, "a"), (&url_b, "b")] {
        eventually(&format!("node {node} writing again"), || {
            let (status, _, _) = try_call(
                "POST",
                &format!("{url}/api/environments"),
                &[("X-Octopus-ApiKey", KEY)],
                Some(json!({"Name": format!("{node}-after")})),
            )?;
            status.is_success().then_some(())
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    let acknowledged = written.lock().unwrap().clone();
    assert!(
        acknowledged.iter().any(|n| n.starts_with("a-"))
            && acknowledged.iter().any(|n| n.starts_with("b-")),
        "both nodes took writes: {acknowledged:?}"
    );
    for url in [&url_a, &url_b] {
        let stored = environment_names(url);
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|n| !stored.contains(n))
            .collect();
        assert!(
            lost.is_empty(),
            "acknowledged but lost: {lost:?} (of {})",
            acknowledged.len()
        );
    }

    // The deployment that ran across the restart ends (its node decides
    // how), and the cluster deploys again.
    let ended = eventually("the deployment across the restart ends", || {
        task(&url_b, &across).filter(|t| t["IsCompleted"] == true)
    });
    assert!(
        ended["State"] == "Success" || ended["State"] == "Failed",
        "{ended}"
    );
    let after = deploy(&url_b, "After", "echo 'deployed after the restart'");
    let done = eventually("a deployment after the restart", || {
        task(&url_a, &after).filter(|t| t["IsCompleted"] == true)
    });
    assert_eq!(done["State"], "Success", "{done}");
}
