//! Deployments end to end: real scripts on the built-in worker, their output
//! in the task log, failures, timeouts, cancellation and release snapshots.

use crate::common;

use common::{on_both, on_both_with_cap};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_script_runs_and_its_output_is_logged() {
    on_both("deploy-ok", |s| async move {
        s.project_with_script(
            "Hello",
            "echo \"hello from $(basename $PWD)\"\necho careful >&2",
            json!({}),
        )
        .await;
        let task = s.release_and_deploy("Hello", "1.0.0").await;
        let t = s.wait_for_task(&task).await;
        assert_eq!(t["State"], "Success", "{}: {t}", s.backend);
        assert_eq!(
            (
                t["FinishedSuccessfully"].as_bool(),
                t["HasWarningsOrErrors"].as_bool()
            ),
            (Some(true), Some(true))
        );
        let lines = s.log_lines(&task).await;
        // Its own directory, named for its step: on the built-in worker
        // `step-1-action-1`; on a host's worker (an agent) the command's,
        // `ServerTasks-1.step-1.<id>.Workers-1.attempt-1`.
        let own_dir = |m: &str| match m.strip_prefix("hello from ") {
            Some(dir) if crate::common::on_host() => {
                dir.starts_with("ServerTasks-") && dir.contains(".step-1.")
            }
            Some(dir) => dir.starts_with("step-1-action-1"),
            None => false,
        };
        assert!(
            lines.iter().any(|(c, m)| c == "Info" && own_dir(m)),
            "{lines:?}"
        );
        assert!(
            lines.contains(&("Error".into(), "careful".into())),
            "{lines:?}"
        );
        let details = s.get(&format!("/api/tasks/{task}/details")).await.body;
        let root = &details["ActivityLogs"][0];
        assert_eq!(root["Name"], "Deploy Hello release 1.0.0 to Dev");
        assert_eq!(root["Children"][0]["Name"], "Step 1: Run it");
        assert_eq!(root["Children"][0]["Children"][0]["Status"], "Success");
        let raw = s.get(&format!("/api/tasks/{task}/raw")).await.body;
        assert!(raw.as_str().unwrap().contains("hello from"), "{raw}");
        let deployments = s.get("/api/deployments?taskState=Success").await.body;
        assert_eq!(deployments["TotalResults"], 1);
    })
    .await;
}

