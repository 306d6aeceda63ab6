//! Hosted workers on a real `cuttle host`: instances have no built-in
//! worker, so a step without a worker of its own runs on a worker process
//! the host leases to the instance, in a sandbox of its own; a script there
//! cannot read another instance's files, the host's data directory, or what
//! an earlier lease left; a worker is wiped when its lease ends.

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::host::{on_both_hosts, TestHost};

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// A host with `workers` hosted workers that idle for `idle` at most.
fn host_with(dir: &Path, db: Option<&str>, workers: &str, idle: &str) -> TestHost {
    TestHost::start_with_env(
        dir,
        db,
        &[
            ("CUTTLE_HOSTED_WORKERS", workers),
            ("CUTTLE_HOSTED_WORKER_IDLE", idle),
        ],
    )
}

/// Creates instance `name` with environment Dev; returns its API key.
fn instance(host: &TestHost, name: &str) -> String {
    let made = host.create(name);
    let key = str_of(&made, "ApiKey").to_owned();
    host.api(
        name,
        &key,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    key
}

/// A project whose one step runs `script` (with no worker pool chosen),
/// released and deployed to Dev; the finished task and its log's lines.
fn deploy(host: &TestHost, name: &str, key: &str, project: &str, script: &str) -> (Value, String) {
    let task = start_deployment(host, name, key, project, script);
    finished(host, name, key, &task)
}

/// As [`deploy`], without waiting for it: the deployment's task id.
fn start_deployment(host: &TestHost, name: &str, key: &str, project: &str, script: &str) -> String {
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
    str_of(&d["DeploymentServerTasks"][0], "ServerTaskId").to_owned()
}

/// Task `task`'s log, its lines joined, as it is now.
fn task_log(host: &TestHost, name: &str, key: &str, task: &str) -> String {
    let details = host.api(
        name,
        key,
        "GET",
        &format!("/api/tasks/{task}/details"),
        None,
    );
    let mut lines = vec![];
    for root in details["ActivityLogs"].as_array().into_iter().flatten() {
        collect_lines(root, &mut lines);
    }
    lines.join("\n")
}

/// Waits for task `task` to finish; the task and its log.
fn finished(host: &TestHost, name: &str, key: &str, task: &str) -> (Value, String) {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let t = host.api(name, key, "GET", &format!("/api/tasks/{task}"), None);
        if t["IsCompleted"] == true {
            return (t, task_log(host, name, key, task));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name}: task {task} did not finish");
}

fn collect_lines(activity: &Value, lines: &mut Vec<String>) {
    for element in activity["LogElements"].as_array().into_iter().flatten() {
        if let Some(text) = element["MessageText"].as_str() {
            lines.push(text.to_owned());
        }
    }
    for child in activity["Children"].as_array().into_iter().flatten() {
        collect_lines(child, lines);
    }
}

/// The value a script printed as `key=value`.
fn printed<'a>(log: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    log.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the script printed no {key}=…:\n{log}"))
}

