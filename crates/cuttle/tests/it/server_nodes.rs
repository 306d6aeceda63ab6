//! Several `cuttle server` processes on one PostgreSQL database, each a
//! node with its own --node-name and data directory: the nodes API, the
//! queue shared without a task ever running twice, draining, live task
//! caps, the leader handing over when it is killed, and the refusals. On
//! SQLite, the single node is the leader.

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::observe::{api, deploy, get, try_call, wait_task};
use support::{on_both, scratch_postgres, TestServer, KEY};

/// Generous: a debug build on a busy machine. Nothing is timed against it.
const PATIENCE: Duration = Duration::from_secs(60);

fn call(url: &str, method: &str, path: &str, body: Option<&str>) -> (StatusCode, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .header("X-Octopus-ApiKey", KEY);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

fn nodes(url: &str) -> Vec<Value> {
    api(url, "GET", "/api/octopusservernodes", None)["Items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn node<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|n| n["Name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {all:#?}"))
}

fn ping(url: &str) -> Value {
    let (status, _, text) = try_call(
        "GET",
        &format!("{url}/api/octopusservernodes/ping"),
        &[],
        None,
    )
    .expect("the server answers");
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Polls until `done` holds; panics with `what` after [`PATIENCE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < until, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node of the cluster on `database`, with its own data directory; the
/// master key is the first node's, as every node of an installation needs.
fn start_node(dir: &Path, database: &str, name: &str, key_from: Option<&Path>) -> TestServer {
    std::fs::create_dir_all(dir).unwrap();
    if let Some(first) = key_from {
        std::fs::copy(first.join("master.key"), dir.join("master.key")).unwrap();
    }
    TestServer::start(
        dir,
        Some(database),
        &["--node-name", name, "--max-concurrent-tasks", "4"],
    )
}

#[test]
fn a_single_node_leads_and_refuses_bad_changes() {
    on_both("nodes_single", |dir, database| {
        let backend = if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        let server = TestServer::start(
            &dir,
            database.as_deref(),
            &["--node-name", "solo", "--max-concurrent-tasks", "5"],
        );
        let url = server.url();
        let all = nodes(url);
        assert_eq!(all.len(), 1, "{backend}: {all:#?}");
        let solo = &all[0];
        assert_eq!(solo["Id"], "OctopusServerNodes-solo", "{backend}");
        assert_eq!(solo["Rank"], "Leader", "{backend}");
        assert_eq!(solo["IsOffline"], false, "{backend}");
        assert_eq!(solo["MaxConcurrentTasks"], 5, "{backend}");
        assert_eq!(solo["IsInMaintenanceMode"], false, "{backend}");
        assert_eq!(solo["RunningTaskCount"], 0, "{backend}");
        assert!(solo["LastSeen"].is_string(), "{backend}: {solo}");
        assert_eq!(ping(url)["Name"], "solo", "{backend}");
        assert_eq!(ping(url)["IsLeader"], true, "{backend}");

        // On PostgreSQL, where several nodes may serve, every series names
        // the node that counted it; a SQLite installation is one node.
        let (status, text) = get(&format!("{url}/metrics"), &[("X-Octopus-ApiKey", KEY)]);
        assert_eq!(status, StatusCode::OK, "{backend}: {text}");
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(samples.len() > 20, "{backend}: {text}");
        let labelled = samples
            .iter()
            .filter(|l| l.contains("node=\"solo\""))
            .count();
        match database {
            Some(_) => assert_eq!(labelled, samples.len(), "{backend}: {text}"),
            None => assert_eq!(labelled, 0, "{backend}: {text}"),
        }

        let path = "/api/octopusservernodes/OctopusServerNodes-solo";
        for (case, body) in [
            ("not JSON", "{MaxConcurrentTasks: 2"),
            ("a cap of zero", r#"{"MaxConcurrentTasks": 0}"#),
            ("a negative cap", r#"{"MaxConcurrentTasks": -1}"#),
            ("a cap over the most", r#"{"MaxConcurrentTasks": 1001}"#),
            ("a cap that is text", r#"{"MaxConcurrentTasks": "many"}"#),
            ("a fractional cap", r#"{"MaxConcurrentTasks": 2.5}"#),
            (
                "maintenance mode as text",
                r#"{"IsInMaintenanceMode": "yes"}"#,
            ),
            (
                "another name, with a good drain",
                r#"{"Name": "other", "IsInMaintenanceMode": true}"#,
            ),
            ("an array", "[]"),
        ] {
            let (status, answer) = call(url, "PUT", path, Some(body));
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{backend}: {case}: {answer}"
            );
            let now = api(url, "GET", path, None);
            assert_eq!(
                (
                    &now["MaxConcurrentTasks"],
                    &now["IsInMaintenanceMode"],
                    &now["Name"]
                ),
                (&json!(5), &json!(false), &json!("solo")),
                "{backend}: {case} changed the node"
            );
            assert_eq!(ping(url)["MaxConcurrentTasks"], 5, "{backend}: {case}");
        }
        let (status, _) = call(
            url,
            "PUT",
            "/api/octopusservernodes/OctopusServerNodes-nobody",
            Some(r#"{"MaxConcurrentTasks": 2}"#),
        );
        assert_eq!(status, StatusCode::NOT_FOUND, "{backend}");

        // The whole resource sent back, as Octopus clients do, with a new cap.
        let mut whole = api(url, "GET", path, None);
        whole["MaxConcurrentTasks"] = json!(3);
        let changed = api(url, "PUT", path, Some(whole));
        assert_eq!(changed["MaxConcurrentTasks"], 3, "{backend}");
        assert_eq!(ping(url)["MaxConcurrentTasks"], 3, "{backend}");

        // The node that answers is online: it cannot be deleted.
        let (status, answer) = call(url, "DELETE", path, None);
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {answer}");
        assert_eq!(nodes(url).len(), 1, "{backend}");
    });
}

#[test]
fn three_nodes_share_the_queue_drain_and_hand_the_lead_over() {
    let Some(db) = scratch_postgres("nodes_three") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| root.path().join(n))
        .collect();
    let mut servers = vec![start_node(&dirs[0], &db.url, "n1", None)];
    for (i, name) in [(1, "n2"), (2, "n3")] {
        servers.push(start_node(&dirs[i], &db.url, name, Some(&dirs[0])));
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url().to_owned()).collect();

    // Every node lists all three, one of them the leader; each names itself.
    let all = nodes(&urls[1]);
    assert_eq!(all.len(), 3, "{all:#?}");
    wait_until("exactly one leader", || {
        nodes(&urls[2])
            .iter()
            .filter(|n| n["Rank"] == "Leader")
            .count()
            == 1
    });
    for (url, name) in urls.iter().zip(["n1", "n2", "n3"]) {
        assert_eq!(ping(url)["Name"], name);
        assert_eq!(node(&nodes(url), name)["IsOffline"], false);
    }

    // 40 deployments of 40 projects, queued through all three nodes: each
    // runs once, and more than one node runs them.
    let mut tasks = BTreeMap::new();
    for i in 0..40 {
        let url = &urls[i % 3];
        let project = format!("P{i:02}");
        let id = deploy(url, &project, &format!("echo ran-{project}"));
        tasks.insert(id, project);
    }
    let mut ran_on = BTreeMap::new();
    for (id, project) in &tasks {
        let t = wait_task(&urls[0], id);
        assert_eq!(t["State"], "Success", "{id}: {t}");
        let node = t["ServerNode"].as_str().expect("the task names its node");
        *ran_on.entry(node.to_owned()).or_insert(0) += 1;
        let (_, _, log) = try_call(
            "GET",
            &format!("{}/api/tasks/{id}/raw", urls[1]),
            &[("X-Octopus-ApiKey", KEY)],
            None,
        )
        .unwrap();
        let marker = format!("ran-{project}");
        assert_eq!(
            log.matches(&marker).count(),
            1,
            "{id} ran other than once:\n{log}"
        );
    }
    assert!(ran_on.len() > 1, "one node ran every task: {ran_on:?}");
    eprintln!("deployments per node: {ran_on:?}");
    let started = api(
        &urls[2],
        "GET",
        "/api/events?eventCategories=DeploymentStarted&take=1000",
        None,
    );
    assert_eq!(started["TotalResults"], 40, "each deployment started once");

    // Drain n1 and n2 through n3, and cap n3 at one task: each node
    // applies what was set through another at its heartbeat.
    for name in ["n1", "n2"] {
        api(
            &urls[2],
            "PUT",
            &format!("/api/octopusservernodes/OctopusServerNodes-{name}"),
            Some(json!({"IsInMaintenanceMode": true})),
        );
    }
    api(
        &urls[0],
        "PUT",
        "/api/octopusservernodes/OctopusServerNodes-n3",
        Some(json!({"MaxConcurrentTasks": 1})),
    );
    wait_until("n1 and n2 drain and n3 takes one task at a time", || {
        ping(&urls[0])["IsInMaintenanceMode"] == true
            && ping(&urls[1])["IsInMaintenanceMode"] == true
            && ping(&urls[2])["MaxConcurrentTasks"] == 1
    });
    let drained = nodes(&urls[1]);
    assert_eq!(node(&drained, "n1")["IsInMaintenanceMode"], true);
    assert_eq!(node(&drained, "n3")["MaxConcurrentTasks"], 1);
    let queued: Vec<String> = (0..4)
        .map(|i| deploy(&urls[i % 2], &format!("D{i}"), "sleep 0.2; echo drained"))
        .collect();
    let mut spans = vec![];
    for id in &queued {
        let t = wait_task(&urls[0], id);
        assert_eq!(t["State"], "Success", "{t}");
        assert_eq!(t["ServerNode"], "n3", "a drained node took {id}");
        spans.push((
            t["StartTime"].as_str().unwrap().to_owned(),
            t["CompletedTime"].as_str().unwrap().to_owned(),
        ));
    }
    // With a cap of one, each started after the one before it ended.
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two tasks ran at once on n3: {pair:?}"
        );
    }

    // A live node cannot be deleted; one stopped cleanly can.
    let (status, answer) = call(
        &urls[2],
        "DELETE",
        "/api/octopusservernodes/OctopusServerNodes-n1",
        None,
    );
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(nodes(&urls[2]).len(), 3);

    // The leader killed: another node leads within the lease.
    let leader = nodes(&urls[0])
        .iter()
        .find(|n| n["Rank"] == "Leader")
        .map(|n| n["Name"].as_str().unwrap().to_owned())
        .expect("a leader");
    let index = ["n1", "n2", "n3"]
        .iter()
        .position(|n| *n == leader)
        .unwrap();
    servers[index].signal("-KILL");
    servers[index].wait_exit(PATIENCE).expect("the leader died");
    let survivor = &urls[(index + 1) % 3];
    wait_until("another node takes the lead", || {
        let all = nodes(survivor);
        all.iter()
            .any(|n| n["Rank"] == "Leader" && n["Name"] != leader.as_str())
    });
    let after = nodes(survivor);
    assert_eq!(after.iter().filter(|n| n["Rank"] == "Leader").count(), 1);
    assert_eq!(node(&after, &leader)["Rank"], "Follower");

    // The remaining other node stops cleanly: it is offline at once, and
    // can be deleted through the survivor.
    let other = (0..3)
        .find(|i| *i != index && *i != (index + 1) % 3)
        .unwrap();
    let other_name = ["n1", "n2", "n3"][other];
    servers[other].signal("-TERM");
    servers[other]
        .wait_exit(PATIENCE)
        .expect("the node stopped");
    assert_eq!(node(&nodes(survivor), other_name)["IsOffline"], true);
    let (status, answer) = call(
        survivor,
        "DELETE",
        &format!("/api/octopusservernodes/OctopusServerNodes-{other_name}"),
        None,
    );
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let left: Vec<String> = nodes(survivor)
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!left.contains(&other_name.to_owned()), "{left:?}");
    assert_eq!(left.len(), 2);
}

/// The thumbprint a node tells agents to trust.
fn thumbprint(url: &str) -> String {
    api(url, "GET", "/api/agents/server-thumbprint", None)["Thumbprint"]
        .as_str()
        .expect("a thumbprint")
        .to_owned()
}

fn cuttle(args: &[&str]) -> String {
    let out = std::process::Command::new(support::BIN)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cuttle {args:?}: {text}");
    text
}

fn stop(server: &mut TestServer) {
    server.signal("-INT");
    server
        .wait_exit(Duration::from_secs(30))
        .expect("the node stops");
}

#[test]
fn every_node_presents_the_installations_certificate_and_a_rotation_reaches_them_all() {
    let Some(db) = scratch_postgres("nodes_identity") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    let mut first = start_node(&a, &db.url, "a", None);
    let installation = thumbprint(first.url());

    // A new node with an empty data directory presents the same one.
    let mut second = start_node(&b, &db.url, "b", Some(&a));
    assert_eq!(thumbprint(second.url()), installation);
    let cert = |dir: &Path| std::fs::read(dir.join("certs/identity.crt")).unwrap();
    assert_eq!(cert(&a), cert(&b));

    // A node whose directory made an identity of its own (it once ran
    // alone) takes the installation's and keeps its own as the previous.
    let mut alone = TestServer::start(&c, None, &[]);
    let own = thumbprint(alone.url());
    stop(&mut alone);
    assert_ne!(own, installation);
    let mut third = start_node(&c, &db.url, "c", Some(&a));
    assert_eq!(thumbprint(third.url()), installation);
    let replaced = std::fs::read_to_string(c.join("certs/replaced.crt")).unwrap();
    assert!(replaced.contains("BEGIN CERTIFICATE"));
    stop(&mut third);

    // A rotation made on one stopped node is published at its start and
    // presented by the others from their next start.
    stop(&mut first);
    cuttle(&[
        "server",
        "certificate",
        "new",
        "--data-dir",
        a.to_str().unwrap(),
    ]);
    let switched = cuttle(&[
        "server",
        "certificate",
        "use-next",
        "--data-dir",
        a.to_str().unwrap(),
    ]);
    let first = start_node(&a, &db.url, "a", None);
    let rotated = thumbprint(first.url());
    assert_ne!(rotated, installation);
    assert!(switched.contains(&rotated), "{switched}");
    assert_eq!(thumbprint(second.url()), installation, "read at start only");
    stop(&mut second);
    let mut second = start_node(&b, &db.url, "b", None);
    assert_eq!(thumbprint(second.url()), rotated);
    let mut third = start_node(&c, &db.url, "c", None);
    assert_eq!(thumbprint(third.url()), rotated);

    // Rolled back on the node that rotated, the installation's goes back
    // to the old one for all.
    let mut first = first;
    stop(&mut first);
    cuttle(&[
        "server",
        "certificate",
        "roll-back",
        "--data-dir",
        a.to_str().unwrap(),
    ]);
    let first = start_node(&a, &db.url, "a", None);
    assert_eq!(thumbprint(first.url()), installation);
    stop(&mut second);
    let second = start_node(&b, &db.url, "b", None);
    assert_eq!(thumbprint(second.url()), installation);
    stop(&mut third);
    let third = start_node(&c, &db.url, "c", None);
    assert_eq!(thumbprint(third.url()), installation);
    drop((first, second, third));
}

/// Each task of `ids` succeeded and its marker appears once in its log.
fn each_ran_once(url: &str, ids: &[(String, String)]) {
    for (id, marker) in ids {
        let t = wait_task(url, id);
        assert_eq!(t["State"], "Success", "{id}: {t}");
        let (_, _, log) = try_call(
            "GET",
            &format!("{url}/api/tasks/{id}/raw"),
            &[("X-Octopus-ApiKey", KEY)],
            None,
        )
        .unwrap();
        assert_eq!(log.matches(marker.as_str()).count(), 1, "{id}:\n{log}");
    }
}

/// The rolling upgrade the README describes, one node at a time: drain,
/// let its tasks finish, stop, start (the new binary), undrain. The other
/// node keeps taking work throughout, and nothing queued is lost.
#[test]
fn a_rolling_restart_drains_one_node_at_a_time_and_loses_nothing() {
    let Some(db) = scratch_postgres("nodes_rolling") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let mut first = start_node(&a, &db.url, "a", None);
    let second = start_node(&b, &db.url, "b", Some(&a));
    let (url_a, url_b) = (first.url().to_owned(), second.url().to_owned());
    let mut all = Vec::new();
    let mut queue = |url: &str, n: usize| {
        let project = format!("R{n:02}");
        let marker = format!("ran-{project}");
        let id = deploy(url, &project, &format!("sleep 0.3; echo {marker}"));
        all.push((id, marker));
    };
    for n in 0..6 {
        queue(if n % 2 == 0 { &url_a } else { &url_b }, n);
    }

    api(
        &url_b,
        "PUT",
        "/api/octopusservernodes/OctopusServerNodes-a",
        Some(json!({"IsInMaintenanceMode": true})),
    );
    wait_until("node a drains and finishes what it runs", || {
        let a = ping(&url_a);
        a["IsInMaintenanceMode"] == true && a["RunningTaskCount"] == 0
    });
    for n in 6..10 {
        queue(&url_b, n);
    }
    first.signal("-TERM");
    let status = first.wait_exit(PATIENCE).expect("node a stops");
    assert!(status.success(), "{status:?}");
    for n in 10..14 {
        queue(&url_b, n);
    }

    // Started again it stays drained until told otherwise.
    let restarted = start_node(&a, &db.url, "a", None);
    let url_a = restarted.url().to_owned();
    assert_eq!(ping(&url_a)["IsInMaintenanceMode"], true);
    api(
        &url_b,
        "PUT",
        "/api/octopusservernodes/OctopusServerNodes-a",
        Some(json!({"IsInMaintenanceMode": false})),
    );
    wait_until("node a takes work again", || {
        ping(&url_a)["IsInMaintenanceMode"] == false
    });
    for n in 14..18 {
        queue(&url_a, n);
    }
    each_ran_once(&url_b, &all);
    let started = api(
        &url_a,
        "GET",
        "/api/events?eventCategories=DeploymentStarted&take=1000",
        None,
    );
    assert_eq!(started["TotalResults"], 18, "each deployment started once");
    drop(second);
}

/// The leader killed: another node takes the lead, and the scheduled health
/// checks (a job of the leader's alone) go on from it.
#[test]
fn fault_scheduled_health_checks_go_on_when_the_leader_dies() {
    let Some(db) = scratch_postgres("nodes_health") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dirs = [root.path().join("n1"), root.path().join("n2")];
    let mut servers = vec![start_node(&dirs[0], &db.url, "n1", None)];
    servers.push(start_node(&dirs[1], &db.url, "n2", Some(&dirs[0])));
    let urls: Vec<String> = servers.iter().map(|s| s.url().to_owned()).collect();

    api(
        &urls[0],
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    let mut policy = api(&urls[0], "GET", "/api/machinepolicies", None)["Items"][0].clone();
    policy["MachineHealthCheckPolicy"]["HealthCheckInterval"] = json!("00:00:02");
    let id = policy["Id"].as_str().unwrap().to_owned();
    api(
        &urls[0],
        "PUT",
        &format!("/api/machinepolicies/{id}"),
        Some(policy),
    );
    // A machine to check (nobody answers for it: each check fails, and is
    // still queued on schedule).
    let agent = tempfile::tempdir().unwrap();
    let registered = support::agents::register(
        &servers[0],
        agent.path(),
        "web-1",
        support::agents::Mode::Listening(&["web"]),
    );
    assert!(registered.status.success(), "{registered:?}");
    let health_checks = |url: &str| {
        api(url, "GET", "/api/tasks?name=Health&take=1000", None)["Items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    wait_until("a scheduled health check", || health_checks(&urls[0]) > 0);

    let leader = nodes(&urls[0])
        .into_iter()
        .find(|n| n["Rank"] == "Leader")
        .expect("a leader");
    let index = usize::from(leader["Name"] == "n2");
    servers[index].signal("-KILL");
    servers[index].wait_exit(PATIENCE).expect("the leader died");
    let other = &urls[1 - index];
    wait_until("the other node leads", || ping(other)["IsLeader"] == true);
    let before = health_checks(other);
    wait_until("the new leader queues scheduled health checks", || {
        health_checks(other) > before
    });
}