#[tokio::test]
async fn a_failing_script_fails_the_step_and_the_task() {
    on_both("deploy-fail", |s| async move {
        s.project_with_script("Broken", "echo about to fail\nexit 7", json!({}))
            .await;
        let task = s.release_and_deploy("Broken", "1.0.0").await;
        let t = s.wait_for_task(&task).await;
        assert_eq!(t["State"], "Failed");
        let error = t["ErrorMessage"].as_str().unwrap();
        assert!(
            error.contains("'Run it'") && error.contains("exited with code 7"),
            "{error}"
        );
        let lines = s.log_lines(&task).await;
        assert!(
            lines
                .iter()
                .any(|(c, m)| c == "Error" && m.contains("exited with code 7")),
            "{lines:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_script_past_its_timeout_is_killed_with_its_children() {
    on_both("deploy-timeout", |s| async move {
        // A distinctive argument finds the child from outside: inside the
        // worker's PID namespace, $! is not a host pid.
        let script = "sleep 120.0417 &\necho \"child $!\"\nsleep 120";
        s.project_with_script(
            "Slow",
            script,
            json!({"Cuttle.Action.ExecutionTimeout.Seconds": "1"}),
        )
        .await;
        let started = std::time::Instant::now();
        let task = s.release_and_deploy("Slow", "1.0.0").await;
        let t = s.wait_for_task(&task).await;
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(t["State"], "Failed");
        assert!(
            t["ErrorMessage"]
                .as_str()
                .unwrap()
                .contains("timeout of 1 seconds"),
            "{t}"
        );
        let lines = s.log_lines(&task).await;
        assert!(
            lines.iter().any(|(_, m)| m.starts_with("child ")),
            "the script started its child: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let survivors: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|p| {
                let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
                cmdline.split(|&b| b == 0).any(|a| a == b"120.0417") && !stat.contains(") Z ")
            })
            .map(|p| p.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            survivors.is_empty(),
            "the background child survived: {survivors:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn cancelling_stops_running_and_queued_tasks() {
    on_both("deploy-cancel", |s| async move {
        s.project_with_script("Long", "echo started\nsleep 120", json!({})).await;
        let task = s.release_and_deploy("Long", "1.0.0").await;
        for _ in 0..500 {
            if s.log_lines(&task).await.iter().any(|(_, m)| m == "started") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = s.call_with(Method::POST, &format!("/api/tasks/{task}/cancel"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let t = s.wait_for_task(&task).await;
        assert_eq!(t["State"], "Canceled");

        // A task scheduled for later is cancelled without running.
        let d = s
            .create(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": "Long", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"], "RunAt": "2099-01-01T00:00:00.000+00:00"}),
            )
            .await;
        let queued = d["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        let t = s.get(&format!("/api/tasks/{queued}")).await.body;
        assert_eq!((t["State"].as_str(), t["QueueTime"].as_str()), (Some("Queued"), Some("2099-01-01T00:00:00.000+00:00")));
        s.call_with(Method::POST, &format!("/api/Spaces-1/tasks/{queued}/cancel"), None, Some(&s.key)).await;
        let t = s.wait_for_task(&queued).await;
        assert_eq!((t["State"].as_str(), t["StartTime"].is_null()), (Some("Canceled"), true));
        let r = s.call_with(Method::POST, "/api/tasks/ServerTasks-999/cancel", None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        // A finished task cannot be cancelled: 409, and it stays as it ended.
        let before = s.get(&format!("/api/tasks/{task}")).await.body;
        let r = s.call_with(Method::POST, &format!("/api/tasks/{task}/cancel"), None, Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.error_text().contains("already"), "{}", r.body);
        let after = s.get(&format!("/api/tasks/{task}")).await.body;
        assert_eq!((after["State"].clone(), after["CompletedTime"].clone()), (before["State"].clone(), before["CompletedTime"].clone()));
    })
    .await;
}

#[tokio::test]
async fn releases_keep_the_process_they_were_cut_with() {
    on_both("snapshot", |s| async move {
        let project = s.project_with_script("Frozen", "echo version one", json!({})).await;
        s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Frozen"})).await;
        let path = format!("/api/projects/{}/deploymentprocesses", project["Id"].as_str().unwrap());
        let mut process = s.get(&path).await.body;
        process["Steps"][0]["Actions"][0]["Properties"]["Octopus.Action.Script.ScriptBody"] = json!("echo version two");
        assert_eq!(s.send(Method::PUT, &path, &process).await.status, StatusCode::OK);

        let d = s
            .create("/api/Spaces-1/deployments/create/untenanted/v1", json!({"ProjectName": "Frozen", "ReleaseVersion": "0.0.1", "EnvironmentNames": ["Dev"]}))
            .await;
        let task = d["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        assert_eq!(s.wait_for_task(&task).await["State"], "Success");
        let lines = s.log_lines(&task).await;
        assert!(lines.iter().any(|(_, m)| m == "version one"), "{lines:?}");
        assert!(!lines.iter().any(|(_, m)| m == "version two"));
        let second = s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Frozen"})).await;
        assert_eq!(second["ReleaseVersion"], "0.0.2");
    })
    .await;
}

#[tokio::test]
async fn step_conditions_and_unknown_action_types() {
    on_both("conditions", |s| async move {
        s.project_with_script("Steps", "exit 1", json!({})).await;
        let project = s.get("/api/projects/Steps").await.body;
        let path = format!("/api/projects/{}/deploymentprocesses", project["Id"].as_str().unwrap());
        let mut process = s.get(&path).await.body;
        let script = |name: &str, cond: &str, body: &str| {
            json!({"Name": name, "Condition": cond, "Actions": [{"ActionType": "Octopus.Script", "Properties": {"Octopus.Action.Script.ScriptBody": body}}]})
        };
        let steps = process["Steps"].as_array_mut().unwrap();
        steps.push(script("Skipped on failure", "Success", "echo should not run"));
        steps.push(script("Cleanup", "Failure", "echo cleaning up"));
        steps.push(script("Always", "Always", "echo always"));
        steps.push(json!({"Name": "Mystery", "Condition": "Always", "Actions": [{"ActionType": "Acme.Unknown"}]}));
        assert_eq!(s.send(Method::PUT, &path, &process).await.status, StatusCode::OK);
        let task = s.release_and_deploy("Steps", "1.0.0").await;
        assert_eq!(s.wait_for_task(&task).await["State"], "Failed");
        let lines: Vec<String> = s.log_lines(&task).await.into_iter().map(|(_, m)| m).collect();
        assert!(lines.contains(&"cleaning up".to_owned()) && lines.contains(&"always".to_owned()), "{lines:?}");
        assert!(!lines.contains(&"should not run".to_owned()));
        assert!(lines.iter().any(|l| l.contains("'Acme.Unknown' is not supported")), "{lines:?}");
        let details = s.get(&format!("/api/tasks/{task}/details")).await.body;
        let statuses: Vec<&str> = details["ActivityLogs"][0]["Children"].as_array().unwrap().iter().map(|c| c["Status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["Failed", "Skipped", "Success", "Success", "Failed"]);
    })
    .await;
}

#[tokio::test]
async fn the_concurrency_cap_queues_tasks_beyond_it() {
    on_both_with_cap("cap", 1, |s| async move {
        s.project_with_script("Capped", "sleep 0.5", json!({})).await;
        s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Capped", "ReleaseVersion": "1.0.0"})).await;
        let body = json!({"ProjectName": "Capped", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]});
        let first = s.create("/api/Spaces-1/deployments/create/untenanted/v1", body.clone()).await;
        let second = s.create("/api/Spaces-1/deployments/create/untenanted/v1", body).await;
        let id = |d: &serde_json::Value| d["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        let a = s.wait_for_task(&id(&first)).await;
        let b = s.wait_for_task(&id(&second)).await;
        assert_eq!((a["State"].as_str(), b["State"].as_str()), (Some("Success"), Some("Success")));
        let ts = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
        assert!(ts(&b["StartTime"]) >= ts(&a["CompletedTime"]), "with a cap of 1 the second task waited: {a} {b}");
    })
    .await;
}

#[tokio::test]
async fn deployments_of_one_project_to_one_environment_are_serialised() {
    on_both_with_cap("serialise", 3, |s| async move {
        s.project_with_script("Same", "sleep 0.6", json!({})).await;
        s.project_with_script("Other", "sleep 0.1", json!({})).await;
        for p in ["Same", "Other"] {
            s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": p, "ReleaseVersion": "1.0.0"})).await;
        }
        let deploy = |p: &str| {
            json!({"ProjectName": p, "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]})
        };
        let id = |d: &serde_json::Value| d["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        let first = id(&s.create("/api/Spaces-1/deployments/create/untenanted/v1", deploy("Same")).await);
        let second = id(&s.create("/api/Spaces-1/deployments/create/untenanted/v1", deploy("Same")).await);
        let other = id(&s.create("/api/Spaces-1/deployments/create/untenanted/v1", deploy("Other")).await);
        let a = s.wait_for_task(&first).await;
        let b = s.wait_for_task(&second).await;
        let c = s.wait_for_task(&other).await;
        for t in [&a, &b, &c] {
            assert_eq!(t["State"], "Success", "{t}");
        }
        let ts = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
        assert!(ts(&b["StartTime"]) >= ts(&a["CompletedTime"]), "the second deployment waited for the first: {a} {b}");
        assert!(ts(&c["StartTime"]) < ts(&a["CompletedTime"]), "another project did not wait: {a} {c}");
    })
    .await;
}

/// `update_progress` in a script shows on its activity (percentage and
/// message, sensitive values masked) and in the task's overall progress.
#[tokio::test]
async fn scripts_report_progress() {
    on_both("progress", |s| async move {
        // Long enough to be seen at 40% between the two updates.
        let script = "update_progress 40 \"copied 4 of 10 files\"\nsleep 3\nupdate_progress 90";
        s.project_with_script("Progress", script, json!({})).await;
        let task = s.release_and_deploy("Progress", "1.0.0").await;
        let find = |tree: &serde_json::Value| -> Option<serde_json::Value> {
            let step = tree["ActivityLogs"][0]["Children"][0].clone();
            let target = step["Children"][0].clone();
            (!target.is_null()).then_some(target)
        };
        let mut seen = None;
        for _ in 0..500 {
            let details = s.get(&format!("/api/tasks/{task}/details")).await.body;
            if let Some(t) = find(&details) {
                if t["ProgressPercentage"] == 40 {
                    seen = Some((t, details["Progress"]["ProgressPercentage"].clone()));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (target, overall) = seen.unwrap_or_else(|| panic!("{}: no progress seen", s.backend));
        assert_eq!(target["ProgressMessage"], "copied 4 of 10 files");
        let overall = overall.as_i64().unwrap();
        assert!((40..100).contains(&overall), "{overall}");
        let done = s.wait_for_task(&task).await;
        assert_eq!(done["State"], "Success", "{done}");
        let details = s.get(&format!("/api/tasks/{task}/details")).await.body;
        assert_eq!(details["Progress"]["ProgressPercentage"], 100);
        assert_eq!(find(&details).unwrap()["ProgressPercentage"], 100);
    })
    .await;
}

/// Deleting a project takes its releases and deployments with it; its
/// finished tasks stay as history, and another project keeps everything.
#[tokio::test]
async fn a_deleted_project_takes_its_releases_and_deployments() {
    on_both("delete-project-history", |s| async move {
        let doomed = s
            .project_with_script("Doomed", "echo doomed", json!({}))
            .await;
        s.project_with_script("Kept", "echo kept", json!({})).await;
        let mut tasks = vec![];
        for version in ["1.0.0", "1.0.1"] {
            let task = s.release_and_deploy("Doomed", version).await;
            assert_eq!(s.wait_for_task(&task).await["State"], "Success");
            tasks.push(task);
        }
        let kept_task = s.release_and_deploy("Kept", "2.0.0").await;
        assert_eq!(s.wait_for_task(&kept_task).await["State"], "Success");
        let doomed_id = doomed["Id"].as_str().unwrap().to_owned();
        let deployments = s
            .get(&format!("/api/Spaces-1/deployments?projects={doomed_id}"))
            .await
            .body;
        let deployment_ids: Vec<String> = deployments["Items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deployment_ids.len(), 2, "{}: {deployments}", s.backend);

        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/projects/{doomed_id}"),
                None,
                Some(&s.key),
            )
            .await;
        assert!(r.status.is_success(), "{}: {}", s.backend, r.body);

        assert_eq!(
            s.get(&format!("/api/projects/{doomed_id}")).await.status,
            StatusCode::NOT_FOUND
        );
        for id in &deployment_ids {
            assert_eq!(
                s.get(&format!("/api/deployments/{id}")).await.status,
                StatusCode::NOT_FOUND,
                "{}: {id}",
                s.backend
            );
        }
        let left = s.get("/api/Spaces-1/deployments").await.body;
        assert_eq!(left["TotalResults"], 1, "{}: {left}", s.backend);
        let releases = s.get("/api/Spaces-1/releases").await.body;
        assert_eq!(releases["TotalResults"], 1, "{}: {releases}", s.backend);
        for task in &tasks {
            assert_eq!(
                s.get(&format!("/api/tasks/{task}")).await.body["State"],
                "Success",
                "{}: the finished task stays as history",
                s.backend
            );
        }
    })
    .await;
}
