//! `cuttle agent init` as an operator runs it: the real binary and a real
//! data directory.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cuttle");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn init(data_dir: &Path, extra: &[&str]) -> Run {
    let output = Command::new(BIN)
        .args(["agent", "init", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("CUTTLE_AGENT_DATA_DIR")
        .output()
        .expect("run cuttle");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The thumbprint from its own `Thumbprint: <64 hex>` line.
fn thumbprint(stdout: &str) -> String {
    let found: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("Thumbprint: "))
        .collect();
    assert_eq!(found.len(), 1, "one thumbprint line in {stdout:?}");
    let t = found[0];
    assert!(
        t.len() == 64
            && t.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "64 uppercase hex digits: {t:?}"
    );
    t.to_owned()
}

fn files(data_dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let certs = data_dir.join("certs");
    (
        std::fs::read(certs.join("identity.key")).expect("key file"),
        std::fs::read(certs.join("identity.crt")).expect("certificate file"),
    )
}

#[test]
fn init_creates_refuses_to_overwrite_and_replaces_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("agent");

    let first = init(&data_dir, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let original = thumbprint(&first.stdout);
    let before = files(&data_dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = data_dir.join("certs/identity.key");
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let again = init(&data_dir, &[]);
    assert_eq!(again.code, 1, "refused: {}", again.stdout);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    assert!(again.stderr.contains(&original), "{}", again.stderr);
    assert!(!again.stdout.contains("Thumbprint:"), "{}", again.stdout);
    assert_eq!(files(&data_dir), before, "the identity is untouched");

    let forced = init(&data_dir, &["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    let replaced = thumbprint(&forced.stdout);
    assert_ne!(replaced, original);
    assert!(
        forced.stdout.contains(&original),
        "names the old thumbprint"
    );
    let after = files(&data_dir);
    assert_ne!(after.0, before.0, "a new key");
    assert_ne!(after.1, before.1, "a new certificate");
}
