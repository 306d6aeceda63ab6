//! A node dies, or pauses, while it runs a deployment: another node of the
//! cluster takes the task over once its lease lapses and carries it on,
//! re-attaching to scripts that run on agents. Two or three `cuttle server`
//! processes on one PostgreSQL database with a short task lease, and real
//! agents; the scripts leave marker files, so a step that ran twice shows.
//! Also a step on one node reaching a polling agent connected to another.
//! PostgreSQL only: SQLite is a single node (these are skipped, saying so,
//! without CUTTLE_TEST_DATABASE_URL).

use crate::support;

use cuttle_store::Store;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};
use support::agents::{agent_cli, register, Agent, Mode};
use support::observe::{api, deploy_steps, wait_task};
use support::{scratch_postgres, TestServer};

/// Generous: a debug build on a busy machine. Nothing is timed against it.
const PATIENCE: Duration = Duration::from_secs(60);
/// The task lease the nodes run with, in seconds: short, to keep the tests short.
const LEASE: &str = "2";

struct Cluster {
    nodes: Vec<(String, TestServer)>,
    /// Nodes in maintenance mode, which run no task.
    drained: Vec<String>,
    database: String,
    markers: tempfile::TempDir,
    _root: tempfile::TempDir,
    _db: support::ScratchPostgres,
}

impl Cluster {
    fn start(name: &str) -> Option<Cluster> {
        Cluster::start_nodes(name, &["n1", "n2"])
    }

    fn start_nodes(name: &str, names: &[&str]) -> Option<Cluster> {
        let db = scratch_postgres(name)?;
        let root = tempfile::tempdir().unwrap();
        // Outside /tmp and the data directories, which the built-in
        // worker's isolation hides from scripts; writable by its user.
        let markers = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::set_permissions(markers.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        // Package files go where every node reads them.
        let blobs = root.path().join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        let blobs = blobs.display().to_string();
        let mut nodes = vec![];
        for &node in names {
            let dir = root.path().join(node);
            std::fs::create_dir_all(&dir).unwrap();
            if node != "n1" {
                std::fs::copy(
                    root.path().join("n1").join("master.key"),
                    dir.join("master.key"),
                )
                .unwrap();
            }
            let server = TestServer::start(
                &dir,
                Some(&db.url),
                &[
                    "--node-name",
                    node,
                    "--task-lease",
                    LEASE,
                    "--blob-store",
                    &blobs,
                ],
            );
            nodes.push((node.to_owned(), server));
        }
        Some(Cluster {
            nodes,
            drained: vec![],
            database: db.url.clone(),
            markers,
            _root: root,
            _db: db,
        })
    }

    fn url(&self, node: &str) -> &str {
        self.server(node).url()
    }

    fn server(&self, node: &str) -> &TestServer {
        &self.nodes.iter().find(|(n, _)| n == node).unwrap().1
    }

    fn other(&self, node: &str) -> &str {
        &self.nodes.iter().find(|(n, _)| n != node).unwrap().0
    }

    /// Puts `node` in maintenance mode: it runs no new task (its polling
    /// agents stay connected to it).
    fn drain(&self, node: &str) {
        api(
            self.url("n1"),
            "PUT",
            &format!("/api/octopusservernodes/OctopusServerNodes-{node}"),
            Some(json!({"IsInMaintenanceMode": true})),
        );
        // The node applies it at its next heartbeat (every 2 s).
        std::thread::sleep(Duration::from_secs(3));
    }

    /// Registers an agent in Dev with role `web` through `node` (a polling
    /// agent polls that node) and starts it.
    fn agent(&self, node: &str, dir: &std::path::Path, name: &str, polling: bool) -> Agent {
        if api(self.url("n1"), "GET", "/api/environments?name=Dev", None)["TotalResults"] == 0 {
            api(
                self.url("n1"),
                "POST",
                "/api/environments",
                Some(json!({"Name": "Dev"})),
            );
        }
        let mode = if polling {
            Mode::Polling(&["web"])
        } else {
            Mode::Listening(&["web"])
        };
        let out = register(self.server(node), dir, name, mode);
        assert!(out.status.success(), "{out:?}");
        Agent::start(dir)
    }

    /// A marker path for a script to append to.
    fn marker(&self, name: &str) -> String {
        self.markers.path().join(name).display().to_string()
    }

    /// How many times a script appended to a marker.
    fn runs(&self, name: &str) -> usize {
        std::fs::read_to_string(self.markers.path().join(name))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Creates a project of `steps`, releases and deploys it through n1
    /// (guided failure as asked); returns the task id.
    fn deploy(&self, project: &str, steps: Vec<Value>, guided: bool) -> String {
        deploy_steps(self.url("n1"), project, steps, "1.0.0", guided)
    }

    fn task(&self, node: &str, id: &str) -> Value {
        api(self.url(node), "GET", &format!("/api/tasks/{id}"), None)
    }

    /// The node running `id`, once it runs.
    fn runner_of(&self, id: &str) -> String {
        let mut node = String::new();
        wait_until("the task starts", || {
            let t = self.task("n1", id);
            node = t["ServerNode"].as_str().unwrap_or_default().to_owned();
            t["State"] == "Executing" && !node.is_empty()
        });
        node
    }

    /// The task's pending interruption, asked through `node`.
    fn pending_interruption(&self, node: &str, task: &str) -> Value {
        let mut found = Value::Null;
        wait_until("an interruption is raised", || {
            let list = api(
                self.url(node),
                "GET",
                &format!("/api/Spaces-1/interruptions?regarding={task}&pendingOnly=true"),
                None,
            );
            found = list["Items"][0].clone();
            found.is_object()
        });
        found
    }

    /// Takes responsibility for an interruption and answers it through `node`.
    fn answer(&self, node: &str, interruption: &Value, field: &str, choice: &str) {
        let id = interruption["Id"].as_str().unwrap();
        let url = self.url(node);
        api(
            url,
            "PUT",
            &format!("/api/Spaces-1/interruptions/{id}/responsible"),
            Some(json!({})),
        );
        api(
            url,
            "POST",
            &format!("/api/Spaces-1/interruptions/{id}/submit"),
            Some(json!({"Notes": "after the takeover", field: choice})),
        );
    }

    fn store(&self) -> Store {
        block_on(Store::open(&self.database)).unwrap()
    }
}

/// Runs `f` on one runtime that lives as long as the test process: a store
/// opened here keeps its pool and background tasks between calls (a
/// runtime per call would shut them down under the next one).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
        })
        .block_on(f)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < until, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn script_step(name: &str, body: &str) -> Value {
    json!({"Name": name, "Actions": [{"Name": name, "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": body,
            "Octopus.Action.Script.Syntax": "Bash"}}]})
}

