//! Deployments reaching real agents: listening and polling `cuttle agent`
//! processes on 127.0.0.1 run the steps whose roles they have, each in its
//! own branch of the task log, a rolling step one target at a time; and the
//! faults operators meet (an agent killed mid-script, a background process
//! left behind, a server restart under a polling agent, a stranger's
//! certificate).

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::agents::{
    api, deploy_to_dev, free_port, health, machine_named, raw_log, register, wait_task, Agent, Mode,
};
use support::{on_both, ServerProcess};

fn environment(server: &ServerProcess) {
    api(
        server,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
}

/// A script step; `roles` empty runs it on the built-in worker.
fn step(name: &str, roles: &str, script: &str, max_parallelism: Option<u32>) -> Value {
    let mut properties = json!({});
    if !roles.is_empty() {
        properties["Octopus.Action.TargetRoles"] = json!(roles);
    }
    if let Some(n) = max_parallelism {
        properties["Octopus.Action.MaxParallelism"] = json!(n.to_string());
    }
    json!({"Name": name, "Properties": properties, "Actions": [{
        "Name": name, "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]})
}

fn project(server: &ServerProcess, name: &str, steps: Vec<Value>) {
    let p = api(
        server,
        "POST",
        "/api/projects",
        Some(
            json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    api(
        server,
        "PUT",
        &format!(
            "/api/projects/{}/deploymentprocesses",
            p["Id"].as_str().unwrap()
        ),
        Some(json!({"Version": 0, "Steps": steps})),
    );
}

/// Releases the project and deploys it to Dev; the task id.
fn deploy(server: &ServerProcess, project: &str, version: &str) -> String {
    api(
        server,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": project, "ReleaseVersion": version})),
    );
    deploy_to_dev(server, project, version)
}

fn start_agent(server: &ServerProcess, dir: &Path, name: &str, mode: Mode<'_>) -> Agent {
    let out = register(server, dir, name, mode);
    assert!(out.status.success(), "{out:?}");
    Agent::start(dir)
}

/// The names of an activity's children in the task's details.
fn children_of(details: &Value, name: &str) -> Vec<String> {
    fn find<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
        if node["Name"] == name {
            return Some(node);
        }
        node["Children"]
            .as_array()?
            .iter()
            .find_map(|c| find(c, name))
    }
    details["ActivityLogs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|root| find(root, name))
        .unwrap_or_else(|| panic!("no activity {name} in {details}"))["Children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn steps_run_on_listening_and_polling_targets() {
    on_both("agent_deploy", |data_dir, db| {
        let server = ServerProcess::start(&data_dir, db.as_deref(), &[]);
        environment(&server);
        let tmp = tempfile::tempdir().unwrap();
        let _agents = [
            start_agent(
                &server,
                &tmp.path().join("1"),
                "web-1",
                Mode::Listening(&["web"]),
            ),
            start_agent(
                &server,
                &tmp.path().join("2"),
                "web-2",
                Mode::Listening(&["web"]),
            ),
            start_agent(
                &server,
                &tmp.path().join("3"),
                "web-3",
                Mode::Polling(&["web"]),
            ),
            start_agent(
                &server,
                &tmp.path().join("4"),
                "db-1",
                Mode::Listening(&["db"]),
            ),
            start_agent(
                &server,
                &tmp.path().join("5"),
                "worker-1",
                Mode::PollingWorker("Default Worker Pool"),
            ),
        ];
        // No ids: every machine and worker in the space.
        let checked = health(&server, &[]);
        let workers = api(&server, "GET", "/api/workers", None);
        assert_eq!(workers["Items"][0]["Name"], "worker-1", "{workers}");
        assert_eq!(workers["Items"][0]["HealthStatus"], "Healthy", "{workers}");
        assert_eq!(
            checked["State"],
            "Success",
            "{checked}\n{}",
            raw_log(&server, checked["Id"].as_str().unwrap())
        );
        let polling = machine_named(&server, "web-3");
        assert_eq!(polling["HealthStatus"], "Healthy", "{polling}");
        assert_eq!(polling["Endpoint"]["CommunicationStyle"], "TentacleActive");

        let order = tmp.path().join("order.txt");
        let rolling = format!(
            "echo \"start #{{Octopus.Machine.Name}}\" >> {0}\nsleep 0.3\necho end >> {0}",
            order.display()
        );
        project(
            &server,
            "Web",
            vec![
                step(
                    "Greet",
                    "web",
                    "echo \"hello from #{Octopus.Machine.Name}\"",
                    None,
                ),
                step("Roll", "web", &rolling, Some(1)),
                step("Report", "", "echo \"on the worker\"", None),
            ],
        );
        let task = deploy(&server, "Web", "1.0.0");
        let done = wait_task(&server, &task, Duration::from_secs(120));
        let log = raw_log(&server, &task);
        assert_eq!(done["State"], "Success", "{done}\n{log}");
        for name in ["web-1", "web-2", "web-3"] {
            assert!(log.contains(&format!("hello from {name}")), "{log}");
        }
        assert!(!log.contains("hello from db-1"), "{log}");
        assert!(log.contains("on the worker"), "{log}");

        // Each target has its own branch under the step.
        let details = api(&server, "GET", &format!("/api/tasks/{task}/details"), None);
        let mut greeted = children_of(&details, "Step 1: Greet");
        greeted.sort();
        assert_eq!(greeted, ["web-1", "web-2", "web-3"]);
        // The step without roles ran on the default pool's worker.
        assert_eq!(children_of(&details, "Step 3: Report"), ["worker-1"]);

        // MaxParallelism 1: each target ended before the next started.
        let lines = std::fs::read_to_string(&order).unwrap();
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 6, "{lines:?}");
        for pair in lines.chunks(2) {
            assert!(
                pair[0].starts_with("start ") && pair[1] == "end",
                "{lines:?}"
            );
        }
    });
}

/// Makes the default machine policy quick to give up, so faults show fast.
fn impatient_policy(server: &ServerProcess) {
    let mut policy = api(server, "GET", "/api/machinepolicies", None)["Items"][0].clone();
    policy["ConnectionConnectTimeout"] = json!("00:00:03");
    policy["ConnectionRetryTimeLimit"] = json!("00:00:03");
    policy["ConnectionRetrySleepInterval"] = json!("00:00:01");
    let id = policy["Id"].as_str().unwrap().to_owned();
    api(
        server,
        "PUT",
        &format!("/api/machinepolicies/{id}"),
        Some(policy),
    );
}

fn wait_for_log(server: &ServerProcess, task: &str, text: &str) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let log = raw_log(server, task);
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < until, "no {text:?} in:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agent_faults() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), None, &[]);
    environment(&server);
    impatient_policy(&server);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");

    // An agent killed mid-script: the step fails, naming the agent and
    // saying the connection was lost, within the policy's limits.
    let agent = start_agent(&server, &dir, "web-1", Mode::Listening(&["web"]));
    project(
        &server,
        "Crash",
        vec![step("Wait", "web", "echo started\nsleep 60", None)],
    );
    let task = deploy(&server, "Crash", "1.0.0");
    wait_for_log(&server, &task, "started");
    let killed = Instant::now();
    agent.kill();
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Failed", "{done}\n{log}");
    assert!(log.contains("the connection to web-1 was lost"), "{log}");
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "the lost agent was noticed only after {:?}",
        killed.elapsed()
    );

    // Once a health check has found it unavailable, the next deployment
    // fails at once, naming it; a project that skips unavailable machines
    // leaves it out with a warning instead.
    let web = machine_named(&server, "web-1");
    let web_id = web["Id"].as_str().unwrap().to_owned();
    assert_eq!(health(&server, &[&web_id])["State"], "Failed");
    let task = deploy(&server, "Crash", "1.0.1");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Failed", "{done}\n{log}");
    assert!(
        log.contains("the deployment target web-1 (Unavailable") && !log.contains("started"),
        "{log}"
    );
    let mut crash = api(&server, "GET", "/api/projects/Crash", None);
    crash["ProjectConnectivityPolicy"]["SkipMachineBehavior"] = json!("SkipUnavailableMachines");
    let crash_id = crash["Id"].as_str().unwrap().to_owned();
    api(
        &server,
        "PUT",
        &format!("/api/projects/{crash_id}"),
        Some(crash),
    );
    let task = deploy(&server, "Crash", "1.0.2");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert!(
        log.contains("Skipping unavailable deployment targets, as the project asks: web-1"),
        "{log}"
    );

    // A script that leaves a process in the background: the agent kills it
    // when the script ends.
    let agent = Agent::start(&dir);
    assert_eq!(health(&server, &[&web_id])["State"], "Success");
    project(
        &server,
        "Fork",
        vec![step("Fork", "web", "sleep 300 &\necho \"child $!\"", None)],
    );
    let task = deploy(&server, "Fork", "1.0.0");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    let pid: u32 = log
        .lines()
        .find_map(|l| l.split("child ").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no child pid in {log}"));
    let until = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < until,
            "the background process {pid} outlived its script"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(agent);

    // A polling agent whose registration names another certificate is
    // refused, and the health check says it has not connected.
    let strange = tmp.path().join("strange");
    let _stranger = start_agent(&server, &strange, "poll-1", Mode::Polling(&["web"]));
    let mut machine = machine_named(&server, "poll-1");
    let id = machine["Id"].as_str().unwrap().to_owned();
    machine["Endpoint"]["Thumbprint"] = json!("AB".repeat(32));
    api(
        &server,
        "PUT",
        &format!("/api/machines/{id}"),
        Some(machine),
    );
    let checked = health(&server, &[&id]);
    assert_eq!(checked["State"], "Failed", "{checked}");
    let m = api(&server, "GET", &format!("/api/machines/{id}"), None);
    assert_eq!(m["HealthStatus"], "Unavailable", "{m}");
    assert!(
        m["StatusSummary"]
            .as_str()
            .unwrap()
            .contains("has not connected"),
        "{m}"
    );
}

#[test]
fn a_polling_agent_reconnects_when_the_server_returns() {
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let extra = ["--polling-listen", listen.as_str()];
    let mut server = ServerProcess::start(data_dir.path(), None, &extra);
    environment(&server);
    let tmp = tempfile::tempdir().unwrap();
    let _agent = start_agent(&server, tmp.path(), "poll-1", Mode::Polling(&["web"]));
    let id = machine_named(&server, "poll-1")["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(health(&server, &[&id])["State"], "Success");

    // Killed outright, then started again on the same installation and port.
    server.signal("-KILL");
    server.wait_exit(Duration::from_secs(10));
    drop(server);
    let server = ServerProcess::start(data_dir.path(), None, &extra);
    project(
        &server,
        "Again",
        vec![step(
            "Hello",
            "web",
            "echo \"back on #{Octopus.Machine.Name}\"",
            None,
        )],
    );
    let task = deploy(&server, "Again", "1.0.0");
    let done = wait_task(&server, &task, Duration::from_secs(120));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert!(log.contains("back on poll-1"), "{log}");
}

#[test]
fn worker_pools_without_a_usable_worker_fail_the_step_clearly() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), None, &[]);
    environment(&server);
    impatient_policy(&server);
    let pool = api(
        &server,
        "POST",
        "/api/workerpools",
        Some(json!({"Name": "Linux"})),
    );
    let pool_id = pool["Id"].as_str().unwrap().to_owned();
    let mut on_pool = step("Build", "", "echo built", None);
    on_pool["Actions"][0]["WorkerPoolId"] = json!(pool_id);
    project(&server, "Build", vec![on_pool]);

    // No workers at all in a pool chosen on purpose.
    let task = deploy(&server, "Build", "1.0.0");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Failed", "{done}\n{log}");
    assert!(
        log.contains("The worker pool 'Linux' has no enabled workers"),
        "{log}"
    );

    // A worker that was there, and is gone.
    let tmp = tempfile::tempdir().unwrap();
    let worker = start_agent(&server, tmp.path(), "w-1", Mode::PollingWorker("Linux"));
    let id = api(&server, "GET", "/api/workers", None)["Items"][0]["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = deploy(&server, "Build", "1.0.1");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    assert_eq!(done["State"], "Success", "{}", raw_log(&server, &task));
    worker.kill();
    let checked = api(
        &server,
        "POST",
        "/api/tasks",
        Some(json!({"Name": "Health", "Arguments": {"WorkerIds": [id]}})),
    );
    let checked = wait_task(
        &server,
        checked["Id"].as_str().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(checked["State"], "Failed", "{checked}");
    let task = deploy(&server, "Build", "1.0.2");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Failed", "{done}\n{log}");
    assert!(
        log.contains("No healthy worker in the worker pool 'Linux': w-1 is Unavailable"),
        "{log}"
    );
}

#[test]
fn machine_policies_schedule_health_checks() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), None, &[]);
    environment(&server);
    let mut policy = api(&server, "GET", "/api/machinepolicies", None)["Items"][0].clone();
    policy["MachineHealthCheckPolicy"]["HealthCheckInterval"] = json!("00:00:02");
    let id = policy["Id"].as_str().unwrap().to_owned();
    api(
        &server,
        "PUT",
        &format!("/api/machinepolicies/{id}"),
        Some(policy),
    );
    let tmp = tempfile::tempdir().unwrap();
    let _agent = start_agent(&server, tmp.path(), "web-1", Mode::Listening(&["web"]));
    // Nobody asks: the schedule checks it within a few intervals.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let m = machine_named(&server, "web-1");
        if m["HealthStatus"] == "Healthy" {
            assert!(m["LastSeen"].is_string(), "{m}");
            break;
        }
        assert!(Instant::now() < until, "never checked: {m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let tasks = api(&server, "GET", "/api/tasks?name=Health", None);
    assert!(
        tasks["Items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["Name"] == "Health"),
        "{tasks}"
    );
}

/// Waits for a pending interruption of `task`.
fn pending_interruption(server: &ServerProcess, task: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let list = api(
            server,
            "GET",
            &format!("/api/Spaces-1/interruptions?regarding={task}&pendingOnly=true"),
            None,
        );
        if let Some(found) = list["Items"].as_array().and_then(|i| i.first()) {
            return found.clone();
        }
        assert!(
            Instant::now() < until,
            "no interruption:\n{}",
            raw_log(server, task)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn guided_failure_retries_the_failed_target_only_and_cancel_reaches_agents() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), None, &[]);
    environment(&server);
    let tmp = tempfile::tempdir().unwrap();
    let _agents = [
        start_agent(
            &server,
            &tmp.path().join("1"),
            "web-1",
            Mode::Listening(&["web"]),
        ),
        start_agent(
            &server,
            &tmp.path().join("2"),
            "web-2",
            Mode::Listening(&["web"]),
        ),
    ];
    let marker = tmp.path().join("failed-once");
    let flaky = format!(
        "if [ \"#{{Octopus.Machine.Name}}\" = web-2 ] && [ ! -e {m} ]; then touch {m}; echo \"failing on web-2\"; exit 3; fi\n\
         echo \"ok on #{{Octopus.Machine.Name}}\"",
        m = marker.display()
    );
    project(&server, "Flaky", vec![step("Roll", "web", &flaky, None)]);
    api(
        &server,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": "Flaky", "ReleaseVersion": "1.0.0"})),
    );
    let d = api(
        &server,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(json!({"ProjectName": "Flaky", "ReleaseVersion": "1.0.0",
            "EnvironmentNames": ["Dev"], "UseGuidedFailure": true})),
    );
    let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let interruption = pending_interruption(&server, &task);
    assert_eq!(interruption["Type"], "GuidedFailure");
    let id = interruption["Id"].as_str().unwrap();
    api(
        &server,
        "POST",
        &format!("/api/Spaces-1/interruptions/{id}/submit"),
        Some(json!({"Notes": "flaky disk", "Guidance": "Retry"})),
    );
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    let count = |text: &str| log.lines().filter(|l| l.trim_end().ends_with(text)).count();
    assert_eq!(
        (
            count("ok on web-1"),
            count("failing on web-2"),
            count("ok on web-2")
        ),
        (1, 1, 1),
        "{log}"
    );
    let details = api(&server, "GET", &format!("/api/tasks/{task}/details"), None);
    let mut runs = children_of(&details, "Step 1: Roll");
    runs.sort();
    assert_eq!(runs, ["web-1", "web-2", "web-2 (attempt 2)"]);

    // Cancelling a deployment stops the script on the agent, with its children.
    project(
        &server,
        "Long",
        vec![step(
            "Wait",
            "web",
            "sleep 120 &\necho \"child $!\"\necho started\nwait",
            None,
        )],
    );
    let task = deploy(&server, "Long", "1.0.0");
    let log = wait_for_log(&server, &task, "started");
    let pids: Vec<u32> = log
        .lines()
        .filter_map(|l| l.split("child ").nth(1))
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    assert!(!pids.is_empty(), "{log}");
    api(&server, "POST", &format!("/api/tasks/{task}/cancel"), None);
    let done = wait_task(&server, &task, Duration::from_secs(30));
    assert_eq!(done["State"], "Canceled", "{done}");
    let until = Instant::now() + Duration::from_secs(10);
    for pid in pids {
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                Instant::now() < until,
                "the script's child {pid} outlived the cancel"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An agent cuts a line longer than 64 KiB into pieces as the server does;
/// a sensitive value across the cut must reach the log masked, not as two
/// halves, whichever way the agent is reached.
#[test]
fn fault_a_secret_across_a_cut_line_on_an_agent_is_masked() {
    const SECRET: &str = "agent-s3cret-value-XYZ";
    on_both("agent_mask_cut", |data_dir, db| {
        let server = ServerProcess::start(&data_dir, db.as_deref(), &[]);
        environment(&server);
        let tmp = tempfile::tempdir().unwrap();
        let _agents = [
            start_agent(
                &server,
                &tmp.path().join("1"),
                "web-1",
                Mode::Listening(&["web"]),
            ),
            start_agent(
                &server,
                &tmp.path().join("2"),
                "web-2",
                Mode::Polling(&["web"]),
            ),
        ];
        health(&server, &[]);
        // The value begins 7 bytes before the 64 KiB cut.
        let script = "head -c 65529 /dev/zero | tr '\\0' k; echo \"#{Secret}-tail\"";
        project(&server, "Long", vec![step("Print", "web", script, None)]);
        let p = api(&server, "GET", "/api/projects/Long", None);
        let set = p["VariableSetId"].as_str().unwrap().to_owned();
        api(
            &server,
            "PUT",
            &format!("/api/Spaces-1/variables/{set}"),
            Some(
                json!({"Version": 0, "Variables": [{"Name": "Secret", "Value": SECRET, "Type": "Sensitive"}]}),
            ),
        );
        let task = deploy(&server, "Long", "1.0.0");
        let done = wait_task(&server, &task, Duration::from_secs(120));
        let log = raw_log(&server, &task);
        assert_eq!(done["State"], "Success", "{done}");
        // Either half of the value, as the cut divides it.
        for part in [SECRET, &SECRET[..7], &SECRET[7..]] {
            assert!(!log.contains(part), "the log shows {part}");
        }
        assert_eq!(log.matches("********-tail").count(), 2, "one per agent");
    });
}

/// Gives the default machine policy this connect timeout and a retry limit
/// of five minutes: an agent that is not connected must be given up on
/// within the first, long before the second.
fn connect_timeout(server: &ServerProcess, timeout: &str) {
    let mut policy = api(server, "GET", "/api/machinepolicies", None)["Items"][0].clone();
    policy["ConnectionConnectTimeout"] = json!(timeout);
    policy["ConnectionRetryTimeLimit"] = json!("00:05:00");
    let id = policy["Id"].as_str().unwrap().to_owned();
    let saved = api(
        server,
        "PUT",
        &format!("/api/machinepolicies/{id}"),
        Some(policy),
    );
    assert_eq!(saved["ConnectionConnectTimeout"], timeout, "{saved}");
}

#[test]
fn a_polling_agent_that_is_not_connected_fails_or_is_skipped_within_the_connect_timeout() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), None, &[]);
    environment(&server);
    connect_timeout(&server, "00:00:02");
    let tmp = tempfile::tempdir().unwrap();
    let _web1 = start_agent(
        &server,
        &tmp.path().join("web-1"),
        "web-1",
        Mode::Listening(&["web"]),
    );
    // Registered, but its agent is not running.
    let out = register(
        &server,
        &tmp.path().join("web-2"),
        "web-2",
        Mode::Polling(&["web"]),
    );
    assert!(out.status.success(), "{out:?}");
    let web2 = machine_named(&server, "web-2");
    assert_eq!(web2["HealthStatus"], "Unknown", "{web2}");
    let web2_id = web2["Id"].as_str().unwrap().to_owned();
    let expected =
        format!("The polling agent on machine 'web-2' ({web2_id}) did not connect within 2s");
    project(
        &server,
        "Away",
        vec![step(
            "Hello",
            "web",
            "echo \"ran on #{Octopus.Machine.Name}\"",
            None,
        )],
    );

    // The step fails naming the machine, well before the retry limit, and
    // runs nowhere, as for a target found unavailable.
    let task = deploy(&server, "Away", "1.0.0");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Failed", "{done}\n{log}");
    assert!(log.contains(&expected), "{log}");
    assert!(
        done["ErrorMessage"].as_str().unwrap().contains(&expected),
        "{done}"
    );
    assert!(!log.contains("ran on"), "{log}");

    // A project that skips unavailable machines deploys to the others and
    // says which one it skipped.
    let mut away = api(&server, "GET", "/api/projects/Away", None);
    away["ProjectConnectivityPolicy"]["SkipMachineBehavior"] = json!("SkipUnavailableMachines");
    let away_id = away["Id"].as_str().unwrap().to_owned();
    api(
        &server,
        "PUT",
        &format!("/api/projects/{away_id}"),
        Some(away),
    );
    let task = deploy(&server, "Away", "1.0.1");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert!(
        log.contains(&format!("{expected}; the machine was skipped")),
        "{log}"
    );
    assert!(
        log.contains("ran on web-1") && !log.contains("ran on web-2"),
        "{log}"
    );

    // A polling worker that is not connected fails its step as fast.
    let pool = api(
        &server,
        "POST",
        "/api/workerpools",
        Some(json!({"Name": "Linux"})),
    );
    let out = register(
        &server,
        &tmp.path().join("w-1"),
        "w-1",
        Mode::PollingWorker("Linux"),
    );
    assert!(out.status.success(), "{out:?}");
    let mut on_pool = step("Build", "", "echo built", None);
    on_pool["Actions"][0]["WorkerPoolId"] = pool["Id"].clone();
    project(&server, "Build", vec![on_pool]);
    let task = deploy(&server, "Build", "1.0.0");
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Failed", "{done}\n{log}");
    assert!(
        log.contains("The polling agent on w-1 did not connect within 2s"),
        "{log}"
    );
}

#[test]
fn a_polling_agent_that_connects_within_the_connect_timeout_runs_the_step() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), None, &[]);
    environment(&server);
    connect_timeout(&server, "00:00:40");
    let tmp = tempfile::tempdir().unwrap();
    let out = register(&server, tmp.path(), "late-1", Mode::Polling(&["web"]));
    assert!(out.status.success(), "{out:?}");
    project(
        &server,
        "Late",
        vec![step(
            "Hello",
            "web",
            "echo \"ran on #{Octopus.Machine.Name}\"",
            None,
        )],
    );
    let task = deploy(&server, "Late", "1.0.0");
    wait_for_log(
        &server,
        &task,
        "Waiting up to 40s for the polling agent on machine 'late-1'",
    );
    let _agent = Agent::start(tmp.path());
    let done = wait_task(&server, &task, Duration::from_secs(60));
    let log = raw_log(&server, &task);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert!(log.contains("ran on late-1"), "{log}");
    assert!(
        log.contains("The polling agent on machine 'late-1'") && log.contains(") connected"),
        "{log}"
    );
}
