//! Hosted workers on a real `cuttle host`: instances have no built-in
//! worker, so a step without a worker of its own runs on a worker process
//! the host leases to the instance, in a sandbox of its own; a script there
//! cannot read another instance's files, the host's data directory, or what
//! an earlier lease left; a worker is wiped when its lease ends.

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt as _;
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
fn a_host_whose_binary_lies_below_tmp_in_a_closed_directory_still_starts_workers() {
    // A worker's sandbox has a /tmp of its own, and its uid cannot enter a
    // directory only root can: the host must not run workers from where
    // its own binary happens to be.
    let bin_dir = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let binary = bin_dir.path().join("cuttle");
    std::fs::copy(support::BIN, &binary).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_binary(&binary, dir.path(), None, &[]);
    let key = instance(&host, "tmpbin");
    let (task, log) = deploy(
        &host,
        "tmpbin",
        &key,
        "Hello",
        "echo \"hello from $(id -u)\"",
    );
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert!(log.contains("hello from"), "{log}");
    // Each lease runs the host's copy, which the script cannot change.
    let (task, log) = deploy(
        &host,
        "tmpbin",
        &key,
        "Tamper",
        "scratch=${PWD%/work/*}\nif echo x >> \"$scratch/cuttle\"; then echo changed; else echo refused; fi",
    );
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert!(log.contains("refused") && !log.contains("changed"), "{log}");
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
    let port = port_of(&uri);
    let scratch = scratch_root(dir.path());
    host.kill();
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "the worker outlived its host"
    );
    // Nor does its way out (slirp4netns), which names the scratch root.
    assert!(
        eventually(Duration::from_secs(10), || processes_naming(&scratch)
            .is_empty()),
        "processes outlived the host: {:?}",
        processes_naming(&scratch)
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

/// The host's default scratch directory.
fn scratch_root(data_dir: &Path) -> String {
    use sha2::Digest as _;
    let data_dir = std::fs::canonicalize(data_dir).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(
        data_dir.as_os_str().as_encoded_bytes(),
    ));
    std::env::temp_dir()
        .join(format!("cuttle-hosted-workers-{}", &digest[..12]))
        .display()
        .to_string()
}

/// The processes whose command line names `text`.
fn processes_naming(text: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(text).then_some(cmdline)
        })
        .collect()
}

