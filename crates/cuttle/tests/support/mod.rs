//! A real `cuttle server` process on a loopback port, for tests that drive
//! the binary as users do.

#![allow(dead_code)]

use cuttle_store::testing::ScratchPostgres;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const KEY: &str = "API-PROCESSPROCESSPROCESSPROCESS0001";
pub const BIN: &str = env!("CARGO_BIN_EXE_cuttle");

pub struct ServerProcess {
    pub child: Child,
    pub url: String,
}

impl ServerProcess {
    pub fn start(data_dir: &Path, database_url: Option<&str>, extra: &[&str]) -> ServerProcess {
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("CUTTLE_ADMIN_API_KEY", KEY)
            .env("CUTTLE_NODE_NAME", "test-node")
            .env_remove("CUTTLE_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let mut child = cmd.spawn().expect("start cuttle server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server announced its address");
        ServerProcess { child, url }
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `scenario` with a fresh data directory on SQLite, then on PostgreSQL.
pub fn on_both(name: &str, scenario: impl Fn(PathBuf, Option<String>)) {
    let dir = tempfile::tempdir().unwrap();
    scenario(dir.path().to_path_buf(), None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(pg) = rt.block_on(ScratchPostgres::create(name)) {
        let dir = tempfile::tempdir().unwrap();
        scenario(dir.path().to_path_buf(), Some(pg.url.clone()));
    }
}