/// A script step for the deployment targets with role `web`.
fn agent_step(name: &str, body: &str) -> Value {
    json!({"Name": name, "Properties": {"Octopus.Action.TargetRoles": "web"},
        "Actions": [{"Name": name, "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": body,
            "Octopus.Action.Script.Syntax": "Bash"}}]})
}

fn manual_step(name: &str) -> Value {
    json!({"Name": name, "Actions": [{"Name": name, "ActionType": "Octopus.Manual",
        "Properties": {"Octopus.Action.Manual.Instructions": "Go ahead?",
            "Octopus.Action.Manual.BlockConcurrentDeployments": "False",
            "Octopus.Action.RunOnServer": "true"}}]})
}

/// The task's log from the database: its positions run 1, 2, 3… with no
/// gap, none twice; answered with the messages in order.
fn gapless_log(store: &Store, task: &str) -> Vec<String> {
    let lines = block_on(store.log_lines_after(task, 0, 100_000)).unwrap();
    let seqs: Vec<i64> = lines.iter().map(|l| l.seq).collect();
    let expected: Vec<i64> = (1..=lines.len() as i64).collect();
    assert_eq!(seqs, expected, "the log has a gap or a line twice");
    lines.into_iter().map(|l| l.message).collect()
}

fn once(messages: &[String], part: &str) {
    let n = messages.iter().filter(|m| m.contains(part)).count();
    assert_eq!(n, 1, "'{part}' is in the log {n} times:\n{messages:#?}");
}

