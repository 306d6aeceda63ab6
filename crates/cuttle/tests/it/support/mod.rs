//! Test helpers that run the real `cuttle` binary as users do: a server
//! process on a loopback port, and scratch PostgreSQL databases.

// Each test crate includes this module and uses only part of it.
#![allow(dead_code)]

pub mod agents;
pub mod host;
pub mod hostile;
pub mod observe;

pub use cuttle_store::testing::ScratchPostgres;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The administrator's API key every test server starts with (40 characters).
pub const KEY: &str = "API-CUTTLETESTSERVERKEY00000000000000001";
/// The administrator's password every test server starts with.
pub const PASSWORD: &str = "cuttle-test-password";
pub const BIN: &str = env!("CARGO_BIN_EXE_cuttle");

/// How many of the server's last output lines are kept for diagnostics.
const KEPT_LINES: usize = 200;
/// A debug build migrating a fresh PostgreSQL database can be slow to start.
const START_LIMIT: Duration = Duration::from_secs(60);
/// After SIGTERM the server lets running steps finish; past this it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// A `cuttle server` child process, stopped when dropped.
pub struct TestServer {
    pub child: Child,
    pub url: String,
    output: Arc<Mutex<VecDeque<String>>>,
    // Declared last: removed only after Drop has stopped the server.
    own_dir: Option<tempfile::TempDir>,
}

/// The name the process-level tests know it by.
pub type ServerProcess = TestServer;

impl TestServer {
    /// A server on SQLite in a data directory of its own.
    pub fn sqlite() -> TestServer {
        TestServer::with_database(None)
    }

    /// A server in a data directory of its own, on PostgreSQL when
    /// `database_url` is given, else on SQLite.
    pub fn with_database(database_url: Option<&str>) -> TestServer {
        let dir = tempfile::tempdir().expect("create a data directory");
        let mut server = TestServer::start(dir.path(), database_url, &[]);
        server.own_dir = Some(dir);
        server
    }

    /// A server on `data_dir`, which outlives it, so a test can restart on
    /// the same installation; `extra` are more `cuttle server` arguments.
    pub fn start(data_dir: &Path, database_url: Option<&str>, extra: &[&str]) -> TestServer {
        TestServer::start_with_env(data_dir, database_url, extra, &[])
    }

    /// As [`TestServer::start`], with more environment variables (`RUST_LOG`…).
    pub fn start_with_env(
        data_dir: &Path,
        database_url: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut cmd = Command::new(BIN);
        // Where isolation is not required (a developer's machine without
        // bubblewrap), scripts run without it; where it is (CI), its absence
        // fails the tests that deploy.
        if std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none() {
            cmd.env("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true");
        } else {
            cmd.env_remove("CUTTLE_BUILTIN_WORKER_UNISOLATED");
        }
        cmd.envs(env.iter().copied());
        cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("CUTTLE_ADMIN_API_KEY", KEY)
            .env("CUTTLE_ADMIN_PASSWORD", PASSWORD)
            .env("CUTTLE_NODE_NAME", "test-node")
            // Only the arguments choose the database, never the caller's shell.
            .env_remove("CUTTLE_DATABASE_URL")
            .env_remove("CUTTLE_MASTER_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let mut child = cmd.spawn().expect("start the cuttle server");
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        drain(child.stdout.take().unwrap(), output.clone(), Some(tx));
        drain(child.stderr.take().unwrap(), output.clone(), None);

        let deadline = Instant::now() + START_LIMIT;
        let url = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(url) => break url,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // Let the readers catch the last words before reporting them.
                        std::thread::sleep(Duration::from_millis(200));
                        panic!(
                            "the cuttle server exited ({status}) before listening:\n{}",
                            tail(&output)
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Its output ended without an address: it is exiting.
                    let status = child.wait();
                    std::thread::sleep(Duration::from_millis(200));
                    panic!(
                        "the cuttle server closed its output ({status:?}) before listening:\n{}",
                        tail(&output)
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the cuttle server did not announce its address within {} s:\n{}",
                        START_LIMIT.as_secs(),
                        tail(&output)
                    );
                }
            }
        };
        TestServer {
            child,
            url,
            output,
            own_dir: None,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:43123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The administrator's API key.
    pub fn api_key(&self) -> &'static str {
        KEY
    }

    /// The server's last lines of output, stdout and stderr interleaved.
    pub fn recent_output(&self) -> String {
        tail(&self.output)
    }

    /// Sends a signal by name, e.g. `-TERM` or `-KILL`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {} failed", self.child.id());
    }

    /// Waits for the server to exit by itself; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(_) => return None,
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // An exited child is already reaped, and its pid may be reused: only
        // signal one still running.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            if self.wait_exit(STOP_LIMIT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last output of the cuttle server at {} ---\n{}",
                self.url,
                self.recent_output()
            );
        }
    }
}

/// Reads a child's stream to its end, so the child never blocks on a full
/// pipe, keeping the last lines; the first address announced goes to `announce`.
fn drain(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<VecDeque<String>>>,
    mut announce: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                if let Some(tx) = announce.take() {
                    let url = line[at + "listening on ".len()..].trim();
                    let _ = tx.send(url.trim_end_matches('/').to_owned());
                }
            }
            let mut kept = output.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() == KEPT_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
}

fn tail(output: &Mutex<VecDeque<String>>) -> String {
    let kept = output.lock().unwrap_or_else(|e| e.into_inner());
    kept.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bytes that do not compress or repeat (xorshift), so that sending them
/// costs what their length says.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A scratch PostgreSQL database for one test, or `None` (said as skipped)
/// when `CUTTLE_TEST_DATABASE_URL` is unset.
pub fn scratch_postgres(name: &str) -> Option<ScratchPostgres> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for creating the database");
    rt.block_on(ScratchPostgres::create(name))
}

/// Runs `scenario` with a fresh data directory on SQLite, then again on a
/// scratch PostgreSQL database when `CUTTLE_TEST_DATABASE_URL` is set.
pub fn on_both(name: &str, scenario: impl Fn(PathBuf, Option<String>)) {
    let dir = tempfile::tempdir().expect("create a data directory");
    scenario(dir.path().to_path_buf(), None);
    if let Some(db) = scratch_postgres(name) {
        let dir = tempfile::tempdir().expect("create a data directory");
        scenario(dir.path().to_path_buf(), Some(db.url.clone()));
    }
}
