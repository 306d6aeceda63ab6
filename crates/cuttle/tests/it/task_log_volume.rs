//! A script that prints 400,000 lines of 200 bytes (80 MB, more than the
//! bound below), through a real `cuttle server` process on SQLite and
//! PostgreSQL: every line is kept, the server's memory stays within a bound
//! while it runs and while the raw log is read whole,
//! and the details show each activity's tail, not the whole log. Bounds of
//! memory and of lines, never of time.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use support::agents::{api, deploy_to_dev, request, wait_task};
use support::{on_both, ServerProcess, KEY};

const MIB: u64 = 1024 * 1024;
const LINES: usize = 400_000;
/// Long lines, so the log outweighs the memory bound with fewer rows (the
/// cost of storing a log is mostly per row).
const TEXT: &str = concat!(
    "a line of a loud script, long enough that four hundred thousand of them ",
    "make eighty megabytes of log, more than the server may grow by while it ",
    "stores them or sends them back whole: ......................................"
);
/// What the server may grow by, at its peak, for a log of any size: the
/// writer's backlog (8 MiB) and a page of lines read, with room to spare.
const GROWTH_AT_MOST: u64 = 64 * MIB;
/// Lines of one activity the details show at most, and the note before them.
const DETAIL_LINES: usize = 1_000;

#[test]
fn a_loud_script_keeps_every_line_in_bounded_memory() {
    on_both("task_log_volume", |data_dir, db| {
        let server = ServerProcess::start(&data_dir, db.as_deref(), &[]);
        api(
            &server,
            "POST",
            "/api/environments",
            Some(json!({"Name": "Dev"})),
        );
        let project = api(
            &server,
            "POST",
            "/api/projects",
            Some(
                json!({"Name": "Loud", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            ),
        );
        api(
            &server,
            "PUT",
            &format!(
                "/api/projects/{}/deploymentprocesses",
                project["Id"].as_str().unwrap()
            ),
            Some(
                json!({"Version": 0, "Steps": [{"Name": "Run", "Properties": {},
                "Actions": [{"Name": "Run", "ActionType": "Octopus.Script", "Properties": {
                    "Octopus.Action.Script.ScriptBody": format!("yes '{TEXT}' | head -n {LINES}"),
                    "Octopus.Action.Script.Syntax": "Bash"}}]}]}),
            ),
        );
        api(
            &server,
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Loud", "ReleaseVersion": "1.0.0"})),
        );

        // Running: the script waits on its pipe rather than the server
        // holding what the database has not stored yet.
        let before = peak_memory(&server);
        let task = deploy_to_dev(&server, "Loud", "1.0.0");
        let done = wait_task(&server, &task, Duration::from_secs(600));
        assert_eq!(
            done["State"],
            "Success",
            "{done}\n{}",
            api(
                &server,
                "GET",
                &format!("/api/tasks/{task}/details?tail=20"),
                None
            )
        );
        let after = peak_memory(&server);
        assert!(
            after.saturating_sub(before) < GROWTH_AT_MOST,
            "the server's peak memory grew by {} MiB storing {LINES} lines",
            after.saturating_sub(before) / MIB
        );

        // Details: each activity's last lines, after a note on the rest.
        let details = api(&server, "GET", &format!("/api/tasks/{task}/details"), None);
        assert!(
            details["PhysicalLogSize"].as_u64().unwrap() >= LINES as u64,
            "{}",
            details["PhysicalLogSize"]
        );
        let activities = flatten(&details["ActivityLogs"]);
        let loud = activities
            .iter()
            .find(|a| a["LogElements"].as_array().unwrap().len() > DETAIL_LINES / 2)
            .expect("the activity with the script's output");
        let elements = loud["LogElements"].as_array().unwrap();
        assert_eq!(elements.len(), DETAIL_LINES + 1);
        let note = elements[0]["MessageText"].as_str().unwrap();
        assert!(
            note.contains("earlier lines of this activity are not shown")
                && note.contains(&format!("/api/tasks/{task}/raw")),
            "{note}"
        );
        assert!(elements[1..]
            .iter()
            .all(|e| e["MessageText"].as_str().unwrap().contains(TEXT)));
        for a in &activities {
            assert!(a["LogElements"].as_array().unwrap().len() <= DETAIL_LINES + 1);
        }

        // Octopus's tail: the last N lines of each activity, nothing else.
        let tailed = api(
            &server,
            "GET",
            &format!("/api/tasks/{task}/details?verbose=true&tail=5"),
            None,
        );
        let tailed = flatten(&tailed["ActivityLogs"]);
        assert!(tailed
            .iter()
            .all(|a| a["LogElements"].as_array().unwrap().len() <= 5));
        let loud = tailed.iter().find(|a| a["Id"] == loud["Id"]).unwrap();
        let last: Vec<&str> = loud["LogElements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["MessageText"].as_str().unwrap())
            .collect();
        assert_eq!(last, [TEXT; 5]);

        // The raw log, read whole: streamed, so the server holds a page of it.
        let before = peak_memory(&server);
        let (lines, loud_lines) = read_raw(&server, &task);
        let after = peak_memory(&server);
        assert_eq!(loud_lines, LINES);
        assert!(lines > LINES);
        assert!(
            after.saturating_sub(before) < GROWTH_AT_MOST,
            "the server's peak memory grew by {} MiB sending a log of {LINES} lines",
            after.saturating_sub(before) / MIB
        );
    });
}

#[test]
fn a_bad_tail_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), None, &[]);
    let (status, body) = request(
        &server,
        "POST",
        "/api/tasks",
        Some(json!({"Name": "Health", "Arguments": {}})),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let task = body["Id"].as_str().unwrap().to_owned();
    for bad in ["-1", "ten", "1.5", ""] {
        let (status, body) = request(
            &server,
            "GET",
            &format!("/api/tasks/{task}/details?tail={bad}"),
            None,
        );
        assert_eq!(status, 400, "tail={bad}: {body}");
        let said = body.to_string();
        assert!(said.contains("tail must be a number of lines"), "{said}");
    }
    let (status, _) = request(
        &server,
        "GET",
        &format!("/api/tasks/{task}/details?tail=0"),
        None,
    );
    assert_eq!(status, 200);
}

/// Every node of an activity tree, depth first.
fn flatten(tree: &Value) -> Vec<Value> {
    let mut out = vec![];
    for a in tree.as_array().unwrap() {
        out.push(a.clone());
        out.extend(flatten(&a["Children"]));
    }
    out
}

/// Reads the raw log as it arrives, never whole: its lines, and those of
/// the script.
fn read_raw(server: &ServerProcess, task: &str) -> (usize, usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut resp = reqwest::Client::new()
            .get(format!("{}/api/tasks/{task}/raw", server.url))
            .header("X-Octopus-ApiKey", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let (mut lines, mut loud) = (0, 0);
        let mut partial = Vec::new();
        while let Some(chunk) = resp.chunk().await.unwrap() {
            partial.extend_from_slice(&chunk);
            let end = partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            for line in String::from_utf8_lossy(&partial[..end]).lines() {
                lines += 1;
                loud += usize::from(line.ends_with(TEXT));
            }
            partial.drain(..end);
        }
        (lines, loud)
    })
}

