//! Backup and restore with the real binary: a SQLite server backed up while
//! deployments run (through its API and from its data directory), restored
//! onto PostgreSQL, compared collection by collection and package byte by
//! package byte, deployed to; and back onto SQLite. Then every way a backup
//! or its target can be wrong, each refused with nothing written.

use crate::support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::agents::{agent_cli, api, request, wait_task};
use support::{noise, scratch_postgres, ServerProcess, BIN, KEY};

const PASSPHRASE: &str = "a long passphrase for the backup";
const SECRET: &str = "hunter2-backed-up";

fn zip_package(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    zip.start_file("data.bin", options).unwrap();
    zip.write_all(bytes).unwrap();
    zip.finish().unwrap();
    path
}

/// `cuttle …` with only the environment given.
fn cuttle(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CUTTLE_SERVER")
        .env_remove("CUTTLE_API_KEY")
        .env_remove("CUTTLE_MASTER_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run cuttle")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "not refused: {out:?}");
    assert!(err.contains(says), "expected '{says}' in: {err}");
}

fn passphrase_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join(format!("pass-{}", text.len()));
    std::fs::write(&p, format!("{text}\n")).unwrap();
    p
}

fn backup_via_server(server: &ServerProcess, to: &Path, pass: Option<&Path>) -> String {
    let mut args = vec!["backup", "--to", to.to_str().unwrap()];
    if let Some(p) = pass {
        args.extend([
            "--include-master-key",
            "--passphrase-file",
            p.to_str().unwrap(),
        ]);
    }
    ok(cuttle(
        &args,
        &[("CUTTLE_SERVER", server.url()), ("CUTTLE_API_KEY", KEY)],
    ))
}

