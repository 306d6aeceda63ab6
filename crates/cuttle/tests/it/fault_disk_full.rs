//! The disk under the data directory fills up, and space comes back: every
//! write the server acknowledged before, during and after must survive a
//! restart, and the server must take writes again without being restarted.
//!
//! The data directory is a small tmpfs, so this needs root (CI runs as root);
//! elsewhere the test says it is skipped.

use crate::support;

use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::agents::{agent_cli, api, request, wait_task};
use support::TestServer;

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        if !status.success() {
            eprintln!("skipped: this machine cannot mount a tmpfs ({status})");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `path` until about `leave` bytes are free.
fn fill(path: &Path, leave: u64) -> PathBuf {
    let filler = path.join("filler");
    let mut f = File::create(&filler).expect("create the filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written: u64 = 0;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = f.flush();
    drop(f);
    let f = OpenOptions::new().write(true).open(&filler).unwrap();
    f.set_len(written.saturating_sub(leave)).unwrap();
    filler
}

fn zip_package(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    zip.start_file("run.sh", options).unwrap();
    zip.write_all(b"echo hello\n").unwrap();
    zip.finish().unwrap();
    path
}

/// Tries to create `count` environments named `{prefix}-N`; the names the
/// server acknowledged (201) and how many it refused.
fn create_environments(server: &TestServer, prefix: &str, count: usize) -> (Vec<String>, usize) {
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for n in 0..count {
        let name = format!("{prefix}-{n}");
        // Long descriptions make every write cost pages, so the disk fills.
        let body = json!({"Name": name, "Description": "x".repeat(2000)});
        let (status, answer) = request(server, "POST", "/api/Spaces-1/environments", Some(body));
        match status {
            201 => acknowledged.push(name),
            503 => {
                let said = answer["ErrorMessage"].as_str().unwrap_or_default();
                assert!(said.contains("storage is full"), "{answer}");
                refused += 1;
            }
            other => panic!("creating {name}: unexpected {other}: {answer}"),
        }
    }
    (acknowledged, refused)
}

fn environment_names(server: &TestServer) -> Vec<String> {
    let all = api(server, "GET", "/api/Spaces-1/environments/all", None);
    all.as_array()
        .expect("a list of environments")
        .iter()
        .filter_map(|e| e["Name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn fault_disk_full_loses_no_acknowledged_write() {
    let Some(fs) = Tmpfs::mount("30m") else {
        return;
    };
    let data = fs.path().join("data");
    let packages = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&data, None, &[]);

    // Before: a project to deploy later.
    api(
        &server,
        "POST",
        "/api/Spaces-1/environments",
        Some(json!({"Name": "Dev"})),
    );
    let project = api(
        &server,
        "POST",
        "/api/Spaces-1/projects",
        Some(
            json!({"Name": "Web", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    let project_id = project["Id"].as_str().unwrap().to_owned();
    let process = json!({"Version": 0, "Steps": [{"Name": "Run", "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": "echo deployed", "Octopus.Action.Script.Syntax": "Bash"}}]}]});
    api(
        &server,
        "PUT",
        &format!("/api/Spaces-1/projects/{project_id}/deploymentprocesses"),
        Some(process),
    );

    // The disk fills: some writes fail, the rest are acknowledged.
    let filler = fill(fs.path(), 100 * 1024);
    let (mut acknowledged, refused) = create_environments(&server, "full", 400);
    assert!(
        refused > 0,
        "the disk never filled: {} writes acknowledged, none refused",
        acknowledged.len()
    );

    eprintln!(
        "disk full: {} writes acknowledged, {refused} refused",
        acknowledged.len()
    );

    // A package pushed now is refused whole, with the reason.
    let early = zip_package(packages.path(), "Early.1.0.0.zip");
    let refused_push = agent_cli(&server, &["package", "push", early.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&refused_push.stderr);
    assert!(
        !refused_push.status.success() && said.contains("storage is full"),
        "a push to a full disk: {refused_push:?}"
    );

    // Space comes back: the server takes writes again by itself.
    std::fs::remove_file(&filler).unwrap();
    let (after, refused_after) = create_environments(&server, "after", 50);
    assert_eq!(
        refused_after,
        0,
        "writes still fail once space is back:\n{}",
        server.recent_output()
    );
    acknowledged.extend(after);
    let visible = environment_names(&server);
    for name in &acknowledged {
        assert!(
            visible.contains(name),
            "{name} was acknowledged but is not listed"
        );
    }

    // A package, a release and a deployment after the fault.
    let zip = zip_package(packages.path(), "Web.1.0.0.zip");
    let pushed = agent_cli(&server, &["package", "push", zip.to_str().unwrap()]);
    assert!(pushed.status.success(), "package push: {pushed:?}");
    let release = api(
        &server,
        "POST",
        "/api/Spaces-1/releases",
        Some(json!({"ProjectId": project_id, "Version": "1.0.0"})),
    );
    let release_id = release["Id"].as_str().unwrap().to_owned();
    let dev = api(&server, "GET", "/api/Spaces-1/environments?name=Dev", None);
    let dev_id = dev["Items"][0]["Id"].as_str().unwrap().to_owned();
    let deployment = api(
        &server,
        "POST",
        "/api/Spaces-1/deployments",
        Some(json!({"ReleaseId": release_id, "EnvironmentId": dev_id})),
    );
    let task_id = deployment["TaskId"].as_str().unwrap().to_owned();
    let done = wait_task(&server, &task_id, Duration::from_secs(60));
    assert_eq!(done["State"], "Success", "{done}");

    // A clean stop and a restart: everything acknowledged is there.
    server.signal("-TERM");
    assert!(
        server.wait_exit(Duration::from_secs(10)).is_some(),
        "the server did not stop"
    );
    drop(server);
    let server = TestServer::start(&data, None, &[]);
    let listed = environment_names(&server);
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|name| !listed.contains(name))
        .collect();
    eprintln!(
        "after a restart: {} of {} acknowledged environments listed",
        acknowledged.len() - lost.len(),
        acknowledged.len()
    );
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged environments were lost after a restart: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    let packages = api(&server, "GET", "/api/Spaces-1/packages?filter=Web", None);
    assert_eq!(
        packages["TotalResults"], 1,
        "the package was lost: {packages}"
    );
    let release: Value = api(
        &server,
        "GET",
        &format!("/api/Spaces-1/releases/{release_id}"),
        None,
    );
    assert_eq!(release["Version"], "1.0.0");
    let task = api(
        &server,
        "GET",
        &format!("/api/Spaces-1/tasks/{task_id}"),
        None,
    );
    assert_eq!(task["State"], "Success", "the deployment was lost: {task}");
}