/// The largest resident size the server has had, in bytes.
fn peak_memory(server: &ServerProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

/// A step that runs past ten quiet seconds finishes. Its process used to be
/// started from a pooled thread that the runtime ends after ten idle
/// seconds, and the parent-death signal of the sandbox then killed it.
#[test]
fn a_step_outlives_ten_idle_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), None, &[]);
    api(
        &server,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    let project = api(
        &server,
        "POST",
        "/api/projects",
        Some(
            json!({"Name": "Slow", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    api(
        &server,
        "PUT",
        &format!(
            "/api/projects/{}/deploymentprocesses",
            project["Id"].as_str().unwrap()
        ),
        Some(
            json!({"Version": 0, "Steps": [{"Name": "Wait", "Properties": {},
            "Actions": [{"Name": "Wait", "ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "sleep 13; echo still here",
                "Octopus.Action.Script.Syntax": "Bash"}}]}]}),
        ),
    );
    api(
        &server,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": "Slow", "ReleaseVersion": "1.0.0"})),
    );
    let task = deploy_to_dev(&server, "Slow", "1.0.0");
    let done = wait_task(&server, &task, Duration::from_secs(120));
    let raw = api(&server, "GET", &format!("/api/tasks/{task}/details"), None);
    assert_eq!(done["State"], "Success", "{done}\n{raw}");
    assert!(raw.to_string().contains("still here"), "{raw}");
}