fn runs_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Processes running as `uid` on this machine.
fn processes_of(uid: u32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::metadata(e.path())
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Waits until `what` holds, for up to `limit`.
fn eventually(limit: Duration, mut what: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    what()
}

fn hosted_leases(host: &TestHost) -> Vec<Value> {
    let (status, body) = host.control("GET", "/hosted-workers", None);
    assert_eq!(status, StatusCode::OK, "{body}");
    body["Items"].as_array().cloned().unwrap_or_default()
}

/// The script's own identity and place, and a file in each place it can
/// write, plus a process left running: all of it must go with the lease.
/// The script's working directory is below the worker's scratch directory
/// (`…/work/<step>`), which lasts as long as the lease.
const LEAVE_BEHIND: &str = r#"echo "uid=$(id -u)"
scratch=${PWD%/work/*}
# Named for this lease, so no file left on the machine by others is taken for it.
tag=${scratch##*/}
echo "scratch=$scratch"
echo lease-one-secret > "$scratch/left-in-scratch"
echo lease-one-secret > /tmp/left-in-tmp
if (echo lease-one-secret > "/var/tmp/left-in-var-tmp-$tag") 2>/dev/null; then echo "var-tmp=writable"; else echo "var-tmp=read-only"; fi
setsid sleep 300 >/dev/null 2>&1 < /dev/null &
echo left-running"#;

#[test]
fn a_script_on_a_hosted_worker_sees_no_other_instance_no_host_data_and_no_earlier_lease() {
    on_both_hosts("hosted_worker_isolation", |dir, db| {
        let host = host_with(dir, db, "2", "10m");
        let alpha = instance(&host, "alpha");
        let beta = instance(&host, "beta");

        // A deployment in each runs on a hosted worker of its own.
        let (task, log_a) = deploy(&host, "alpha", &alpha, "Leaver", LEAVE_BEHIND);
        assert_eq!(task["State"], "Success", "{task}\n{log_a}");
        assert!(
            log_a.contains("Running on the hosted worker hosted-worker-"),
            "{log_a}"
        );
        assert_eq!(printed(&log_a, "var-tmp"), "read-only", "{log_a}");
        let (task, log_b) = deploy(
            &host,
            "beta",
            &beta,
            "Keeper",
            "scratch=${PWD%/work/*}\necho \"scratch=$scratch\"\necho beta-secret > \"$scratch/beta-secret\"",
        );
        assert_eq!(task["State"], "Success", "{task}\n{log_b}");
        let home_a = printed(&log_a, "scratch");
        let home_b = printed(&log_b, "scratch");
        assert_ne!(
            home_a, home_b,
            "each lease has a scratch directory of its own"
        );
        let uid_a: u32 = printed(&log_a, "uid").parse().unwrap();
        if runs_as_root() {
            assert!(
                uid_a >= 0x7000_0000,
                "a worker of a host run as root has a uid of its own, not {uid_a}"
            );
        } else {
            eprintln!("the host does not run as root here: workers run as its user");
        }
        // Both are there to read, for anyone outside the sandbox.
        assert!(
            Path::new(home_a).join("left-in-scratch").is_file(),
            "{log_a}"
        );
        // The sandbox's /tmp is the worker's own, in its scratch directory.
        assert!(
            Path::new(home_a).join("tmp/left-in-tmp").is_file(),
            "{log_a}"
        );
        assert!(!Path::new("/tmp/left-in-tmp").exists());
        assert!(Path::new(home_b).join("beta-secret").is_file());
        assert!(dir.join("instances/beta/master.key").is_file());
        let leases = hosted_leases(&host);
        assert_eq!(leases.len(), 2, "{leases:?}");

        // Alpha's lease ends: its worker is wiped.
        let (status, body) = host.control("DELETE", "/instances/alpha/hosted-worker", None);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            !Path::new(home_a).exists(),
            "the scratch directory is removed"
        );
        if runs_as_root() {
            assert!(
                eventually(Duration::from_secs(5), || processes_of(uid_a).is_empty()),
                "the worker's processes are killed, the one its script left too: {:?}",
                processes_of(uid_a)
            );
        }
        let workers = host.api("alpha", &alpha, "GET", "/api/workers", None);
        assert_eq!(workers["Items"], json!([]), "its registration is removed");

        // A new lease reads nothing of the old one, of beta, or of the host.
        let data = dir.display();
        let tag = home_a.rsplit('/').next().unwrap_or_default();
        let probe = format!(
            r#"for f in "{home_a}/left-in-scratch" "{home_a}/tmp/left-in-tmp" /tmp/left-in-tmp "/var/tmp/left-in-var-tmp-{tag}" "{home_b}/beta-secret" "{data}/instances/beta/master.key" "{data}/instances/alpha/master.key" "{data}/host.db"; do
  if cat "$f" >/dev/null 2>&1; then echo "READ $f"; else echo "DENIED $f"; fi
done
if [ -e "{data}/instances/beta" ]; then echo "beta-dir=seen"; else echo "beta-dir=hidden"; fi
echo "host-data-entries=$(ls -A "{data}" 2>/dev/null | wc -l)"
echo "scratch=${{PWD%/work/*}}""#
        );
        let (task, log) = deploy(&host, "alpha", &alpha, "Prober", &probe);
        assert_eq!(task["State"], "Success", "{task}\n{log}");
        assert!(!log.contains("READ "), "{log}");
        assert_eq!(log.matches("DENIED ").count(), 8, "{log}");
        assert_eq!(printed(&log, "beta-dir"), "hidden", "{log}");
        assert_eq!(printed(&log, "host-data-entries"), "0", "{log}");
        assert_ne!(
            printed(&log, "scratch"),
            home_a,
            "a new lease, a new directory"
        );

        for name in ["alpha", "beta"] {
            let (status, body) = host.control("DELETE", &format!("/instances/{name}"), None);
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        assert_eq!(hosted_leases(&host), Vec::<Value>::new());
        assert!(
            !Path::new(home_b).exists(),
            "deleting an instance wipes its worker"
        );
    });
}

#[test]
fn an_idle_hosted_worker_is_wiped_and_the_next_step_gets_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with(dir.path(), None, "1", "1s");
    let key = instance(&host, "idler");
    let (task, log) = deploy(&host, "idler", &key, "First", LEAVE_BEHIND);
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    let home = printed(&log, "scratch").to_owned();
    assert!(Path::new(&home).join("left-in-scratch").is_file(), "{log}");
    let uid: u32 = printed(&log, "uid").parse().unwrap();
    let leases = hosted_leases(&host);
    let uri = leases
        .first()
        .map(|l| str_of(l, "Uri").to_owned())
        .unwrap_or_default();

    assert!(
        eventually(Duration::from_secs(15), || hosted_leases(&host).is_empty()),
        "the lease ends after its idle time: {:?}",
        hosted_leases(&host)
    );
    // The lease is gone from the list as its wipe begins.
    assert!(
        eventually(Duration::from_secs(10), || !Path::new(&home).exists()),
        "its directory is removed"
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            host.api("idler", &key, "GET", "/api/workers", None)["Items"] == json!([])
        }),
        "its registration is removed"
    );
    if let Some(port) = uri.trim_end_matches('/').rsplit(':').next() {
        assert!(
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
            "nothing listens where it did ({uri})"
        );
    }
    if runs_as_root() {
        assert!(
            eventually(Duration::from_secs(5), || processes_of(uid).is_empty()),
            "{:?}",
            processes_of(uid)
        );
    }

    let (task, log) = deploy(
        &host,
        "idler",
        &key,
        "Second",
        "scratch=${PWD%/work/*}\necho \"scratch=$scratch\"\nls -A \"$scratch\" /tmp",
    );
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert_ne!(printed(&log, "scratch"), home);
    assert!(!log.contains("left-in-"), "{log}");
}

