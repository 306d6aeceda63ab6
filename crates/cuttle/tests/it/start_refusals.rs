//! What `cuttle server` refuses at start, before it writes anything: an
//! installation whose master key is missing, a schema newer than the
//! binary's, a migration changed since the database applied it, a second
//! server on one SQLite database. Runs on
//! SQLite, and on PostgreSQL when CUTTLE_TEST_DATABASE_URL is set.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};
use support::{on_both, TestServer, BIN};

/// `cuttle server` on `data_dir` (and `database_url`) expected to refuse to
/// start; its output.
fn refused_start(data_dir: &Path, database_url: Option<&str>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true")
        .env_remove("CUTTLE_DATABASE_URL")
        .env_remove("CUTTLE_MASTER_KEY")
        .env_remove("CUTTLE_CONFIG");
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let out: Output = cmd.output().expect("run cuttle server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the server started:\n{text}");
    text
}

/// Starts and stops a server so the installation exists.
fn install(data_dir: &Path, database_url: Option<&str>) {
    let mut server = TestServer::start(data_dir, database_url, &[]);
    server.signal("-TERM");
    assert!(server
        .wait_exit(std::time::Duration::from_secs(20))
        .is_some());
}

/// Runs SQL on the installation's database.
fn sql(data_dir: &Path, database_url: Option<&str>, statement: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let url = match database_url {
            Some(u) => u.to_owned(),
            None => format!("sqlite://{}", data_dir.join("cuttle.db").display()),
        };
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
}

#[test]
fn a_missing_master_key_with_an_existing_database_is_refused_naming_the_key_check() {
    on_both("start_refusals_master_key", |dir, db| {
        install(&dir, db.as_deref());
        std::fs::remove_file(dir.join("master.key")).unwrap();
        let out = refused_start(&dir, db.as_deref());
        assert!(out.contains("master_key_check"), "{out}");
        assert!(out.contains("CUTTLE_MASTER_KEY"), "{out}");
        // No new key was made in its place.
        assert!(!dir.join("master.key").exists());
    });
}

#[test]
fn a_schema_newer_than_the_binary_is_refused_naming_both_versions() {
    on_both("start_refusals_newer_schema", |dir, db| {
        install(&dir, db.as_deref());
        let newer = cuttle_store::backup::known_schema_version() + 1;
        sql(
            &dir,
            db.as_deref(),
            &format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ({newer}, 'from a newer cuttle', TRUE, X'00', 0)"
            )
            .replace(
                "X'00'",
                if db.is_some() { "'\\x00'::bytea" } else { "X'00'" },
            ),
        );
        let out = refused_start(&dir, db.as_deref());
        assert!(
            out.contains(&format!("schema is version {newer}")),
            "the database's version: {out}"
        );
        assert!(
            out.contains(&format!(
                "newest schema is version {}",
                cuttle_store::backup::known_schema_version()
            )),
            "the binary's version: {out}"
        );
        assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    });
}

#[test]
fn a_migration_changed_since_it_was_applied_is_refused() {
    on_both("start_refusals_changed_migration", |dir, db| {
        install(&dir, db.as_deref());
        let first = 20261123000001_i64;
        let zero = if db.is_some() {
            "'\\x00'::bytea"
        } else {
            "X'00'"
        };
        sql(
            &dir,
            db.as_deref(),
            &format!("UPDATE _sqlx_migrations SET checksum = {zero} WHERE version = {first}"),
        );
        let out = refused_start(&dir, db.as_deref());
        assert!(
            out.contains(&format!("migration {first} (init) differs")),
            "{out}"
        );
        assert!(out.contains("checksum"), "{out}");
    });
}

#[test]
fn migrations_are_recorded_with_checksums_and_run_once() {
    on_both("start_refusals_recorded", |dir, db| {
        install(&dir, db.as_deref());
        let count = |db: Option<&str>| -> (i64, i64) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection as _;
                sqlx::any::install_default_drivers();
                let url = match db {
                    Some(u) => u.to_owned(),
                    None => format!("sqlite://{}", dir.join("cuttle.db").display()),
                };
                let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
                let row: (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COUNT(DISTINCT checksum) FROM _sqlx_migrations WHERE success = TRUE",
                )
                .fetch_one(&mut conn)
                .await
                .unwrap();
                conn.close().await.unwrap();
                row
            })
        };
        let migrations = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../cuttle-store/migrations"
        ))
        .unwrap()
        .count() as i64;
        assert_eq!(count(db.as_deref()), (migrations, migrations));
        install(&dir, db.as_deref());
        assert_eq!(count(db.as_deref()), (migrations, migrations));
    });
}

#[test]
fn a_second_server_on_one_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start(dir.path(), None, &[]);
    let out = refused_start(dir.path(), None);
    assert!(
        out.contains(&format!("another Cuttle server (pid {})", first.child.id())),
        "{out}"
    );
    assert!(
        out.contains("one SQLite database takes one server node"),
        "{out}"
    );
    // The first keeps serving.
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { reqwest::get(format!("{}/api", first.url)).await })
        .expect("the first server answers")
        .status();
    assert!(status.is_success(), "{status}");
    drop(first);
    // Once it has stopped, the next one starts.
    let again = TestServer::start(dir.path(), None, &[]);
    drop(again);
}

/// A server killed a moment ago may leave its lock held for an instant by a
/// process it started (between that process's fork and exec): a restart
/// waits for it instead of refusing. Here `flock(1)` plays that process,
/// under a recorded pid that no longer runs.
#[test]
fn a_restart_waits_for_a_lock_left_held_by_a_stopped_servers_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let lock = dir.path().join("server.lock");
    std::fs::write(&lock, gone_pid.to_string()).unwrap();
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["-c", "echo held; sleep 2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(said.trim(), "held");

    let server = TestServer::start(dir.path(), None, &[]);
    // It could only start once the holder had let go.
    assert!(
        holder.try_wait().unwrap().is_some(),
        "the server started while the lock was held"
    );
    assert!(
        server.recent_output().contains("waiting up to 30 s"),
        "{}",
        server.recent_output()
    );
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        server.child.id().to_string()
    );
}
