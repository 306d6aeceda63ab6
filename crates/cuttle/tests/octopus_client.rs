//! Proof of compatibility: the official Octopus Deploy TypeScript client
//! (`@octopusdeploy/api-client`, pinned in tests/compat) drives a real
//! Cuttle server as a CI pipeline would, on SQLite and on PostgreSQL.

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::{on_both, ServerProcess, KEY};

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn the_octopus_client_creates_and_deploys_a_release() {
    assert!(
        have("node") && have("npm"),
        "this test needs Node.js and npm on PATH (.ci/run installs them)"
    );
    let dir = compat_dir();
    if !dir.join("node_modules/@octopusdeploy/api-client").exists() {
        let install = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("run npm ci");
        assert!(install.success(), "npm ci failed in {}", dir.display());
    }
    on_both("octopus-client", |data_dir, db| {
        let server = ServerProcess::start(&data_dir, db.as_deref(), &[]);
        let out = Command::new("node")
            .arg("flow.mjs")
            .current_dir(&dir)
            .env("CUTTLE_URL", &server.url)
            .env("CUTTLE_API_KEY", KEY)
            .output()
            .expect("run node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "the Octopus client flow failed on {}",
            if db.is_some() { "PostgreSQL" } else { "SQLite" }
        );
        assert!(stdout.contains("finished Success"));
    });
}