#[test]
fn without_a_free_hosted_worker_a_step_fails_saying_so_and_nothing_runs_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran-on-the-host");
    let script = format!("touch '{}'\necho ran", marker.display());

    // No hosted workers at all: the step fails, telling to register a worker.
    {
        let host = host_with(&dir.path().join("none"), None, "0", "10m");
        let key = instance(&host, "lonely");
        let (task, log) = deploy(&host, "lonely", &key, "Web", &script);
        assert_eq!(task["State"], "Failed", "{task}\n{log}");
        assert!(log.contains("no built-in worker"), "{log}");
        assert!(
            log.contains("Register a worker")
                || log.contains("register a worker")
                || log.contains("Register a worker of your own"),
            "{log}"
        );
        assert!(log.contains("the host offers no hosted workers"), "{log}");
        assert!(!log.contains("ran"), "{log}");
        assert!(!marker.exists(), "the script ran on the host");
        assert!(
            host.recent_output().contains("built-in worker: none"),
            "{}",
            host.recent_output()
        );
        // The control plane says there are none to lease.
        let (status, body) = host.control("POST", "/instances/lonely/hosted-worker", None);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    // One hosted worker, leased to another instance, and steps told not to
    // wait for one: no worker is free.
    let host = TestHost::start_with_env(
        &dir.path().join("one"),
        None,
        &[
            ("CUTTLE_HOSTED_WORKERS", "1"),
            ("CUTTLE_HOSTED_WORKER_IDLE", "10m"),
            ("CUTTLE_HOSTED_WORKER_WAIT", "0"),
        ],
    );
    let first = instance(&host, "first");
    let second = instance(&host, "second");
    let (status, lease) = host.control("POST", "/instances/first/hosted-worker", None);
    assert_eq!(status, StatusCode::CREATED, "{lease}");
    assert_eq!(lease["Instance"], "first");
    let workers = host.api("first", &first, "GET", "/api/workers", None);
    assert_eq!(workers["Items"][0]["Name"], lease["Id"], "{workers}");
    let (status, body) = host.control("POST", "/instances/second/hosted-worker", None);
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (task, log) = deploy(&host, "second", &second, "Web", &script);
    assert_eq!(task["State"], "Failed", "{task}\n{log}");
    assert!(log.contains("no hosted worker is free"), "{log}");
    assert!(!marker.exists(), "the script ran on the host");

    // Bad requests change nothing.
    let (status, _) = host.control("POST", "/instances/nobody/hosted-worker", None);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = host.control("DELETE", "/instances/second/hosted-worker", None);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = host.control_as(
        Some("wrong-token-wrong-token-wrong"),
        "POST",
        "/instances/second/hosted-worker",
        None,
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(hosted_leases(&host).len(), 1);

    // Once the first's lease ends, the second's step runs on the worker.
    let (status, _) = host.control("DELETE", "/instances/first/hosted-worker", None);
    assert_eq!(status, StatusCode::OK);
    let (task, log) = deploy(&host, "second", &second, "Api", "echo on-a-hosted-worker");
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert!(log.contains("on-a-hosted-worker"), "{log}");
    assert_eq!(hosted_leases(&host)[0]["Instance"], "second");
}

/// Whether process `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

#[test]
fn a_killed_worker_is_replaced_and_a_killed_host_leaves_no_worker_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = host_with(dir.path(), None, "1", "10m");
    let key = instance(&host, "sturdy");
    let (status, lease) = host.control("POST", "/instances/sturdy/hosted-worker", None);
    assert_eq!(status, StatusCode::CREATED, "{lease}");
    let pid = lease["Pid"].as_u64().expect("the worker's pid");
    let first = str_of(&lease, "Id").to_owned();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // The next step finds it dead and runs on a new worker.
    let (task, log) = deploy(&host, "sturdy", &key, "After", "echo survived");
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert!(log.contains("survived"), "{log}");
    let leases = hosted_leases(&host);
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_ne!(str_of(&leases[0], "Id"), first, "{leases:?}");
    let workers = host.api("sturdy", &key, "GET", "/api/workers", None);
    assert_eq!(
        workers["Items"].as_array().map(Vec::len),
        Some(1),
        "only the live worker is registered: {workers}"
    );

    // The host killed outright: its worker does not outlive it.
    let pid = leases[0]["Pid"].as_u64().expect("the worker's pid");
    let uri = str_of(&leases[0], "Uri").to_owned();
    let port = uri
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    host.kill();
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "the worker outlived its host"
    );
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect(
            format!("127.0.0.1:{port}")
        )
        .is_err()),
        "something still listens at {uri}"
    );

    let left = scratch_dirs(dir.path());
    assert_eq!(
        left.len(),
        1,
        "a host killed outright leaves its directory: {left:?}"
    );

    // Restarted, the host drops the dead worker's registration and
    // directory; the next step runs on a fresh one.
    let host = host_with(dir.path(), None, "1", "10m");
    let (task, log) = deploy(&host, "sturdy", &key, "Restarted", "echo again");
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    let workers = host.api("sturdy", &key, "GET", "/api/workers", None);
    assert_eq!(
        workers["Items"].as_array().map(Vec::len),
        Some(1),
        "{workers}"
    );
    let now = scratch_dirs(dir.path());
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(!left.iter().any(|d| now.contains(d)), "{left:?} remain");
}

