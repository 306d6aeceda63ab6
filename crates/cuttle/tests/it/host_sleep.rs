//! `cuttle host` with a short `--idle-after`: an idle instance falls asleep
//! with its database closed, one wake serves its first requests, its data
//! is all there; a running deployment keeps it awake and a due scheduled
//! health check wakes it. And `--polling-listen`: the polling agents of two
//! instances on one port, each running its own instance's deployment, and
//! agents presenting themselves to the wrong instance (or unknown) refused.
//! On SQLite, and on PostgreSQL when CUTTLE_TEST_DATABASE_URL is set.

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::agents::Agent;
use support::host::{instance_database, on_both_hosts, TestHost, DOMAIN};

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// The instance's state as the control plane shows it (which wakes nothing).
fn state(host: &TestHost, name: &str) -> String {
    let (status, view) = host.control("GET", &format!("/instances/{name}"), None);
    assert_eq!(status, StatusCode::OK, "{view}");
    str_of(&view, "State").to_owned()
}

fn wait_state(host: &TestHost, name: &str, wanted: &str, limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        let now = state(host, name);
        if now == wanted {
            return;
        }
        assert!(
            Instant::now() < until,
            "{name} is still {now}, not {wanted}:\n{}",
            host.recent_output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many lines of the host's output contain `text`.
fn lines_with(host: &TestHost, text: &str) -> usize {
    host.recent_output()
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

/// The connections the host holds to instance `name`'s database: its open
/// SQLite files, or its sessions on the PostgreSQL server.
fn database_connections(host: &TestHost, dir: &Path, db: Option<&str>, name: &str) -> usize {
    match db {
        None => {
            let files = std::fs::canonicalize(dir.join("instances").join(name))
                .unwrap()
                .join("cuttle.db");
            let fds = std::fs::read_dir(format!("/proc/{}/fd", host.child.id())).unwrap();
            fds.filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| {
                    target
                        .to_string_lossy()
                        .starts_with(&*files.to_string_lossy())
                })
                .count()
        }
        Some(url) => {
            use sqlx::Connection as _;
            let database = instance_database(url, name);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let (n,): (i64,) =
                    sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                        .bind(&database)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                usize::try_from(n).unwrap()
            })
        }
    }
}

#[test]
fn an_idle_instance_sleeps_with_its_database_closed_and_one_wake_answers_its_first_requests() {
    on_both_hosts("host_sleep", |dir, db| {
        let host = TestHost::start_with_env(dir, db, &[("CUTTLE_HOST_IDLE_AFTER", "1s")]);
        let created = host.create("alpha");
        let key = str_of(&created, "ApiKey").to_owned();
        host.api(
            "alpha",
            &key,
            "POST",
            "/api/environments",
            Some(json!({"Name": "Kept"})),
        );
        assert!(database_connections(&host, dir, db, "alpha") > 0);

        wait_state(&host, "alpha", "Asleep", Duration::from_secs(30));
        let (_, list) = host.control("GET", "/instances", None);
        assert!(list["Items"][0]["LastActive"].is_string(), "{list}");
        // Its connections are released: the pool, and on PostgreSQL the
        // task queue's listening connection too.
        let until = Instant::now() + Duration::from_secs(10);
        while database_connections(&host, dir, db, "alpha") > 0 {
            assert!(
                Instant::now() < until,
                "an asleep instance still holds {} connections",
                database_connections(&host, dir, db, "alpha")
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        // Several first requests at once: each waits for the one wake and
        // gets the right answer, with the data written before it slept.
        let woken_before = lines_with(&host, "instance woken instance=alpha");
        std::thread::scope(|s| {
            let answers: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        host.to(
                            "alpha",
                            "GET",
                            "/api/environments/all",
                            &[("X-Octopus-ApiKey", &key)],
                            None,
                        )
                    })
                })
                .collect();
            for answer in answers {
                let (status, _, text) = answer.join().unwrap();
                assert_eq!(status, StatusCode::OK, "{text}");
                assert!(text.contains("\"Kept\""), "{text}");
            }
        });
        assert_eq!(
            lines_with(&host, "instance woken instance=alpha") - woken_before,
            1,
            "woken once:\n{}",
            host.recent_output()
        );
        assert_eq!(state(&host, "alpha"), "Awake");
        // Its credentials still work, and refuse what they refused.
        let (status, _, _) = host.to("alpha", "GET", "/api/projects/all", &[], None);
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Asleep and suspended: 503, and resuming brings it back asleep or
        // awake, never half-open.
        wait_state(&host, "alpha", "Asleep", Duration::from_secs(30));
        let (status, view) = host.control("POST", "/instances/alpha/suspend", None);
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["State"], "Suspended");
        let (status, _, text) = host.to("alpha", "GET", "/api", &[], None);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(text.contains("suspended"), "{text}");
        let (status, view) = host.control("POST", "/instances/alpha/resume", None);
        assert_eq!(status, StatusCode::OK, "{view}");
        host.api("alpha", &key, "GET", "/api", None);

        // Across a restart an instance starts asleep, and wakes when asked.
        drop(host);
        let host = TestHost::start_with_env(dir, db, &[("CUTTLE_HOST_IDLE_AFTER", "1s")]);
        assert_eq!(state(&host, "alpha"), "Asleep");
        assert_eq!(database_connections(&host, dir, db, "alpha"), 0);
        let envs = host.api("alpha", &key, "GET", "/api/environments/all", None);
        assert_eq!(envs[0]["Name"], "Kept", "{envs}");
        let (status, _) = host.control("DELETE", "/instances/alpha", None);
        assert_eq!(status, StatusCode::OK);
    });
}