fn kill(server: &TestServer) {
    server.signal("-KILL");
}

/// The node running a deployment is killed while the deployment waits
/// between its two script steps (on a manual intervention): the other
/// node takes it over, waits on the same interruption, and finishes it.
/// Each script ran exactly once and the log has neither a gap nor a
/// duplicate.
#[test]
fn fault_a_node_killed_between_two_steps_hands_its_deployment_over() {
    let Some(mut cluster) = Cluster::start("takeover_between") else {
        return;
    };
    let (first, second) = (cluster.marker("first"), cluster.marker("second"));
    let task = cluster.deploy(
        "Between",
        vec![
            script_step("First", &format!("echo ran >> {first}\necho first step ran")),
            manual_step("Approve"),
            script_step(
                "Second",
                &format!("echo ran >> {second}\necho \"second saw #{{Octopus.Action[Approve].Output.Manual.Approved}}\""),
            ),
        ],
        false,
    );
    let owner = cluster.runner_of(&task);
    let raised = cluster.pending_interruption("n1", &task);
    assert_eq!(cluster.runs("first"), 1);

    kill(cluster.server(&owner));
    let survivor = cluster.other(&owner).to_owned();
    wait_until("the survivor takes the task over", || {
        cluster.task(&survivor, &task)["ServerNode"] == survivor.as_str()
    });
    // The same interruption, not a second one.
    let waiting = cluster.pending_interruption(&survivor, &task);
    assert_eq!(waiting["Id"], raised["Id"], "{waiting}");
    cluster.answer(&survivor, &waiting, "Result", "Proceed");

    let done = wait_task(cluster.url(&survivor), &task);
    assert_eq!(done["State"], "Success", "{done}");
    assert_eq!(done["ServerNode"], survivor.as_str());
    assert_eq!((cluster.runs("first"), cluster.runs("second")), (1, 1));
    let messages = gapless_log(&cluster.store(), &task);
    once(&messages, "first step ran");
    once(&messages, "second saw True");
    once(
        &messages,
        &format!("took this deployment over from {owner}"),
    );
    once(&messages, "Deploying Between release 1.0.0 to Dev");
    once(&messages, "Still waiting for someone to proceed or abort");
    cluster.nodes.retain(|(n, _)| *n != owner);
}

/// The node running a deployment is killed while a script runs on its
/// built-in worker: the script died with it, so the node that takes the
/// task over fails that step, saying why, and guided failure offers a
/// retry, which runs the step again and lets the deployment finish.
#[test]
fn fault_a_node_killed_while_its_built_in_worker_runs_a_script_fails_the_step_saying_why() {
    let Some(mut cluster) = Cluster::start("takeover_script") else {
        return;
    };
    let started = cluster.marker("started");
    let after = cluster.marker("after");
    let task = cluster.deploy(
        "Midway",
        vec![
            script_step(
                "Long",
                &format!(
                    "if [ -e {started} ]; then echo retried; else echo ran >> {started}; sleep 120; fi"
                ),
            ),
            script_step("After", &format!("echo ran >> {after}")),
        ],
        true,
    );
    let owner = cluster.runner_of(&task);
    wait_until("the script runs", || cluster.runs("started") == 1);
    kill(cluster.server(&owner));
    let survivor = cluster.other(&owner).to_owned();

    let guidance = cluster.pending_interruption(&survivor, &task);
    assert_eq!(
        cluster.task(&survivor, &task)["ServerNode"],
        survivor.as_str()
    );
    let messages = gapless_log(&cluster.store(), &task);
    once(
        &messages,
        &format!("The server node {owner} stopped while this script ran on its Built-in worker, so the script stopped with it"),
    );
    once(
        &messages,
        &format!("The step 'Long' failed: the server node {owner} stopped while the step ran"),
    );
    assert_eq!(cluster.runs("after"), 0, "the next step waited");
    cluster.answer(&survivor, &guidance, "Guidance", "Retry");

    let done = wait_task(cluster.url(&survivor), &task);
    assert_eq!(done["State"], "Success", "{done}");
    assert_eq!((cluster.runs("started"), cluster.runs("after")), (1, 1));
    let messages = gapless_log(&cluster.store(), &task);
    once(&messages, "retried");
    cluster.nodes.retain(|(n, _)| *n != owner);
}