/// The worker directories in the host's default scratch directory.
fn scratch_dirs(data_dir: &Path) -> Vec<String> {
    use sha2::Digest as _;
    let data_dir = std::fs::canonicalize(data_dir).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(
        data_dir.as_os_str().as_encoded_bytes(),
    ));
    let root = std::env::temp_dir().join(format!("cuttle-hosted-workers-{}", &digest[..12]));
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// An instance that falls asleep gives its hosted worker back first: the
/// worker is wiped (directory, registration) while the instance's database
/// is still open, and a step after the wake runs on a fresh worker.
#[test]
fn an_instance_falling_asleep_gives_its_hosted_worker_back() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with_env(
        dir.path(),
        None,
        &[
            ("CUTTLE_HOSTED_WORKERS", "1"),
            ("CUTTLE_HOSTED_WORKER_IDLE", "10m"),
            ("CUTTLE_HOST_IDLE_AFTER", "2s"),
        ],
    );
    let key = instance(&host, "sleeper");
    let (task, log) = deploy(&host, "sleeper", &key, "First", LEAVE_BEHIND);
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    let home = printed(&log, "scratch").to_owned();
    assert_eq!(hosted_leases(&host).len(), 1);

    let asleep = eventually(Duration::from_secs(30), || {
        let (_, view) = host.control("GET", "/instances/sleeper", None);
        view["State"] == "Asleep"
    });
    assert!(asleep, "{}", host.recent_output());
    assert!(
        hosted_leases(&host).is_empty(),
        "the lease ends before the instance sleeps: {:?}",
        hosted_leases(&host)
    );
    assert!(
        eventually(Duration::from_secs(10), || !Path::new(&home).exists()),
        "its directory is removed"
    );

    // The request wakes it; the worker's registration went with the lease.
    assert_eq!(
        host.api("sleeper", &key, "GET", "/api/workers", None)["Items"],
        json!([])
    );
    let (task, log) = deploy(
        &host,
        "sleeper",
        &key,
        "Second",
        "scratch=${PWD%/work/*}\necho \"scratch=$scratch\"",
    );
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert_ne!(printed(&log, "scratch"), home);
}

