//! Proof of compatibility: the official Octopus Deploy TypeScript client
//! (`@octopusdeploy/api-client`, pinned in tests/compat) drives a real Cuttle
//! server as a CI pipeline would — resolve the space, create an environment
//! and a project with a script step, create a release and deploy it through
//! the executions API, and wait with the client's task waiter — on SQLite,
//! and on PostgreSQL when CUTTLE_TEST_DATABASE_URL is set.

use crate::support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{scratch_postgres, TestServer};

/// flow.mjs gives up after 5 minutes by itself; this only guards against a
/// node process that hangs regardless.
const FLOW_LIMIT: Duration = Duration::from_secs(360);

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat")
}

/// Fails, rather than skips, without Node.js: CI installs it, and a skipped
/// proof would pass unnoticed.
fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs Node.js and npm, but `{tool} --version` did not run; install them \
         (Debian: apt-get install nodejs npm), as .ci/run does"
    );
}

/// `npm ci` once for the whole test binary: both tests need the client, and
/// two installs into one directory at once would trip over each other.
fn install_client() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        require("node");
        require("npm");
        let dir = compat_dir();
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run npm: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "npm ci failed in {} ({}):\n{}{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs flow.mjs against `server`, prints what it said, and asserts it passed.
fn run_flow(server: &TestServer, database: &str) {
    let mut child = Command::new("node")
        .arg("flow.mjs")
        .current_dir(compat_dir())
        .env("CUTTLE_URL", server.url())
        .env("CUTTLE_API_KEY", server.api_key())
        // The client's HTTP library honours proxy variables; loopback must not
        // go through a proxy.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let stdout = read_all(child.stdout.take().unwrap());
    let stderr = read_all(child.stderr.take().unwrap());

    let deadline = Instant::now() + FLOW_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    println!("--- node flow.mjs on {database} ---\n{stdout}{stderr}");

    let status = status.unwrap_or_else(|| {
        panic!(
            "the Octopus client flow on {database} did not finish within {} s",
            FLOW_LIMIT.as_secs()
        )
    });
    assert!(
        status.success() && stdout.contains("compat: 1 passed, 0 failed"),
        "the Octopus client flow failed on {database} ({status}); its output is above"
    );
}

/// Collects a pipe in the background, so the child never blocks writing.
fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[test]
fn the_octopus_client_deploys_a_release_on_sqlite() {
    install_client();
    let server = TestServer::sqlite();
    run_flow(&server, "SQLite");
}

#[test]
fn the_octopus_client_deploys_a_release_on_postgresql() {
    let Some(db) = scratch_postgres("octopus-client") else {
        return;
    };
    install_client();
    // Declared after the database, so the server stops before it is dropped.
    let server = TestServer::with_database(Some(&db.url));
    run_flow(&server, "PostgreSQL");
}
