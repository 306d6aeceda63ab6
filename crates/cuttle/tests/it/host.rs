//! `cuttle host` as operators run it: instances created through the control
//! plane, each a whole installation reached by its host name and isolated
//! from the others; bad names and tokens refused; a creation killed halfway
//! never served; suspension, resumption and deletion. On SQLite, and on
//! PostgreSQL when CUTTLE_TEST_DATABASE_URL is set.

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use support::host::{on_both_hosts, sign_in, TestHost, DOMAIN, TOKEN};

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Environment Dev and a project whose one step runs `script`, released
/// and deployed; returns the finished task.
fn deploy(host: &TestHost, name: &str, key: &str, project: &str, script: &str) -> Value {
    host.api(
        name,
        key,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    let p = host.api(
        name,
        key,
        "POST",
        "/api/projects",
        Some(json!({"Name": project, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})),
    );
    let process = json!({"Version": 0, "Steps": [{"Name": "Run", "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]}]});
    host.api(
        name,
        key,
        "PUT",
        &format!("/api/projects/{}/deploymentprocesses", str_of(&p, "Id")),
        Some(process),
    );
    host.api(
        name,
        key,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": project, "ReleaseVersion": "1.0.0"})),
    );
    let d = host.api(
        name,
        key,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(
            json!({"ProjectName": project, "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]}),
        ),
    );
    let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .expect("a deployment task")
        .to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let t = host.api(name, key, "GET", &format!("/api/tasks/{task}"), None);
        if t["IsCompleted"] == true {
            return t;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name}: task {task} did not finish");
}

fn project_names(host: &TestHost, name: &str, key: &str) -> Vec<String> {
    let list = host.api(name, key, "GET", "/api/projects/all", None);
    list.as_array()
        .expect("a list of projects")
        .iter()
        .map(|p| str_of(p, "Name").to_owned())
        .collect()
}

#[test]
fn two_instances_each_with_its_own_administrator_refuse_each_others_credentials() {
    on_both_hosts("host_isolation", |dir, db| {
        let host = TestHost::start(dir, db);
        let a = host.create("alpha");
        let b = host.create("beta");
        assert_eq!(
            str_of(&a, "Url"),
            format!(
                "http://alpha.{DOMAIN}:{}",
                host.url.rsplit(':').next().unwrap()
            )
        );
        assert_eq!(str_of(&a, "AdminUsername"), "admin");
        let (key_a, key_b) = (str_of(&a, "ApiKey"), str_of(&b, "ApiKey"));
        assert_ne!(key_a, key_b);
        assert_ne!(str_of(&a, "AdminPassword"), str_of(&b, "AdminPassword"));

        // A deployment in each, on its own runner.
        let ta = deploy(&host, "alpha", key_a, "Web", "echo alpha deployed");
        let tb = deploy(&host, "beta", key_b, "Api", "echo beta deployed");
        assert_eq!(ta["State"], "Success", "{ta}");
        assert_eq!(tb["State"], "Success", "{tb}");
        assert_eq!(project_names(&host, "alpha", key_a), ["Web"]);
        assert_eq!(project_names(&host, "beta", key_b), ["Api"]);

        // Each instance is its own installation: its own identity.
        let id_a = host.api("alpha", key_a, "GET", "/api", None);
        let id_b = host.api("beta", key_b, "GET", "/api", None);
        assert_ne!(id_a["InstallationId"], id_b["InstallationId"]);

        // A's API key against B, by B's host name: refused; B unchanged.
        let (status, _, _) = host.to(
            "beta",
            "GET",
            "/api/projects/all",
            &[("X-Octopus-ApiKey", key_a)],
            None,
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = host.to(
            "beta",
            "POST",
            "/api/projects",
            &[("X-Octopus-ApiKey", key_a)],
            Some(json!({"Name": "Intruder", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})),
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A's session cookie against B: refused too.
        let cookie_a = sign_in(&host, "alpha", str_of(&a, "AdminPassword"));
        let (status, _, me) = host.to(
            "alpha",
            "GET",
            "/api/users/me",
            &[("Cookie", &cookie_a)],
            None,
        );
        assert_eq!(
            status,
            StatusCode::OK,
            "the cookie works on its own instance: {me}"
        );
        let (status, _, _) = host.to(
            "beta",
            "GET",
            "/api/users/me",
            &[("Cookie", &cookie_a)],
            None,
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = host.to(
            "beta",
            "GET",
            "/api/projects/all",
            &[("Cookie", &cookie_a)],
            None,
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(project_names(&host, "beta", key_b), ["Api"]);

        // Each instance's files are in a directory of its own.
        for name in ["alpha", "beta"] {
            let inst = dir.join("instances").join(name);
            assert!(
                inst.join("master.key").is_file(),
                "{name} has its own master key"
            );
            assert_eq!(inst.join("cuttle.db").is_file(), db.is_none());
        }
        let key_of =
            |n: &str| std::fs::read(dir.join("instances").join(n).join("master.key")).unwrap();
        assert_ne!(key_of("alpha"), key_of("beta"));

        for name in ["alpha", "beta"] {
            let (status, _) = host.control("DELETE", &format!("/instances/{name}"), None);
            assert_eq!(status, StatusCode::OK);
        }
    });
}

#[test]
fn unknown_hosts_bad_names_and_bad_tokens_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(dir.path(), None);

    // A host name that names no instance, or none of this domain.
    for authority in [
        format!("nobody.{DOMAIN}"),
        "elsewhere.example".to_owned(),
        DOMAIN.to_owned(),
    ] {
        let (status, _, text) = support::host::call(
            "GET",
            &format!("{}/api", host.url),
            &[("Host", &authority)],
            None,
        )
        .expect("the host answers");
        assert_eq!(status, StatusCode::NOT_FOUND, "{authority}: {text}");
        assert!(text.contains("instance"), "{authority}: {text}");
    }

    // The control plane without its token, or with another.
    for token in [None, Some("wrong-token-wrong-token-wrong"), Some("")] {
        let (status, _) = host.control_as(token, "GET", "/instances", None);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        let (status, _) =
            host.control_as(token, "POST", "/instances", Some(json!({"Name": "sneaky"})));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
    }

    // Names that are no DNS label, or reserved; limits out of range; bodies
    // that are not what the control plane takes.
    let long = "a".repeat(41);
    let bad = [
        json!({"Name": "Acme"}),
        json!({"Name": "acme_prod"}),
        json!({"Name": "acme.prod"}),
        json!({"Name": "-acme"}),
        json!({"Name": "acme-"}),
        json!({"Name": ""}),
        json!({"Name": long}),
        json!({"Name": "www"}),
        json!({"Name": "api"}),
        json!({"Name": "admin"}),
        json!({"Name": "control"}),
        json!({"Name": "fine", "TaskCap": 0}),
        json!({"Name": "fine", "StorageQuotaMiB": -1}),
        json!({"Name": "fine", "TaskCap": "many"}),
        json!({"Name": "fine", "Colour": "blue"}),
        json!({"TaskCap": 2}),
        json!(["fine"]),
    ];
    for body in bad {
        let (status, answer) = host.control("POST", "/instances", Some(body.clone()));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(
            answer["ErrorMessage"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    let (_, list) = host.control("GET", "/instances", None);
    assert_eq!(list["Items"], json!([]), "nothing was created");
    let instances = dir.path().join("instances");
    let made = std::fs::read_dir(&instances)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(made, 0, "no instance directory was made");

    // The same name twice at once: exactly one is created.
    let control = host.control.clone();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let control = control.clone();
            std::thread::spawn(move || {
                support::host::call(
                    "POST",
                    &format!("{control}/instances"),
                    &[("Authorization", &format!("Bearer {TOKEN}"))],
                    Some(json!({"Name": "twin"})),
                )
                .expect("the control plane answers")
                .0
            })
        })
        .collect();
    let mut statuses: Vec<u16> = racers
        .into_iter()
        .map(|t| t.join().unwrap().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    // And once more after it is made.
    let (status, answer) = host.control("POST", "/instances", Some(json!({"Name": "twin"})));
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (_, list) = host.control("GET", "/instances", None);
    assert_eq!(list["Items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["Items"][0]["State"], "Awake");

    // Operations on an instance that does not exist.
    for (method, path) in [
        ("GET", "/instances/ghost"),
        ("POST", "/instances/ghost/suspend"),
        ("POST", "/instances/ghost/resume"),
        ("DELETE", "/instances/ghost"),
    ] {
        let (status, _) = host.control(method, path, None);
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (status, _) = host.control("PATCH", "/instances/twin", Some(json!({"TaskCap": 0})));
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn a_creation_killed_halfway_is_removed_at_restart_and_never_served() {
    on_both_hosts("host_kill_creation", |dir, db| {
        let mut host = TestHost::start_with_env(
            dir,
            db,
            &[("CUTTLE_HOST_TEST_PAUSE_AFTER_RECORD_MS", "60000")],
        );
        let control = host.control.clone();
        let creating = std::thread::spawn(move || {
            support::host::call(
                "POST",
                &format!("{control}/instances"),
                &[("Authorization", &format!("Bearer {TOKEN}"))],
                Some(json!({"Name": "halfmade"})),
            )
        });
        // Killed once the creation is recorded.
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, list) = host.control("GET", "/instances", None);
            if list["Items"][0]["State"] == "Creating" {
                break;
            }
            assert!(
                Instant::now() < until,
                "the creation was never recorded: {list}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, _, _) = host.to("halfmade", "GET", "/api", &[], None);
        assert_ne!(status, StatusCode::OK, "a half-made instance is not served");
        host.kill();
        let answer = creating.join().unwrap();
        assert!(
            answer.is_none_or(|(s, _, _)| s != StatusCode::CREATED),
            "the killed creation did not answer 201"
        );

        let host = TestHost::start(dir, db);
        let (status, _) = host.control("GET", "/instances/halfmade", None);
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = host.to("halfmade", "GET", "/api", &[], None);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!dir.join("instances/halfmade").exists());
        // The name is free again.
        let made = host.create("halfmade");
        host.api(
            "halfmade",
            str_of(&made, "ApiKey"),
            "GET",
            "/api/projects/all",
            None,
        );
        let (status, _) = host.control("DELETE", "/instances/halfmade", None);
        assert_eq!(status, StatusCode::OK);
    });
}

#[test]
fn suspended_instances_answer_503_resumed_ones_work_deleted_ones_are_archived() {
    on_both_hosts("host_lifecycle", |dir, db| {
        let host = TestHost::start(dir, db);
        let made = host.create("acme");
        let other = host.create("other");
        let key = str_of(&made, "ApiKey").to_owned();
        let other_key = str_of(&other, "ApiKey");
        host.api(
            "acme",
            &key,
            "POST",
            "/api/environments",
            Some(json!({"Name": "Kept"})),
        );

        let (status, view) = host.control("POST", "/instances/acme/suspend", None);
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["State"], "Suspended");
        let (status, _, text) = host.to(
            "acme",
            "GET",
            "/api/environments/all",
            &[("X-Octopus-ApiKey", &key)],
            None,
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("suspended"), "{text}");
        // The other instance is not touched.
        host.api("other", other_key, "GET", "/api", None);

        // Suspension lasts across a restart of the host.
        drop(host);
        let host = TestHost::start(dir, db);
        let (status, _, _) = host.to("acme", "GET", "/api", &[], None);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, view) = host.control("POST", "/instances/acme/resume", None);
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["State"], "Awake");
        let envs = host.api("acme", &key, "GET", "/api/environments/all", None);
        assert_eq!(envs[0]["Name"], "Kept", "its data was kept: {envs}");

        let (status, view) = host.control("GET", "/instances/acme", None);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(view["TaskCap"], 2);
        assert_eq!(view["StorageQuotaMiB"], 100);
        assert!(view["StorageUsedBytes"].as_u64().unwrap() > 0, "{view}");
        assert!(view["LastActive"].is_string(), "{view}");

        let (status, deleted) = host.control("DELETE", "/instances/acme", None);
        assert_eq!(status, StatusCode::OK, "{deleted}");
        let archive = std::path::PathBuf::from(str_of(&deleted, "Archive"));
        assert!(
            archive.starts_with(dir.join("archive")),
            "{}",
            archive.display()
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "an archive holds a master key: the host's alone"
        );
        let listing = archive_listing(&archive);
        assert!(listing.contains("acme/master.key"), "{listing}");
        let database = if db.is_some() {
            "acme/database.cuttle-backup"
        } else {
            "acme/cuttle.db"
        };
        assert!(listing.contains(database), "{listing}");
        assert!(!dir.join("instances/acme").exists());
        let (status, _, _) = host.to("acme", "GET", "/api", &[], None);
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = host.control("GET", "/instances/acme", None);
        assert_eq!(status, StatusCode::NOT_FOUND);

        // The name can be taken again: a new, empty installation, whose
        // administrator is not the old one.
        let again = host.create("acme");
        let (status, _, _) = host.to(
            "acme",
            "GET",
            "/api/environments/all",
            &[("X-Octopus-ApiKey", &key)],
            None,
        );
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the old key is gone with its instance"
        );
        let envs = host.api(
            "acme",
            str_of(&again, "ApiKey"),
            "GET",
            "/api/environments/all",
            None,
        );
        assert_eq!(envs, json!([]));
        for name in ["acme", "other"] {
            let (status, answer) = host.control("DELETE", &format!("/instances/{name}"), None);
            assert_eq!(status, StatusCode::OK, "{name}: {answer}");
        }
    });
}

#[test]
fn the_task_cap_is_the_instance_runners_and_its_administrator_cannot_raise_it() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(dir.path(), None);
    let made = host.create("capped");
    let key = str_of(&made, "ApiKey");
    let nodes = host.api("capped", key, "GET", "/api/octopusservernodes", None);
    let node = &nodes["Items"][0];
    assert_eq!(node["MaxConcurrentTasks"], 2, "{nodes}");
    let id = str_of(node, "Id");

    let (status, _, text) = host.to(
        "capped",
        "PUT",
        &format!("/api/octopusservernodes/{id}"),
        &[("X-Octopus-ApiKey", key)],
        Some(json!({"MaxConcurrentTasks": 50})),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let nodes = host.api("capped", key, "GET", "/api/octopusservernodes", None);
    assert_eq!(nodes["Items"][0]["MaxConcurrentTasks"], 2);

    let (status, view) = host.control("PATCH", "/instances/capped", Some(json!({"TaskCap": 3})));
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["TaskCap"], 3);
    let nodes = host.api("capped", key, "GET", "/api/octopusservernodes", None);
    assert_eq!(nodes["Items"][0]["MaxConcurrentTasks"], 3);
    // Lowering within the cap is the administrator's to do.
    host.api(
        "capped",
        key,
        "PUT",
        &format!("/api/octopusservernodes/{id}"),
        Some(json!({"MaxConcurrentTasks": 1})),
    );
}

/// Each instance's metrics name it, so one Prometheus scraping many
/// instances keeps them apart; an instance's key reads only its own.
#[test]
fn each_instances_metrics_carry_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(dir.path(), None);
    let made = host.create("metered");
    let other = host.create("unmetered");
    let metrics = |name: &str, key: &str| {
        host.to(name, "GET", "/metrics", &[("X-Octopus-ApiKey", key)], None)
    };
    let (status, _, text) = metrics("metered", str_of(&made, "ApiKey"));
    assert_eq!(status, StatusCode::OK, "{text}");
    let build = text
        .lines()
        .find(|l| l.starts_with("cuttle_build_info{"))
        .expect("build info");
    assert!(build.contains("cuttle_instance=\"metered\""), "{build}");
    assert!(!text.contains("cuttle_instance=\"unmetered\""));
    let (status, _, _) = metrics("metered", str_of(&other, "ApiKey"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn the_instance_commands_drive_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(dir.path(), None);
    let cli = |args: &[&str]| {
        let out = Command::new(support::BIN)
            .args(["host", "instance"])
            .args(args)
            .args(["--control-url", &host.control])
            .env("CUTTLE_HOST_CONTROL_TOKEN", TOKEN)
            .output()
            .expect("run cuttle host instance");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&["create", "shell", "--task-cap", "4"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("http://shell.{DOMAIN}")), "{out}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("API key:"))
        .map(str::trim)
        .expect("an API key printed")
        .to_owned();
    host.api("shell", &key, "GET", "/api", None);

    let (ok, out) = cli(&["list"]);
    assert!(ok, "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("shell"))
        .expect("a row for the instance");
    assert!(row.contains("Awake") && row.contains(" 4 "), "{row}");

    let (ok, out) = cli(&["suspend", "shell"]);
    assert!(ok, "{out}");
    let (status, _, _) = host.to("shell", "GET", "/api", &[], None);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (ok, out) = cli(&["resume", "shell"]);
    assert!(ok, "{out}");
    host.api("shell", &key, "GET", "/api", None);

    // Refusals come back as a failed command with the control plane's message.
    let (ok, out) = cli(&["create", "www"]);
    assert!(!ok && out.contains("reserved"), "{out}");
    let out = Command::new(support::BIN)
        .args(["host", "instance", "list", "--control-url", &host.control])
        .env("CUTTLE_HOST_CONTROL_TOKEN", "wrong-token-wrong-token-wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    let (ok, out) = cli(&["delete", "shell"]);
    assert!(ok && out.contains("archive"), "{out}");
    let (status, _, _) = host.to("shell", "GET", "/api", &[], None);
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A .zip package of `bytes` incompressible bytes, pushed to instance
/// `name`; the status and the answer.
fn push_package(host: &TestHost, name: &str, key: &str, file: &str, bytes: usize) -> (u16, Value) {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("data.bin", stored).unwrap();
    zip.write_all(&support::noise(bytes, bytes as u64 + 7))
        .unwrap();
    let body = zip.finish().unwrap().into_inner();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(body).file_name(file.to_owned()),
        );
        let resp = reqwest::Client::new()
            .post(format!("{}/api/Spaces-1/packages/raw", host.url))
            .header("Host", format!("{name}.{DOMAIN}"))
            .header("X-Octopus-ApiKey", key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn a_push_past_the_storage_quota_is_refused_and_keeps_what_was_there() {
    on_both_hosts("host_quota", |dir, db| {
        let host = TestHost::start(dir, db);
        let made = host.create("quota");
        let key = str_of(&made, "ApiKey");
        let (_, view) = host.control("GET", "/instances/quota", None);
        assert!(view["StorageUsedBytes"].as_u64().unwrap() > 0, "{view}");
        // The data directory as it is now, plus 3 MiB.
        let used_mib = dir_size(&dir.join("instances/quota")).div_ceil(1024 * 1024);
        let quota = i64::try_from(used_mib).unwrap() + 3;
        let (status, view) = host.control(
            "PATCH",
            "/instances/quota",
            Some(json!({"StorageQuotaMiB": quota})),
        );
        assert_eq!(status, StatusCode::OK, "{view}");

        const PACKAGE: usize = 5 * 1024 * 1024 / 2;
        let (status, first) = push_package(&host, "quota", key, "Acme.Web.1.0.0.zip", PACKAGE);
        assert_eq!(status, 201, "{first}");
        let (status, refused) = push_package(&host, "quota", key, "Acme.Web.2.0.0.zip", PACKAGE);
        assert_eq!(status, 409, "{refused}");
        let message = str_of(&refused, "ErrorMessage");
        assert!(message.contains("storage quota"), "{message}");
        let listed = host.api("quota", key, "GET", "/api/Spaces-1/packages", None);
        let versions: Vec<&str> = listed["Items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| str_of(p, "Version"))
            .collect();
        assert_eq!(
            versions,
            ["1.0.0"],
            "the first package is kept, the second not stored"
        );

        // A larger quota lets the same push in.
        let (status, _) = host.control(
            "PATCH",
            "/instances/quota",
            Some(json!({"StorageQuotaMiB": quota + 10})),
        );
        assert_eq!(status, StatusCode::OK);
        let (status, second) = push_package(&host, "quota", key, "Acme.Web.2.0.0.zip", PACKAGE);
        assert_eq!(status, 201, "{second}");
        let (status, _) = host.control("DELETE", "/instances/quota", None);
        assert_eq!(status, StatusCode::OK);
    });
}

/// The paths in a `.tar.gz`, one a line.
fn archive_listing(path: &std::path::Path) -> String {
    let file = std::fs::File::open(path).expect("open the archive");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.entries()
        .expect("read the archive")
        .map(|e| {
            e.expect("an archive entry")
                .path()
                .unwrap()
                .display()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_size(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn an_instance_whose_database_is_corrupt_reports_it_and_the_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(dir.path(), None);
    host.create("broken");
    let fine = host.create("fine");
    drop(host);
    let db = dir.path().join("instances/broken/cuttle.db");
    std::fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
    for side in ["cuttle.db-wal", "cuttle.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join("instances/broken").join(side));
    }

    let host = TestHost::start(dir.path(), None);
    let (status, _, text) = host.to("broken", "GET", "/api", &[], None);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("could not be started"), "{text}");
    let (_, view) = host.control("GET", "/instances/broken", None);
    assert_eq!(view["State"], "Failed", "{view}");
    assert!(
        view["Error"].as_str().is_some_and(|e| !e.is_empty()),
        "{view}"
    );
    host.api(
        "fine",
        str_of(&fine, "ApiKey"),
        "GET",
        "/api/projects/all",
        None,
    );
}