/// The worker directories in the host's default scratch directory.
fn scratch_dirs(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(scratch_root(data_dir))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        // The workers' directories, not the binary they share.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
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

/// A server in a network namespace of the test's own, joined to the host by
/// a veth pair: an address off the host's loopback, as the rest of the
/// world is to a worker.
struct Outside {
    ns: String,
    address: String,
    server: std::process::Child,
}

impl Outside {
    /// [`Outside::start`], tried a few times: `ip netns exec` right after
    /// `ip netns add` was seen to fail now and then ("setting the network
    /// namespace … Invalid argument"). Where none can be made, fails the
    /// test if isolation is required, else says `unchecked` and why.
    fn start_or_say(require: bool, unchecked: &str) -> Option<Outside> {
        let outside = (0..3)
            .map(|_| Outside::start())
            .find(Result::is_ok)
            .unwrap_or_else(Outside::start);
        match outside {
            Ok(outside) => Some(outside),
            Err(e) if !require => {
                eprintln!("{unchecked}: no network namespace for an outside server: {e}");
                None
            }
            Err(e) => panic!("a network namespace for the outside server: {e}"),
        }
    }

    /// `None` (and why) where this machine cannot make one.
    fn start() -> Result<Outside, String> {
        let tag = format!("{:04x}", rand_u16());
        let ns = format!("cuttle-out-{tag}");
        let subnet = 1 + u16::from_str_radix(&tag[..2], 16).unwrap_or(0) % 250;
        let (host_if, ns_if) = (format!("cth{tag}"), format!("ctn{tag}"));
        let address = format!("10.213.{subnet}.2");
        let ip = |args: &str| {
            let out = std::process::Command::new("ip")
                .args(args.split_whitespace())
                .output()
                .map_err(|e| format!("ip {args}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {args}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        ip(&format!("netns add {ns}"))?;
        let made = (|| {
            ip(&format!("link add {host_if} type veth peer name {ns_if}"))?;
            ip(&format!("link set {ns_if} netns {ns}"))?;
            ip(&format!("addr add 10.213.{subnet}.1/24 dev {host_if}"))?;
            ip(&format!("link set {host_if} up"))?;
            ip(&format!(
                "netns exec {ns} ip addr add {address}/24 dev {ns_if}"
            ))?;
            ip(&format!("netns exec {ns} ip link set {ns_if} up"))?;
            ip(&format!("netns exec {ns} ip link set lo up"))
        })();
        let server = made.and_then(|()| {
            let code = format!(
                "import socket\ns=socket.socket()\ns.bind(('{address}',8000))\ns.listen()\n\
                 print('ready',flush=True)\nwhile True:\n c,_=s.accept()\n c.sendall(b'outside-ok\\n')\n c.close()"
            );
            let mut child = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-c", &code])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("the outside server: {e}"))?;
            let mut ready = String::new();
            use std::io::BufRead as _;
            let _ = std::io::BufReader::new(child.stdout.take().expect("piped"))
                .read_line(&mut ready);
            if ready.trim() == "ready" {
                Ok(child)
            } else {
                let _ = child.kill();
                Err("the outside server did not start".to_owned())
            }
        });
        match server {
            Ok(server) => Ok(Outside {
                ns,
                address,
                server,
            }),
            Err(e) => {
                let _ = ip(&format!("netns del {ns}"));
                Err(e)
            }
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // The veth pair goes with the namespace.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().rotate_left(16)) as u16
}

fn port_of(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_script_on_a_hosted_worker_reaches_nothing_on_the_hosts_loopback_but_gets_out() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with(dir.path(), None, "2", "10m");
    let require = std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_some();
    if !host
        .recent_output()
        .contains("a network of its own per step")
    {
        assert!(
            !require,
            "hosted workers share the host's network here:\n{}",
            host.recent_output()
        );
        eprintln!("skipped: hosted workers cannot have a network of their own here (no slirp4netns or namespaces)");
        return;
    }
    let outside = Outside::start_or_say(require, "the way out is not checked");
    let alpha = instance(&host, "alpha");
    let _beta = instance(&host, "beta");
    // Beta's worker listens on the host's loopback too.
    let (status, body) = host.control("POST", "/instances/beta/hosted-worker", None);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let beta_worker = hosted_leases(&host)
        .iter()
        .find(|l| l["Instance"] == "beta")
        .map(|l| port_of(str_of(l, "Uri")))
        .expect("beta's lease");
    let database = std::env::var("CUTTLE_TEST_DATABASE_URL")
        .ok()
        .and_then(|url| {
            let after_at = url.rsplit('@').next()?.to_owned();
            let host_port = after_at.split('/').next()?.to_owned();
            host_port.rsplit(':').next().map(str::to_owned)
        })
        .unwrap_or_else(|| "5432".to_owned());
    let targets = [
        ("database", database),
        ("control", port_of(&host.control)),
        ("public", port_of(&host.url)),
        ("other-worker", beta_worker),
    ];
    let mut script = String::from(
        "try() { if timeout 3 bash -c \"exec 3<>/dev/tcp/$2/$3\" 2>/dev/null; then echo \"REACHED $1 $2:$3\"; else echo \"blocked $1 $2:$3\"; fi; }\n",
    );
    for (name, port) in &targets {
        // The host's loopback, by its name inside and by slirp4netns's
        // alias for it.
        script.push_str(&format!(
            "try {name} 127.0.0.1 {port}\ntry {name} 10.0.2.2 {port}\n"
        ));
    }
    if let Some(outside) = &outside {
        script.push_str(&format!(
            "exec 3<>/dev/tcp/{}/8000 && read -r line <&3 && echo \"outside=$line\"\n",
            outside.address
        ));
    }
    let (task, log) = deploy(&host, "alpha", &alpha, "Prober", &script);
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert!(!log.contains("REACHED"), "{log}");
    assert_eq!(log.matches("blocked ").count(), 2 * targets.len(), "{log}");
    if outside.is_some() {
        assert_eq!(printed(&log, "outside"), "outside-ok", "{log}");
    }
    // The same ports answer on the host, so "blocked" is the sandbox's doing.
    for (name, port) in &targets[1..] {
        assert!(
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok(),
            "{name} listens on the host's loopback at {port}"
        );
    }
}

/// A DNS server in the outside namespace, on its address's port 53, that
/// knows one name: `name` has an A record with that address, has no other
/// record, and every other name does not exist. Stopped when dropped.
struct OutsideDns {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OutsideDns {
    fn start(outside: &Outside, name: &str) -> Result<OutsideDns, String> {
        use std::os::fd::AsRawFd as _;
        let address: std::net::Ipv4Addr = outside
            .address
            .parse()
            .map_err(|e| format!("{}: {e}", outside.address))?;
        // By its server's process, not by `/run/netns/NAME`: the test
        // process was seen to find only the bare file there, without the
        // namespace mounted on it, while another test ran a host beside it
        // (setns then failed with "Invalid argument").
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", outside.server.id()))
            .map_err(|e| format!("the outside namespace: {e}"))?;
        let name = name.to_ascii_lowercase();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let (ready, listening) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // This thread alone moves into the outside namespace.
            // SAFETY: setns on a file descriptor this thread holds open.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let _ = ready.send(Err(format!("setns: {}", std::io::Error::last_os_error())));
                return;
            }
            let socket = match std::net::UdpSocket::bind((address, 53)) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(format!("binding {address}:53: {e}")));
                    return;
                }
            };
            let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = ready.send(Ok(()));
            let mut buf = [0u8; 1500];
            while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    if let Some(reply) = dns_reply(&buf[..n], &name, address) {
                        let _ = socket.send_to(&reply, peer);
                    }
                }
            }
        });
        match listening.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(OutsideDns {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the DNS server did not start".into()),
        }
    }
}