/// A node paused (SIGSTOP) for longer than its lease loses its task to
/// the other node; woken (SIGCONT), it finds out at its next write and
/// writes nothing more for the task: every line after the takeover
/// carries the new holder's lease generation, and the log and the task
/// are as the new holder left them.
#[test]
fn fault_a_node_paused_past_its_lease_writes_nothing_for_the_task_it_lost() {
    let Some(cluster) = Cluster::start("takeover_paused") else {
        return;
    };
    let started = cluster.marker("started");
    let task = cluster.deploy(
        "Paused",
        vec![script_step(
            "Chatty",
            &format!(
                "echo ran >> {started}\nfor i in $(seq 1 100); do echo tick $i; sleep 0.1; done"
            ),
        )],
        false,
    );
    let owner = cluster.runner_of(&task);
    wait_until("the script runs", || cluster.runs("started") == 1);
    let store = cluster.store();
    let held = block_on(store.task_generation(&task)).unwrap().unwrap();
    cluster.server(&owner).signal("-STOP");
    let survivor = cluster.other(&owner).to_owned();

    // Taken over and ended by the survivor while the owner sleeps.
    let done = wait_task(cluster.url(&survivor), &task);
    assert_eq!(done["State"], "Failed", "{done}");
    assert_eq!(done["ServerNode"], survivor.as_str());
    let taken = block_on(store.task_generation(&task)).unwrap().unwrap();
    assert_eq!(taken, held + 1);
    let before_waking = gapless_log(&store, &task);
    once(
        &before_waking,
        &format!("took this deployment over from {owner}"),
    );

    // Woken: its script printed on meanwhile, so it has lines to write,
    // and is refused.
    cluster.server(&owner).signal("-CONT");
    wait_until("the woken node notices it lost the task", || {
        cluster
            .server(&owner)
            .recent_output()
            .contains("another node took this task over")
    });
    // Its script ticks on for a few seconds more; let it try.
    std::thread::sleep(Duration::from_secs(3));
    let after_waking = gapless_log(&store, &task);
    assert_eq!(
        after_waking, before_waking,
        "the woken node wrote to the log"
    );
    let t = cluster.task(&survivor, &task);
    assert_eq!(
        (&t["State"], &t["ServerNode"], &t["CompletedTime"]),
        (&done["State"], &done["ServerNode"], &done["CompletedTime"]),
        "the woken node changed the task"
    );
    let takeover = before_waking
        .iter()
        .position(|m| m.contains("took this deployment over"))
        .unwrap() as i64
        + 1;
    for (seq, generation) in block_on(store.log_line_generations(&task)).unwrap() {
        let expected = if seq < takeover { held } else { taken };
        assert_eq!(
            generation, expected,
            "line {seq} was written under generation {generation}"
        );
    }
}

/// A deployment running on n1 reaches a polling agent connected to n2 (n2
/// is drained, so it runs nothing itself): each request goes through the
/// database to n2 and back. The script runs once, its lines arrive in
/// order, once each, and its output variable reaches the next step.
#[test]
fn fault_a_step_on_one_node_reaches_a_polling_agent_connected_to_another() {
    let Some(cluster) = Cluster::start("relay_polling") else {
        return;
    };
    cluster.drain("n2");
    let dirs = tempfile::tempdir().unwrap();
    let agent = cluster.agent("n2", &dirs.path().join("a"), "far", true);
    let ran = cluster.marker("ran");
    let task = cluster.deploy(
        "Relayed",
        vec![
            agent_step(
                "Far",
                &format!(
                    "echo ran >> {ran}\nfor i in $(seq 1 20); do echo far line $i; done\n\
                     echo \"##octopus[setVariable name='RmFy' value='bmVhcg==']\""
                ),
            ),
            script_step(
                "After",
                "echo \"after saw #{Octopus.Action[Far].Output.Far}\"",
            ),
        ],
        false,
    );
    let done = wait_task(cluster.url("n1"), &task);
    assert_eq!(done["State"], "Success", "{done}");
    assert_eq!(done["ServerNode"], "n1");
    assert_eq!(cluster.runs("ran"), 1);
    let messages = gapless_log(&cluster.store(), &task);
    let far: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("far line"))
        .collect();
    let expected: Vec<String> = (1..=20).map(|i| format!("far line {i}")).collect();
    assert_eq!(far, expected.iter().collect::<Vec<_>>(), "{messages:#?}");
    once(&messages, "after saw near");
    // n2 is recorded as holding the agent's connection, until it drops.
    let machine = api(cluster.url("n1"), "GET", "/api/machines?name=far", None);
    let thumbprint = machine["Items"][0]["Endpoint"]["Thumbprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = cluster.store();
    let holder = || block_on(store.polling_agent_holder(&thumbprint, 60_000, "n1")).unwrap();
    assert_eq!(holder().as_deref(), Some("n2"));
    agent.kill();
    wait_until("the dropped connection is forgotten", || holder().is_none());
}