fn restore(from: &Path, data_dir: &Path, db: Option<&str>, pass: Option<&Path>) -> Output {
    let mut args = vec![
        "restore",
        "--from",
        from.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    if let Some(url) = db {
        args.extend(["--database-url", url]);
    }
    if let Some(p) = pass {
        args.extend(["--passphrase-file", p.to_str().unwrap()]);
    }
    cuttle(&args, &[])
}

/// A project deploying one script step to the built-in worker.
fn project(server: &ServerProcess, name: &str, script: &str) -> String {
    let p = api(
        server,
        "POST",
        "/api/Spaces-1/projects",
        Some(
            json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    let id = p["Id"].as_str().unwrap().to_owned();
    let process = json!({"Version": 0, "Steps": [{"Name": "Run", "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]}]});
    api(
        server,
        "PUT",
        &format!("/api/Spaces-1/projects/{id}/deploymentprocesses"),
        Some(process),
    );
    p["VariableSetId"].as_str().unwrap().to_owned()
}

/// Creates a release of `project` and deploys it to Dev; the task id.
fn release_and_deploy(server: &ServerProcess, project: &str, version: &str) -> String {
    api(
        server,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": project, "ReleaseVersion": version})),
    );
    support::agents::deploy_to_dev(server, project, version)
}

/// Every collection the API describes (each GET route without an id), in
/// full, as the server answers it.
fn collections(server: &ServerProcess) -> BTreeMap<String, Value> {
    let doc = api(server, "GET", "/api/openapi.json", None);
    let mut all = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        let params = path.matches('{').count();
        let scoped = path.contains("{space}");
        let json = get["responses"]["200"]["content"]
            .get("application/json")
            .is_some();
        // Server nodes are the running processes (their heartbeats, clocks
        // and tasks), not data a backup carries over.
        let live = path.starts_with("/api/octopusservernodes");
        if !json || params > usize::from(scoped) || path == "/api/backup" || live {
            continue;
        }
        let path = path.replace("{space}", "Spaces-1");
        let (status, mut body) = request(
            server,
            "GET",
            &format!("{path}?skip=0&take=2147483647"),
            None,
        );
        // Where polling agents connect is each process's own port.
        if let Some(o) = body.as_object_mut() {
            o.remove("PollingPort");
        }
        all.insert(path, json!({"Status": status, "Body": body}));
    }
    all
}

fn assert_same_collections(a: &ServerProcess, b: &ServerProcess) -> usize {
    let (left, right) = (collections(a), collections(b));
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        right.keys().collect::<Vec<_>>()
    );
    for (path, l) in &left {
        assert_eq!(l, &right[path], "{path} differs after the restore");
    }
    left.len()
}

fn download(server: &ServerProcess, path: &str) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", server.url()))
            .header("X-Octopus-ApiKey", KEY)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.bytes().await.unwrap().to_vec()
    })
}

/// Every package's bytes, by id.
fn package_bytes(server: &ServerProcess) -> BTreeMap<String, Vec<u8>> {
    let page = api(
        server,
        "GET",
        "/api/Spaces-1/packages?take=2147483647",
        None,
    );
    page["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["Id"].as_str().unwrap().to_owned();
            let bytes = download(server, &format!("/api/Spaces-1/packages/{id}/raw"));
            (id, bytes)
        })
        .collect()
}

fn unfinished_tasks(server: &ServerProcess) -> u64 {
    let page = api(
        server,
        "GET",
        "/api/tasks?states=Queued,Executing&take=100",
        None,
    );
    page["TotalResults"].as_u64().unwrap()
}

#[test]
fn a_backup_taken_during_deployments_restores_on_the_other_database_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let source_dir = tmp.path().join("source");
    let source = ServerProcess::start(&source_dir, None, &[]);
    let pass = passphrase_file(tmp.path(), PASSPHRASE);

    api(
        &source,
        "POST",
        "/api/Spaces-1/environments",
        Some(json!({"Name": "Dev"})),
    );
    let package = zip_package(tmp.path(), "Acme.Tools.1.0.0.zip", &noise(300_000, 11));
    ok(agent_cli(
        &source,
        &["package", "push", package.to_str().unwrap()],
    ));
    let checked = "[ \"$(get_octopusvariable Secret)\" = \"hunter2-backed-up\" ] || exit 3; sleep 2; echo deployed";
    let set = project(&source, "Web", checked);
    api(
        &source,
        "PUT",
        &format!("/api/Spaces-1/variables/{set}"),
        Some(json!({"Version": 0, "Variables": [
            {"Name": "Secret", "Value": SECRET, "Type": "Sensitive"},
            {"Name": "Greeting", "Value": "hello"}]})),
    );
    for name in ["Api", "Worker"] {
        project(&source, name, "sleep 2; echo deployed");
    }
    let tasks: Vec<String> = ["Web", "Api", "Worker"]
        .iter()
        .map(|p| release_and_deploy(&source, p, "1.0.0"))
        .collect();

    // Backed up while the deployments run, both ways.
    let mid_api = tmp.path().join("mid-api.tar.gz");
    let mid_dir = tmp.path().join("mid-dir.tar.gz");
    assert!(unfinished_tasks(&source) > 0);
    let said = backup_via_server(&source, &mid_api, Some(&pass));
    assert!(said.contains("with the master key sealed"), "{said}");
    ok(cuttle(
        &[
            "backup",
            "--to",
            mid_dir.to_str().unwrap(),
            "--data-dir",
            source_dir.to_str().unwrap(),
        ],
        &[],
    ));
    assert!(
        unfinished_tasks(&source) > 0,
        "the deployments ended before the backups did"
    );
    for t in &tasks {
        let done = wait_task(&source, t, Duration::from_secs(60));
        assert_eq!(done["State"], "Success", "{done}");
    }

    // The mid-run backup without its key restores with the original key,
    // and holds the deployments as they stood, each with its task.
    let key = std::fs::read_to_string(source_dir.join("master.key")).unwrap();
    let mid_restored = tmp.path().join("mid-restored");
    let out = cuttle(
        &[
            "restore",
            "--from",
            mid_dir.to_str().unwrap(),
            "--data-dir",
            mid_restored.to_str().unwrap(),
        ],
        &[("CUTTLE_MASTER_KEY", key.trim())],
    );
    let said = ok(out);
    assert!(said.starts_with("Restored "), "{said}");
    std::fs::copy(
        source_dir.join("master.key"),
        mid_restored.join("master.key"),
    )
    .unwrap();
    {
        let mid = ServerProcess::start(&mid_restored, None, &["--max-concurrent-tasks", "0"]);
        let deployments = api(&mid, "GET", "/api/Spaces-1/deployments?take=100", None);
        assert_eq!(deployments["TotalResults"], 3, "{deployments}");
        for d in deployments["Items"].as_array().unwrap() {
            let task = api(
                &mid,
                "GET",
                &format!("/api/tasks/{}", d["TaskId"].as_str().unwrap()),
                None,
            );
            assert_eq!(task["Id"], d["TaskId"]);
        }
        assert_eq!(package_bytes(&mid), package_bytes(&source));
    }

    // Quiet now: a backup through the API, with the key, onto PostgreSQL.
    let quiet = tmp.path().join("quiet.tar.gz");
    backup_via_server(&source, &quiet, Some(&pass));
    let pg = scratch_postgres("backup_restore");
    let pg_url = pg.as_ref().map(|p| p.url.clone());
    let restored_dir = tmp.path().join("restored");
    let said = ok(restore(
        &quiet,
        &restored_dir,
        pg_url.as_deref(),
        Some(&pass),
    ));
    assert!(said.contains("master key was restored"), "{said}");
    let restored = ServerProcess::start(&restored_dir, pg_url.as_deref(), &[]);
    let compared = assert_same_collections(&source, &restored);
    assert!(compared > 20, "only {compared} collections compared");
    let bytes = package_bytes(&restored);
    assert_eq!(bytes.len(), 1);
    assert_eq!(bytes, package_bytes(&source));
    eprintln!(
        "restored onto {}: {compared} collections and {} package bytes alike",
        if pg_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        bytes.values().map(Vec::len).sum::<usize>()
    );

    // The restored installation deploys, its sensitive value readable.
    let task = release_and_deploy(&restored, "Web", "1.0.1");
    let done = wait_task(&restored, &task, Duration::from_secs(60));
    assert_eq!(done["State"], "Success", "{done}");

    // And back: from its data directory (and database) onto SQLite.
    let back = tmp.path().join("back.tar.gz");
    let mut args = vec![
        "backup",
        "--to",
        back.to_str().unwrap(),
        "--data-dir",
        restored_dir.to_str().unwrap(),
        "--include-master-key",
        "--passphrase-file",
        pass.to_str().unwrap(),
    ];
    if let Some(url) = &pg_url {
        args.extend(["--database-url", url.as_str()]);
    }
    ok(cuttle(&args, &[]));
    // And through its API, the server reading its own database.
    let back_api = tmp.path().join("back-api.tar.gz");
    backup_via_server(&restored, &back_api, None);
    let back_dir = tmp.path().join("back");
    ok(restore(&back, &back_dir, None, Some(&pass)));
    let again = ServerProcess::start(&back_dir, None, &[]);
    assert_same_collections(&restored, &again);
    assert_eq!(package_bytes(&again), package_bytes(&source));
}