/// The control plane's count of steps waiting for a hosted worker.
fn waiting(host: &TestHost) -> u64 {
    let (status, body) = host.control("GET", "/hosted-workers", None);
    assert_eq!(status, StatusCode::OK, "{body}");
    body["Waiting"].as_u64().expect("a Waiting count")
}

/// With its one worker leased to another instance, a step waits (its log
/// says so) instead of failing: canceled, its task ends and leaves the
/// queue; otherwise it takes the worker as soon as the lease ends.
#[test]
fn a_step_waits_for_a_busy_hosted_worker_and_a_cancel_ends_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with(dir.path(), None, "1", "10m");
    instance(&host, "first");
    let second = instance(&host, "second");
    let (status, lease) = host.control("POST", "/instances/first/hosted-worker", None);
    assert_eq!(status, StatusCode::CREATED, "{lease}");

    // Waiting, then canceled: the task ends, nothing waits any more, and
    // the worker is still the first's.
    let task = start_deployment(&host, "second", &second, "Canceled", "echo never");
    assert!(
        eventually(Duration::from_secs(30), || waiting(&host) == 1),
        "the step does not wait: {}",
        task_log(&host, "second", &second, &task)
    );
    assert!(
        eventually(Duration::from_secs(10), || task_log(
            &host, "second", &second, &task
        )
        .contains("Waiting for a hosted worker")),
        "{}",
        task_log(&host, "second", &second, &task)
    );
    host.api(
        "second",
        &second,
        "POST",
        &format!("/api/tasks/{task}/cancel"),
        None,
    );
    let (t, log) = finished(&host, "second", &second, &task);
    assert_eq!(t["State"], "Canceled", "{t}\n{log}");
    assert!(!log.contains("never"), "{log}");
    assert_eq!(waiting(&host), 0);
    let leases = hosted_leases(&host);
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0]["Instance"], "first");

    // Waiting, then the first's lease ends: the step runs on the worker.
    let task = start_deployment(&host, "second", &second, "Queued", "echo ran-after-waiting");
    assert!(
        eventually(Duration::from_secs(30), || waiting(&host) == 1),
        "{}",
        task_log(&host, "second", &second, &task)
    );
    let t = host.api(
        "second",
        &second,
        "GET",
        &format!("/api/tasks/{task}"),
        None,
    );
    assert_eq!(t["IsCompleted"], false, "{t}");
    let (status, _) = host.control("DELETE", "/instances/first/hosted-worker", None);
    assert_eq!(status, StatusCode::OK);
    let (t, log) = finished(&host, "second", &second, &task);
    assert_eq!(t["State"], "Success", "{t}\n{log}");
    assert!(log.contains("Waiting for a hosted worker"), "{log}");
    assert!(log.contains("ran-after-waiting"), "{log}");
    assert_eq!(waiting(&host), 0);
    assert_eq!(hosted_leases(&host)[0]["Instance"], "second");
}

/// Two instances' workers start at once: the host's state shows both
/// starting together (each start pauses, as a test asks, before its
/// process is started), and both leases are made.
#[test]
fn two_instances_lease_workers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with_env(
        dir.path(),
        None,
        &[
            ("CUTTLE_HOSTED_WORKERS", "2"),
            ("CUTTLE_HOSTED_WORKER_IDLE", "10m"),
            ("CUTTLE_HOST_TEST_PAUSE_WORKER_START_MS", "3000"),
        ],
    );
    instance(&host, "left");
    instance(&host, "right");
    let both_starting = std::thread::scope(|s| {
        let leases: Vec<_> = ["left", "right"]
            .into_iter()
            .map(|name| {
                let host = &host;
                s.spawn(move || {
                    host.control("POST", &format!("/instances/{name}/hosted-worker"), None)
                })
            })
            .collect();
        let both = eventually(Duration::from_secs(20), || {
            let leases = hosted_leases(&host);
            leases.len() == 2 && leases.iter().all(|l| l["State"] == "Starting")
        });
        for lease in leases {
            let (status, body) = lease.join().unwrap();
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["State"], "Leased", "{body}");
        }
        both
    });
    assert!(
        both_starting,
        "the two workers never started at once:\n{}",
        host.recent_output()
    );
    let leases = hosted_leases(&host);
    assert_eq!(leases.len(), 2, "{leases:?}");
    assert!(leases.iter().all(|l| l["State"] == "Leased"), "{leases:?}");
}