impl Drop for OutsideDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The answer to a DNS query (RFC 1035): `name`'s A record is `address`;
/// it has no record of another type; no other name exists. `None` for
/// what is not a query of one question.
fn dns_reply(query: &[u8], name: &str, address: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let mut at = 12;
    let mut labels = vec![];
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression has no place in a question.
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let question = query.get(12..at + 4)?;
    let qtype = [query[at], query[at + 1]];
    let known = labels.join(".") == name;
    let answers = u8::from(known && qtype == [0, 1]);
    // QR and RD as asked, RA; NXDOMAIN (3) for a name it does not know.
    let rcode = if known { 0 } else { 3 };
    let mut reply = vec![query[0], query[1], 0x80 | (query[2] & 0x01), 0x80 | rcode];
    reply.extend_from_slice(&[0, 1, 0, answers, 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if answers == 1 {
        // The question's name (a pointer to offset 12), A, IN, a minute, four bytes.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&address.octets());
    }
    Some(reply)
}

/// A script on a hosted worker resolves names through slirp4netns's DNS
/// forwarder (10.0.2.3, its resolv.conf's nameserver), which asks the
/// nameserver in the resolv.conf the host sees: here one bind-mounted, in
/// a mount namespace of the host's own, naming a DNS server in the outside
/// namespace. The script finds the outside server by its name, and a name
/// that server does not know does not resolve.
#[test]
fn a_script_on_a_hosted_worker_resolves_names_through_the_hosts_nameserver() {
    const NAME: &str = "something.cuttle-test";
    let require = std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_some();
    if !runs_as_root() {
        assert!(!require, "a mount namespace for the host needs root");
        eprintln!("skipped: a mount namespace for the host needs root");
        return;
    }
    let Some(outside) = Outside::start_or_say(require, "skipped") else {
        return;
    };
    let _dns = OutsideDns::start(&outside, NAME)
        .unwrap_or_else(|e| panic!("a DNS server in the outside namespace: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", outside.address)).unwrap();
    let data = dir.path().join("host");
    // The bind mount is the host's alone (and its children's: its workers
    // and their slirp4netns); the machine's resolv.conf is untouched.
    let mount_then_run = "mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"";
    let wrapper: Vec<&std::ffi::OsStr> = vec![
        "unshare".as_ref(),
        "--mount".as_ref(),
        "--propagation".as_ref(),
        "private".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        mount_then_run.as_ref(),
        "sh".as_ref(),
        resolv.as_os_str(),
    ];
    let host = TestHost::start_wrapped(
        &wrapper,
        Path::new(support::BIN),
        &data,
        None,
        &[
            ("CUTTLE_HOSTED_WORKERS", "1"),
            ("CUTTLE_HOSTED_WORKER_IDLE", "10m"),
        ],
    );
    if !host
        .recent_output()
        .contains("a network of its own per step")
    {
        assert!(
            !require,
            "hosted workers share the host's network here:\n{}",
            host.recent_output()
        );
        eprintln!("skipped: hosted workers cannot have a network of their own here");
        return;
    }
    let key = instance(&host, "alpha");
    let script = format!(
        "found=$(getent hosts {NAME}) || found=none\n\
         echo \"resolved=${{found%% *}}\"\n\
         exec 3<>/dev/tcp/{NAME}/8000 && read -r line <&3 && echo \"outside=$line\"\n\
         getent hosts nothing.cuttle-test || echo \"unknown=unresolved\"\n"
    );
    let (task, log) = deploy(&host, "alpha", &key, "Resolver", &script);
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert_eq!(printed(&log, "resolved"), outside.address, "{log}");
    assert_eq!(printed(&log, "outside"), "outside-ok", "{log}");
    assert_eq!(printed(&log, "unknown"), "unresolved", "{log}");
    // The machine's own resolv.conf is not the one the host saw.
    let machine = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(!machine.contains(&outside.address), "{machine}");
}

/// A host that cannot give workers a network of their own refuses to start
/// them, unless the operator allowed unisolated workers; then it says so.
#[test]
fn without_slirp4netns_a_host_refuses_hosted_workers_unless_allowed_to_share_its_network() {
    // A PATH with what the sandbox's probes run, but no slirp4netns.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["bwrap", "true", "sleep", "bash", "sh"] {
        if let Some(found) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
        {
            std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
        }
    }
    if !bin.path().join("bwrap").exists() {
        assert!(
            std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none(),
            "bubblewrap is needed"
        );
        eprintln!("skipped: no bubblewrap here, so no network namespace is tried");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(support::BIN)
        .args([
            "host",
            "--listen",
            "127.0.0.1:0",
            "--control-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--domain",
            "cuttle.test",
            "--hosted-workers",
            "1",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("PATH", bin.path())
        .env("CUTTLE_HOST_CONTROL_TOKEN", "token-token-token-token-token")
        .env_remove("CUTTLE_BUILTIN_WORKER_UNISOLATED")
        .env_remove("CUTTLE_HOST_DATABASE_URL")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("hosted workers cannot have a network of their own here")
            && said.contains("slirp4netns is not installed"),
        "{said}"
    );
    assert!(
        !dir.path().join("host.db").exists(),
        "nothing was made: {:?}",
        std::fs::read_dir(dir.path()).map(|d| d.count())
    );

    let host = TestHost::start_with_env(
        dir.path(),
        None,
        &[
            ("PATH", &bin.path().display().to_string()),
            ("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true"),
        ],
    );
    assert!(
        eventually(Duration::from_secs(5), || host.recent_output().contains(
            "hosted workers share the host's network (slirp4netns is not installed)"
        )),
        "{}",
        host.recent_output()
    );
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

/// A worker whose way out (slirp4netns) died cannot be reached by its
/// instance: the next step finds the lease ended and gets a new worker.
#[test]
fn a_worker_whose_network_died_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with(dir.path(), None, "1", "10m");
    if !host
        .recent_output()
        .contains("a network of its own per step")
    {
        assert!(std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none());
        eprintln!("skipped: hosted workers have no network of their own here");
        return;
    }
    let key = instance(&host, "netless");
    let (status, lease) = host.control("POST", "/instances/netless/hosted-worker", None);
    assert_eq!(status, StatusCode::CREATED, "{lease}");
    let first = str_of(&lease, "Id").to_owned();
    let slirp: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("slirp4netns") && c.contains(&scratch_root(dir.path()))
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(slirp.len(), 1, "one way out for the one worker: {slirp:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &slirp[0]])
        .status()
        .unwrap();
    assert!(killed.success());

    let (task, log) = deploy(&host, "netless", &key, "After", "echo reached");
    assert_eq!(task["State"], "Success", "{task}\n{log}");
    assert!(log.contains("reached"), "{log}");
    let leases = hosted_leases(&host);
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_ne!(str_of(&leases[0], "Id"), first, "{leases:?}");
}