/// Environment Dev (its id) in instance `name`.
fn environment(host: &TestHost, name: &str, key: &str) -> String {
    let env = host.api(
        name,
        key,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    str_of(&env, "Id").to_owned()
}

/// A release of a project whose one step runs `script` (on targets in
/// `role`, or the built-in worker), deployed to Dev; the task id.
fn start_deployment(
    host: &TestHost,
    name: &str,
    key: &str,
    script: &str,
    role: Option<&str>,
) -> String {
    let project = host.api(
        name,
        key,
        "POST",
        "/api/projects",
        Some(json!({"Name": "Web", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})),
    );
    let mut step = json!({"Name": "Run", "Properties": {}, "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]});
    if let Some(role) = role {
        step["Properties"]["Octopus.Action.TargetRoles"] = json!(role);
    }
    host.api(
        name,
        key,
        "PUT",
        &format!(
            "/api/projects/{}/deploymentprocesses",
            str_of(&project, "Id")
        ),
        Some(json!({"Version": 0, "Steps": [step]})),
    );
    host.api(
        name,
        key,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": "Web", "ReleaseVersion": "1.0.0"})),
    );
    let d = host.api(
        name,
        key,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(json!({"ProjectName": "Web", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]})),
    );
    d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .expect("a deployment task")
        .to_owned()
}

fn wait_task(host: &TestHost, name: &str, key: &str, task: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let t = host.api(name, key, "GET", &format!("/api/tasks/{task}"), None);
        if t["IsCompleted"] == true {
            return t;
        }
        assert!(Instant::now() < until, "{name}: task {task} did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn raw_log(host: &TestHost, name: &str, key: &str, task: &str) -> String {
    let (status, _, text) = host.to(
        name,
        "GET",
        &format!("/api/tasks/{task}/raw"),
        &[("X-Octopus-ApiKey", key)],
        None,
    );
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

#[test]
fn a_running_deployment_keeps_an_instance_awake_and_a_due_health_check_wakes_it() {
    on_both_hosts("host_sleep_work", |dir, db| {
        let host = TestHost::start_with_env(dir, db, &[("CUTTLE_HOST_IDLE_AFTER", "1s")]);
        let created = host.create("busy");
        let key = str_of(&created, "ApiKey").to_owned();
        let dev = environment(&host, "busy", &key);

        // Nobody asks for 4 s while the step runs: it stays awake.
        let task = start_deployment(&host, "busy", &key, "sleep 4; echo slept", None);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            assert_eq!(state(&host, "busy"), "Awake", "asleep under a running step");
            std::thread::sleep(Duration::from_millis(200));
        }
        wait_state(&host, "busy", "Asleep", Duration::from_secs(30));
        let done = wait_task(&host, "busy", &key, &task);
        assert_eq!(done["State"], "Success", "{done}");
        assert!(raw_log(&host, "busy", &key, &task).contains("slept"));

        // A machine checked every 3 s: the check wakes the instance.
        let mut policy =
            host.api("busy", &key, "GET", "/api/machinepolicies", None)["Items"][0].clone();
        policy["MachineHealthCheckPolicy"]["HealthCheckInterval"] = json!("00:00:03");
        let policy_id = str_of(&policy, "Id").to_owned();
        host.api(
            "busy",
            &key,
            "PUT",
            &format!("/api/machinepolicies/{policy_id}"),
            Some(policy),
        );
        host.api(
            "busy",
            &key,
            "POST",
            "/api/machines",
            Some(
                json!({"Name": "web-1", "Roles": ["web"], "EnvironmentIds": [dev],
                "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://127.0.0.1:9/",
                    "Thumbprint": "AB".repeat(32)}}),
            ),
        );
        wait_state(&host, "busy", "Asleep", Duration::from_secs(30));
        let until = Instant::now() + Duration::from_secs(30);
        while lines_with(&host, "woken for work due") == 0 {
            assert!(
                Instant::now() < until,
                "never woken for its health check:\n{}",
                host.recent_output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let until = Instant::now() + Duration::from_secs(30);
        while lines_with(&host, "scheduled health check queued") == 0 {
            assert!(
                Instant::now() < until,
                "woken, but no check queued:\n{}",
                host.recent_output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let tasks = host.api("busy", &key, "GET", "/api/tasks?name=Health", None);
        assert!(
            tasks["Items"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["Name"] == "Health")),
            "{tasks}"
        );
    });
}

/// `cuttle agent init` in `dir`; the agent's thumbprint.
fn agent_init(dir: &Path) -> String {
    let out = Command::new(support::BIN)
        .args(["agent", "init", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Thumbprint:"))
        .map(|t| t.trim().to_owned())
        .expect("a thumbprint printed")
}

/// What `cuttle agent register --polling` leaves, for an agent that dials
/// `127.0.0.1:port` and names instance `named` in its handshake.
fn write_agent_config(dir: &Path, named: &str, port: u64, trusted: &[&str], machine: &str) {
    let config = json!({
        "Name": "agent",
        "PollingServer": format!("127.0.0.1:{port}"),
        "PollingServerName": format!("{named}.{DOMAIN}"),
        "ServerUrl": format!("http://{named}.{DOMAIN}"),
        "TrustedServerThumbprints": trusted,
        "MachineId": machine,
        "SpaceId": "Spaces-1",
    });
    std::fs::write(
        dir.join("agent.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

/// The instance's machines' names.
fn machine_names(host: &TestHost, name: &str, key: &str) -> Vec<String> {
    let all = host.api(name, key, "GET", "/api/machines/all", None);
    all.as_array()
        .unwrap()
        .iter()
        .map(|m| str_of(m, "Name").to_owned())
        .collect()
}

#[test]
fn polling_agents_of_two_instances_share_one_port_and_a_stray_or_unknown_agent_is_refused() {
    on_both_hosts("host_polling", |dir, db| {
        let host =
            TestHost::start_with_env(dir, db, &[("CUTTLE_HOST_POLLING_LISTEN", "127.0.0.1:0")]);
        let agents_root = tempfile::tempdir().unwrap();
        let mut keys = vec![];
        let mut servers = vec![];
        let mut running = vec![];
        for name in ["alpha", "beta"] {
            let created = host.create(name);
            let key = str_of(&created, "ApiKey").to_owned();
            let dev = environment(&host, name, &key);
            let server = host.api(name, &key, "GET", "/api/agents/server-thumbprint", None);
            let port = server["PollingPort"]
                .as_u64()
                .expect("the host's polling port");
            let agent_dir = agents_root.path().join(name);
            let thumbprint = agent_init(&agent_dir);
            let machine = host.api(
                name,
                &key,
                "POST",
                "/api/machines",
                Some(json!({"Name": format!("{name}-agent"), "Roles": ["web"], "EnvironmentIds": [dev],
                    "Endpoint": {"CommunicationStyle": "TentacleActive",
                        "Uri": format!("poll://{}/", &thumbprint[..20].to_ascii_lowercase()),
                        "Thumbprint": thumbprint}})),
            );
            let server_thumbprint = str_of(&server, "Thumbprint").to_owned();
            write_agent_config(
                &agent_dir,
                name,
                port,
                &[&server_thumbprint],
                str_of(&machine, "Id"),
            );
            running.push(Agent::start(&agent_dir));
            keys.push(key);
            servers.push((server_thumbprint, port));
        }
        assert_ne!(
            servers[0].0, servers[1].0,
            "each instance its own certificate"
        );
        assert_eq!(servers[0].1, servers[1].1, "one polling port");

        // A deployment in each runs on that instance's own agent.
        for (name, key) in ["alpha", "beta"].iter().zip(&keys) {
            let task = start_deployment(&host, name, key, "echo \"ran in $PWD\"", Some("web"));
            let done = wait_task(&host, name, key, &task);
            let log = raw_log(&host, name, key, &task);
            assert_eq!(done["State"], "Success", "{done}\n{log}");
            let own = std::fs::canonicalize(agents_root.path().join(name)).unwrap();
            assert!(log.contains(&format!("ran in {}", own.display())), "{log}");
        }

        // Alpha's agent presenting itself to beta (trusting beta's
        // certificate too): refused, and beta is unchanged.
        let stray = agents_root.path().join("stray");
        std::fs::create_dir_all(stray.join("certs")).unwrap();
        for file in std::fs::read_dir(agents_root.path().join("alpha/certs")).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), stray.join("certs").join(file.file_name())).unwrap();
        }
        let port = servers[0].1;
        write_agent_config(
            &stray,
            "beta",
            port,
            &[&servers[0].0, &servers[1].0],
            "Machines-1",
        );
        let before = lines_with(&host, "presented itself to 'beta'");
        let stray_agent = Agent::start(&stray);
        // And an agent nobody registered.
        let unknown = agents_root.path().join("unknown");
        agent_init(&unknown);
        write_agent_config(&unknown, "alpha", port, &[&servers[0].0], "Machines-1");
        let unknown_before = lines_with(&host, "with the unregistered certificate");
        let unknown_agent = Agent::start(&unknown);
        let until = Instant::now() + Duration::from_secs(30);
        while lines_with(&host, "presented itself to 'beta'") == before
            || lines_with(&host, "with the unregistered certificate") == unknown_before
        {
            assert!(
                Instant::now() < until,
                "the stray and unknown agents were not refused:\n{}",
                host.recent_output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(stray_agent);
        drop(unknown_agent);
        assert_eq!(machine_names(&host, "beta", &keys[1]), ["beta-agent"]);
        assert_eq!(machine_names(&host, "alpha", &keys[0]), ["alpha-agent"]);
        // Beta still deploys on its own agent.
        let task = start_deployment_again(&host, "beta", &keys[1]);
        let done = wait_task(&host, "beta", &keys[1], &task);
        assert_eq!(done["State"], "Success", "{done}");
        drop(running);
    });
}

/// Deploys the release `start_deployment` made once more; the task id.
fn start_deployment_again(host: &TestHost, name: &str, key: &str) -> String {
    let d = host.api(
        name,
        key,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(json!({"ProjectName": "Web", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"], "ForcePackageRedeployment": true})),
    );
    d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .expect("a deployment task")
        .to_owned()
}

/// The sum of `family`'s samples in instance `name`'s `/metrics`.
fn counted(host: &TestHost, name: &str, key: &str, family: &str) -> f64 {
    let (status, _, text) = host.to(name, "GET", "/metrics", &[("X-Octopus-ApiKey", key)], None);
    assert_eq!(status, StatusCode::OK, "{text}");
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An instance's counters carry on across sleep and wake (a counter that
/// went back would read, to Prometheus, as a restart), and waking it
/// probes no sandbox: the host probes the hosted workers' once, at start.
#[test]
fn a_woken_instance_keeps_its_counters_and_no_wake_probes_a_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with_env(dir.path(), None, &[("CUTTLE_HOST_IDLE_AFTER", "1s")]);
    let created = host.create("counted");
    let key = str_of(&created, "ApiKey").to_owned();
    for _ in 0..5 {
        host.api("counted", &key, "GET", "/api/environments", None);
    }
    let requests = "cuttle_http_requests_total";
    let awake = counted(&host, "counted", &key, requests);
    assert!(awake >= 5.0, "{awake} requests counted");

    for round in 1..=2 {
        wait_state(&host, "counted", "Asleep", Duration::from_secs(30));
        let woken_before = lines_with(&host, "instance woken instance=counted");
        // This scrape wakes it.
        let now = counted(&host, "counted", &key, requests);
        assert_eq!(
            lines_with(&host, "instance woken instance=counted") - woken_before,
            1,
            "round {round}: {}",
            host.recent_output()
        );
        assert!(
            now >= awake,
            "round {round}: the counters went back from {awake} to {now} across the wake"
        );
    }
    // The only sandbox probed is the hosted workers', once; instances have
    // no built-in worker to probe.
    assert_eq!(
        lines_with(&host, "hosted workers: "),
        1,
        "{}",
        host.recent_output()
    );
    assert_eq!(
        lines_with(&host, "built-in worker isolation"),
        0,
        "{}",
        host.recent_output()
    );
    assert!(lines_with(&host, "built-in worker: none") >= 3);
}