/// The archive with its manifest changed by `edit` and its digests made
/// to match again, as a newer Cuttle would write it.
fn rewrite_manifest(from: &Path, to: &Path, edit: impl Fn(&mut Value)) {
    rewrite(from, to, |_, _| {}, edit);
}

/// The archive with entries changed by `entry` (path, bytes) and the
/// manifest by `manifest`, every digest made to match again.
fn rewrite(
    from: &Path,
    to: &Path,
    entry: impl Fn(&str, &mut Vec<u8>),
    manifest: impl Fn(&mut Value),
) {
    use sha2::Digest;
    let file = std::fs::File::open(from).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut entries = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        entry(&path, &mut bytes);
        entries.push((path, bytes));
    }
    let sums: BTreeMap<String, (usize, String)> = entries
        .iter()
        .map(|(p, b)| (p.clone(), (b.len(), hex::encode(sha2::Sha256::digest(b)))))
        .collect();
    let mut json = Vec::new();
    for (path, bytes) in &mut entries {
        if path == "manifest.json" {
            let mut m: Value = serde_json::from_slice(bytes).unwrap();
            let fix = |e: &mut Value| {
                let (size, sha) = &sums[e["path"].as_str().unwrap()];
                e["size"] = json!(size);
                e["sha256"] = json!(sha);
            };
            for t in m["tables"].as_array_mut().unwrap() {
                fix(&mut t["entry"]);
            }
            for f in m["files"].as_array_mut().unwrap() {
                fix(f);
            }
            manifest(&mut m);
            *bytes = serde_json::to_vec(&m).unwrap();
            json = bytes.clone();
        }
    }
    let digest = hex::encode(sha2::Sha256::digest(&json));
    let out = std::fs::File::create(to).unwrap();
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in &entries {
        let bytes = if path == "manifest.sha256" {
            digest.as_bytes()
        } else {
            bytes.as_slice()
        };
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        tar.append_data(&mut h, path, bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn damaged_backups_and_unfit_targets_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let source_dir = tmp.path().join("source");
    let source = ServerProcess::start(&source_dir, None, &[]);
    let pass = passphrase_file(tmp.path(), PASSPHRASE);
    let package = zip_package(tmp.path(), "Acme.Tools.1.0.0.zip", &noise(50_000, 3));
    ok(agent_cli(
        &source,
        &["package", "push", package.to_str().unwrap()],
    ));
    let good = tmp.path().join("good.tar.gz");
    backup_via_server(&source, &good, Some(&pass));
    let bytes = std::fs::read(&good).unwrap();
    let target = tmp.path().join("target");
    let nothing_written = |target: &Path| {
        assert!(!target.exists(), "{} was written", target.display());
    };

    // Cut short anywhere, or one byte changed anywhere.
    for cut in [bytes.len() / 3, bytes.len() - 9, bytes.len() - 1] {
        let f = tmp.path().join(format!("cut-{cut}"));
        std::fs::write(&f, &bytes[..cut]).unwrap();
        refused(
            restore(&f, &target, None, Some(&pass)),
            "damaged or incomplete",
        );
        nothing_written(&target);
    }
    for at in [20, bytes.len() / 2, bytes.len() - 30, bytes.len() - 5] {
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x01;
        let f = tmp.path().join(format!("tampered-{at}"));
        std::fs::write(&f, &tampered).unwrap();
        let out = restore(&f, &target, None, Some(&pass));
        assert!(!out.status.success(), "a byte changed at {at} was restored");
        nothing_written(&target);
    }

    // The wrong passphrase, or none for a backup that carries the key.
    let wrong = passphrase_file(tmp.path(), "not the right passphrase at all");
    refused(
        restore(&good, &target, None, Some(&wrong)),
        "passphrase does not open",
    );
    refused(restore(&good, &target, None, None), "--passphrase-file");
    nothing_written(&target);

    // A backup without the key, and another key than the installation's.
    let keyless = tmp.path().join("keyless.tar.gz");
    backup_via_server(&source, &keyless, None);
    let (_, other) = cuttle_store::MasterKey::generate();
    let out = cuttle(
        &[
            "restore",
            "--from",
            keyless.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ],
        &[("CUTTLE_MASTER_KEY", &other)],
    );
    refused(out, "master key check");
    nothing_written(&target);

    // From a newer Cuttle.
    let newer_version = cuttle_store::backup::known_schema_version() + 1;
    let newer = tmp.path().join("newer.tar.gz");
    rewrite_manifest(&good, &newer, |m| {
        m["schema_version"] = json!(newer_version)
    });
    let out = restore(&newer, &target, None, Some(&pass));
    refused(out, &format!("schema version is {newer_version}"));
    nothing_written(&target);
    // (The rewriting itself keeps a backup whole.)
    let same = tmp.path().join("same.tar.gz");
    rewrite_manifest(&good, &same, |_| {});
    ok(restore(&same, &tmp.path().join("same"), None, Some(&pass)));

    // Whole, but with a row that does not fit its column: found only while
    // the rows go in, and then undone, schema and files included.
    let misfit = tmp.path().join("misfit.tar.gz");
    rewrite(
        &good,
        &misfit,
        |path, bytes| {
            if path == "tables/id_sequences.jsonl" {
                let text = String::from_utf8(bytes.clone()).unwrap();
                let mut row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
                row[1] = json!("not a number");
                *bytes = format!("{row}\n{}", text.split_once('\n').unwrap().1).into_bytes();
            }
        },
        |_| {},
    );
    let pg = scratch_postgres("backup_restore_misfit");
    let url = pg.as_ref().map(|p| p.url.clone());
    refused(
        restore(&misfit, &target, url.as_deref(), Some(&pass)),
        "is not Integer",
    );
    nothing_written(&target);
    if let Some(url) = &url {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let empty = rt.block_on(cuttle_store::backup::database_is_empty(url));
        assert!(empty.unwrap(), "the failed restore left tables behind");
    }

    // Into a directory that is not empty.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    refused(restore(&good, &target, None, Some(&pass)), "is not empty");
    let left: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["keep.txt"]);

    // Into a database that is not empty.
    if let Some(pg) = scratch_postgres("backup_restore_refusals") {
        ok(restore(
            &good,
            &tmp.path().join("first"),
            Some(&pg.url),
            Some(&pass),
        ));
        let second = tmp.path().join("second");
        refused(
            restore(&good, &second, Some(&pg.url), Some(&pass)),
            "already holds tables",
        );
        nothing_written(&second);
    }
}