/// Runs `body` (which appends to the marker `started` first) on the agent,
/// kills the node running the deployment once the script has printed a
/// few lines, and checks that another node re-attached to the script:
/// the deployment succeeds there, the script ran once, and each of its 40
/// lines is in the log once, in order, with no gap in the log.
fn killed_while_an_agent_runs_a_script(cluster: &mut Cluster) {
    let started = cluster.marker("started");
    let task = cluster.deploy(
        "Attached",
        vec![agent_step(
            "Long",
            &format!(
                "echo ran >> {started}\nfor i in $(seq 1 40); do echo tick $i; sleep 0.1; done"
            ),
        )],
        false,
    );
    let owner = cluster.runner_of(&task);
    let store = cluster.store();
    wait_until("the script's lines reach the log", || {
        block_on(store.log_lines_after(&task, 0, 100_000))
            .unwrap()
            .iter()
            .any(|l| l.message == "tick 3")
    });
    kill(cluster.server(&owner));
    let survivor = cluster
        .nodes
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| *n != owner && !cluster.drained.contains(n))
        .unwrap();
    let done = wait_task(cluster.url(&survivor), &task);
    assert_eq!(done["State"], "Success", "{done}");
    assert_ne!(done["ServerNode"], owner.as_str());
    assert_eq!(cluster.runs("started"), 1, "the script ran again");
    let messages = gapless_log(&store, &task);
    let ticks: Vec<&String> = messages.iter().filter(|m| m.starts_with("tick ")).collect();
    let expected: Vec<String> = (1..=40).map(|i| format!("tick {i}")).collect();
    assert_eq!(ticks, expected.iter().collect::<Vec<_>>(), "{messages:#?}");
    once(&messages, "its scripts on agents are re-attached");
    once(&messages, "Running a Bash script");
    cluster.nodes.retain(|(n, _)| *n != owner);
}

/// (b) The node running a deployment is killed while its script runs on a
/// listening agent: another node re-attaches to the script by its command
/// id and the log goes on from the next line.
#[test]
fn fault_a_node_killed_while_a_listening_agent_runs_a_script_is_reattached() {
    let Some(mut cluster) = Cluster::start_nodes("reattach_listening", &["n1", "n2", "n3"]) else {
        return;
    };
    let dirs = tempfile::tempdir().unwrap();
    let _agent = cluster.agent("n1", &dirs.path().join("a"), "near", false);
    killed_while_an_agent_runs_a_script(&mut cluster);
}

/// (c) The node running a deployment is killed while its script runs on a
/// polling agent connected to a third node (drained, so it runs nothing
/// itself): the node that takes the task over reaches the agent through
/// that node and re-attaches to the script.
#[test]
fn fault_a_node_killed_while_a_polling_agent_of_another_node_runs_a_script_is_reattached() {
    let Some(mut cluster) = Cluster::start_nodes("reattach_polling", &["n1", "n2", "n3"]) else {
        return;
    };
    cluster.drain("n3");
    cluster.drained.push("n3".into());
    let dirs = tempfile::tempdir().unwrap();
    let _agent = cluster.agent("n3", &dirs.path().join("a"), "far", true);
    killed_while_an_agent_runs_a_script(&mut cluster);
}

