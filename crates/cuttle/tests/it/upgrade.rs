//! Upgrades keep data: the current binary started on an installation an
//! earlier Cuttle wrote (tests/upgrade/fixture, made by
//! tests/upgrade/make-fixture.sh with that earlier commit) migrates it
//! once, reads every resource back, and deploys. On SQLite, and on
//! PostgreSQL (the fixture's dump loaded into a scratch database) when
//! CUTTLE_TEST_DATABASE_URL is set.

use crate::support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{scratch_postgres, TestServer};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/upgrade/fixture")
}

fn fixture_schema() -> i64 {
    let text = std::fs::read_to_string(fixture().join("fixture.json")).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    manifest["SchemaVersion"].as_i64().unwrap()
}

/// Copies a directory tree (the fixture's files are few and small).
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            // Git keeps no file modes but the executable bit, and the
            // server refuses keys that others can read: the modes the
            // earlier server gave its files.
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    // The server keeps its data directory to itself.
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn api(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> Value {
    block_on(async {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .header("X-Octopus-ApiKey", server.api_key());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path} → {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    })
}

/// The versions and checksums of the applied migrations, in order.
fn applied(data_dir: &Path, database_url: Option<&str>) -> Vec<(i64, Vec<u8>)> {
    block_on(async {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let url = match database_url {
            Some(u) => u.to_owned(),
            None => format!("sqlite://{}", data_dir.join("cuttle.db").display()),
        };
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT version, checksum FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        rows
    })
}

fn wait_task(server: &TestServer, id: &str) -> Value {
    for _ in 0..3000 {
        let t = api(server, "GET", &format!("/api/tasks/{id}"), None);
        if t["IsCompleted"] == true {
            return t;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("task {id} did not finish");
}

/// Starts the current binary on the earlier installation and checks it.
fn upgrade(data_dir: &Path, database_url: Option<&str>) {
    let before = applied(data_dir, database_url);
    assert_eq!(
        before.last().map(|(v, _)| *v),
        Some(fixture_schema()),
        "the fixture is at its recorded schema"
    );
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cuttle-store/migrations"
    ))
    .unwrap()
    .count();
    assert!(
        before.len() < migrations,
        "the fixture predates a migration, so the upgrade runs one"
    );

    let server = TestServer::start(data_dir, database_url, &[]);
    let after = applied(data_dir, database_url);
    assert_eq!(after.len(), migrations, "every migration applied");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the earlier migrations were not run again"
    );

    // Every resource the earlier Cuttle wrote reads back.
    let envs = api(&server, "GET", "/api/environments?name=Production", None);
    assert_eq!(envs["TotalResults"], 1, "{envs}");
    let projects = api(&server, "GET", "/api/projects?name=Upgrade%20Web", None);
    assert_eq!(projects["TotalResults"], 1, "{projects}");
    let project = &projects["Items"][0];
    let pid = project["Id"].as_str().unwrap();
    let process = api(
        &server,
        "GET",
        &format!("/api/projects/{pid}/deploymentprocesses"),
        None,
    );
    assert_eq!(process["Steps"][0]["Name"], "Check", "{process}");
    let set = project["VariableSetId"].as_str().unwrap();
    let vars = api(&server, "GET", &format!("/api/variables/{set}"), None);
    let names: Vec<&str> = vars["Variables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["Name"].as_str())
        .collect();
    assert!(
        names.contains(&"Upgrade.Greeting") && names.contains(&"Upgrade.Secret"),
        "{vars}"
    );
    let releases = api(
        &server,
        "GET",
        &format!("/api/projects/{pid}/releases"),
        None,
    );
    assert_eq!(releases["Items"][0]["Version"], "1.0.0", "{releases}");
    let deployments = api(&server, "GET", "/api/deployments", None);
    assert_eq!(deployments["TotalResults"], 1, "{deployments}");
    let old_task = deployments["Items"][0]["TaskId"].as_str().unwrap();
    let task = api(&server, "GET", &format!("/api/tasks/{old_task}"), None);
    assert_eq!(task["State"], "Success", "{task}");
    let log = api(&server, "GET", &format!("/api/tasks/{old_task}/raw"), None);
    assert!(
        log.as_str()
            .unwrap_or_default()
            .contains("deployed hello 1.0.0"),
        "{log}"
    );

    // A deployment runs, and reads the sensitive value the earlier Cuttle
    // sealed (the script fails on any other value).
    api(
        &server,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": "Upgrade Web", "ReleaseVersion": "1.0.1"})),
    );
    let d = api(
        &server,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(
            json!({"ProjectName": "Upgrade Web", "ReleaseVersion": "1.0.1",
            "EnvironmentNames": ["Production"]}),
        ),
    );
    let id = d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap();
    let done = wait_task(&server, id);
    let log = api(&server, "GET", &format!("/api/tasks/{id}/raw"), None);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert!(
        log.as_str()
            .unwrap_or_default()
            .contains("deployed hello 1.0.1"),
        "{log}"
    );
    drop(server);

    // A second start migrates nothing.
    let server = TestServer::start(data_dir, database_url, &[]);
    assert_eq!(applied(data_dir, database_url), after);
    drop(server);
}

#[test]
fn an_installation_written_by_an_earlier_cuttle_on_sqlite_upgrades_and_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_tree(&fixture().join("sqlite"), &data);
    upgrade(&data, None);
}

#[test]
fn an_installation_written_by_an_earlier_cuttle_on_postgresql_upgrades_and_deploys() {
    let Some(db) = scratch_postgres("upgrade") else {
        return;
    };
    let dump = fixture().join("postgres.sql");
    let status = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-f"])
        .arg(&dump)
        .arg(&db.url)
        .status()
        .expect("run psql");
    assert!(status.success(), "psql could not load {}", dump.display());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_tree(&fixture().join("postgres"), &data);
    upgrade(&data, Some(&db.url));
}