/// A zip package of `files`, named as the feed expects.
fn zip_package(dir: &std::path::Path, name: &str, files: &[(&str, Vec<u8>)]) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (file, bytes) in files {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(0o644);
        zip.start_file(*file, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// (d) The node running a deployment is killed while it uploads the
/// package to a listening agent: another node re-attaches to the run, goes
/// on with the upload from where the agent's copy stands (it sends less
/// than the whole file), and the package's script runs once.
#[test]
fn fault_a_node_killed_while_a_package_uploads_to_an_agent_goes_on_from_the_agents_copy() {
    let Some(mut cluster) = Cluster::start_nodes("reattach_upload", &["n1", "n2", "n3"]) else {
        return;
    };
    let dirs = tempfile::tempdir().unwrap();
    let agent_dir = dirs.path().join("a");
    let _agent = cluster.agent("n1", &agent_dir, "near", false);
    let deployed = cluster.marker("deployed");
    // Large and incompressible, so the upload takes a while.
    let zip = zip_package(
        dirs.path(),
        "Acme.Big.1.0.0.zip",
        &[
            (
                "Deploy.sh",
                format!("echo ran >> {deployed}\necho deployed the big package\n").into_bytes(),
            ),
            ("data/blob.bin", support::noise(48 << 20, 11)),
        ],
    );
    let pushed = agent_cli(
        cluster.server("n1"),
        &["package", "push", zip.to_str().unwrap()],
    );
    assert!(pushed.status.success(), "{pushed:?}");
    let url = cluster.url("n1");
    let project = api(
        url,
        "POST",
        "/api/projects",
        Some(json!({"Name": "Big", "ProjectGroupId": "ProjectGroups-1",
            "LifecycleId": "Lifecycles-1"})),
    );
    let id = project["Id"].as_str().unwrap();
    let process = json!({"Version": 0, "Steps": [{
        "Name": "Deploy big",
        "Properties": {"Octopus.Action.TargetRoles": "web"},
        "Actions": [{
            "Name": "Deploy big",
            "ActionType": "Octopus.TentaclePackage",
            "Packages": [{"Name": "", "PackageId": "Acme.Big", "FeedId": "feeds-builtin",
                "AcquisitionLocation": "Server"}],
            "Properties": {}
        }]
    }]});
    api(
        url,
        "PUT",
        &format!("/api/projects/{id}/deploymentprocesses"),
        Some(process),
    );
    api(
        url,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": "Big", "ReleaseVersion": "1.0.0", "PackageVersion": "1.0.0"})),
    );
    let d = api(
        url,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(json!({"ProjectName": "Big", "ReleaseVersion": "1.0.0",
            "EnvironmentNames": ["Dev"]})),
    );
    let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = cluster.runner_of(&task);
    let partial = agent_dir.join("files").join("partial");
    let size = std::fs::metadata(&zip).unwrap().len();
    wait_until("the upload is under way", || {
        std::fs::read_dir(&partial).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.metadata()
                    .is_ok_and(|m| m.len() > 0 && m.len() < size / 2)
            })
        })
    });
    kill(cluster.server(&owner));
    let survivor = cluster.other(&owner).to_owned();
    let done = wait_task(cluster.url(&survivor), &task);
    assert_eq!(done["State"], "Success", "{done}");
    assert_ne!(done["ServerNode"], owner.as_str());
    assert_eq!(cluster.runs("deployed"), 1);
    let messages = gapless_log(&cluster.store(), &task);
    once(&messages, "deployed the big package");
    once(&messages, "its scripts on agents are re-attached");
    let sent = messages
        .iter()
        .find(|m| m.starts_with("Sent Acme.Big 1.0.0 to near"))
        .unwrap_or_else(|| panic!("no upload line: {messages:#?}"));
    let bytes: u64 = sent
        .rsplit_once('(')
        .and_then(|(_, b)| b.split(' ').next())
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {sent}"));
    assert!(
        bytes < size,
        "the whole package was sent again ({bytes} of {size} bytes): {sent}"
    );
    cluster.nodes.retain(|(n, _)| *n != owner);
}
