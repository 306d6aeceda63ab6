//! Deployments that pause for a person, end to end over HTTP: manual
//! intervention steps, guided failure, cancelling while waiting, and a
//! restart while an interruption is pending.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

fn script_step(name: &str, body: &str) -> Value {
    json!({"Name": name, "Actions": [{"Name": name, "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": body, "Octopus.Action.Script.Syntax": "Bash"}}]})
}

fn manual_step(name: &str, instructions: &str) -> Value {
    json!({"Name": name, "Actions": [{"Name": name, "ActionType": "Octopus.Manual",
    "Properties": {
        "Octopus.Action.Manual.Instructions": instructions,
        "Octopus.Action.Manual.BlockConcurrentDeployments": "False",
        "Octopus.Action.RunOnServer": "true"
    }}]})
}

/// A project (with `fields` added to its create body) whose process is `steps`.
async fn project_with_steps(s: &Server, name: &str, fields: Value, steps: Vec<Value>) {
    if s.get("/api/environments?name=Dev").await.body["TotalResults"] == 0 {
        s.create("/api/environments", json!({"Name": "Dev"})).await;
    }
    let mut body =
        json!({"Name": name, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"});
    if let (Value::Object(b), Value::Object(f)) = (&mut body, fields) {
        b.extend(f);
    }
    let project = s.create("/api/projects", body).await;
    let path = format!(
        "/api/projects/{}/deploymentprocesses",
        project["Id"].as_str().unwrap()
    );
    let r = s
        .send(Method::PUT, &path, &json!({"Version": 0, "Steps": steps}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// Cuts release 1.0.0 and deploys it to Dev; returns the task id.
async fn deploy(s: &Server, project: &str, guided: Option<bool>) -> String {
    s.create(
        "/api/Spaces-1/releases/create/v1",
        json!({"ProjectName": project, "ReleaseVersion": "1.0.0"}),
    )
    .await;
    let mut body =
        json!({"ProjectName": project, "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]});
    if let Some(g) = guided {
        body["UseGuidedFailure"] = json!(g);
    }
    let d = s
        .create("/api/Spaces-1/deployments/create/untenanted/v1", body)
        .await;
    d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for a pending interruption of `task` other than `not`.
async fn pending_interruption(s: &Server, task: &str, not: Option<&str>) -> Value {
    for _ in 0..1500 {
        let list = s
            .get(&format!(
                "/api/Spaces-1/interruptions?regarding={task}&pendingOnly=true"
            ))
            .await
            .body;
        if let Some(found) = list["Items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| Some(i["Id"].as_str().unwrap_or("")) != not)
        {
            return found.clone();
        }
        let t = s.get(&format!("/api/tasks/{task}")).await.body;
        assert_ne!(t["IsCompleted"], true, "{}: the task ended: {t}", s.backend);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{}: no interruption for {task} within 30 s", s.backend);
}

async fn submit(s: &Server, id: &str, body: Value, key: &str) -> common::Reply {
    s.call_with(
        Method::POST,
        &format!("/api/Spaces-1/interruptions/{id}/submit"),
        Some(&body.to_string()),
        Some(key),
    )
    .await
}

fn messages(lines: &[(String, String)]) -> Vec<&str> {
    lines.iter().map(|(_, m)| m.as_str()).collect()
}

#[tokio::test]
async fn a_manual_step_waits_for_someone_to_proceed() {
    on_both("manual-proceed", |s| async move {
        project_with_steps(
            &s,
            "Gated",
            json!({}),
            vec![
                script_step("Before", "echo before"),
                manual_step("Approve", "Check that #{Octopus.Environment.Name} is quiet"),
                script_step(
                    "After",
                    "echo after\necho \"notes=#{Octopus.Action[Approve].Output.Manual.Notes} approved=#{Octopus.Action[Approve].Output.Manual.Approved}\"",
                ),
            ],
        )
        .await;
        let task = deploy(&s, "Gated", None).await;
        let i = pending_interruption(&s, &task, None).await;
        let id = i["Id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("Interruptions-"), "{i}");
        assert_eq!(i["IsPending"], true);
        assert_eq!(i["TaskId"], task.as_str());
        assert_eq!(i["Form"]["Elements"][0]["Name"], "Instructions");
        assert_eq!(
            i["Form"]["Elements"][0]["Control"]["Text"],
            "Check that Dev is quiet"
        );
        assert_eq!(i["Form"]["Elements"][2]["Control"]["Type"], "SubmitButtonGroup");
        assert_eq!((i["CanTakeResponsibility"].as_bool(), i["HasResponsibility"].as_bool()), (Some(true), Some(false)));
        assert!(i["RelatedDocumentIds"].as_array().unwrap().iter().any(|d| d == task.as_str()));
        assert_eq!(i["Links"]["Submit"], format!("/api/Spaces-1/interruptions/{id}/submit"));

        // The task waits: still executing, flagged, later steps not run.
        let t = s.get(&format!("/api/tasks/{task}")).await.body;
        assert_eq!((t["State"].as_str(), t["HasPendingInterruptions"].as_bool()), (Some("Executing"), Some(true)), "{t}");
        // The instructions' log line is stored beside the interruption, not
        // before it: a reader may see the interruption a moment earlier.
        let mut lines = s.log_lines(&task).await;
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !lines.iter().any(|(_, m)| m.contains("Check that Dev is quiet")) && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
            lines = s.log_lines(&task).await;
        }
        assert!(messages(&lines).contains(&"before"), "{lines:?}");
        assert!(!messages(&lines).contains(&"after"));
        assert!(lines.iter().any(|(_, m)| m.contains("Check that Dev is quiet")), "{lines:?}");

        // Listing by the deployment finds it too; the default space route as well.
        let deployment = i["RelatedDocumentIds"][0].as_str().unwrap().to_owned();
        let by_deployment = s.get(&format!("/api/interruptions?regarding={deployment}")).await.body;
        assert_eq!(by_deployment["TotalResults"], 1, "{by_deployment}");
        assert_eq!(by_deployment["ItemType"], "Interruption");

        // Taking responsibility.
        let nobody = s.get(&format!("/api/Spaces-1/interruptions/{id}/responsible")).await;
        assert_eq!((nobody.status, nobody.body.clone()), (StatusCode::OK, Value::Null));
        let took = s.send(Method::PUT, &format!("/api/Spaces-1/interruptions/{id}/responsible"), &json!({})).await;
        assert_eq!(took.status, StatusCode::OK, "{}", took.body);
        assert_eq!(took.body["Username"], "admin");
        let i = s.get(&format!("/api/Spaces-1/interruptions/{id}")).await.body;
        assert_eq!((i["HasResponsibility"].as_bool(), i["ResponsibleUserId"].as_str()), (Some(true), Some("Users-1")));
        assert_eq!(s.get(&format!("/api/Spaces-1/interruptions/{id}/responsible")).await.body["Id"], "Users-1");

        // Bad answers change nothing.
        let r = submit(&s, &id, json!({"Notes": "hmm"}), &s.key).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.error_text().contains("Result is required"), "{}", r.error_text());
        let r = submit(&s, &id, json!({"Result": "Retry"}), &s.key).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(s.get(&format!("/api/Spaces-1/interruptions/{id}")).await.body["IsPending"], true);

        let r = submit(&s, &id, json!({"Instructions": null, "Notes": "all quiet", "Result": "Proceed"}), &s.key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!((r.body["IsPending"].as_bool(), r.body["Form"]["Values"]["Result"].as_str()), (Some(false), Some("Proceed")));

        // Both answers are in the audit log with the interruption before and after.
        let took = s.get(&format!("/api/events?regarding={id}&eventCategories=InterruptionResponsibilityTaken")).await.body;
        assert!(
            took["Items"][0]["ChangeDetails"]["Differences"].as_array().unwrap().iter().any(|d| d["Path"] == "/ResponsibleUserId" && d["After"] == "Users-1"),
            "{}: {took}",
            s.backend
        );
        let answered = s.get(&format!("/api/events?regarding={id}&eventCategories=InterruptionSubmitted")).await.body;
        let diffs = answered["Items"][0]["ChangeDetails"]["Differences"].as_array().cloned().unwrap_or_default();
        assert!(diffs.iter().any(|d| d["Path"] == "/IsPending" && d["Before"] == true && d["After"] == false), "{}: {answered}", s.backend);

        let t = s.wait_for_task(&task).await;
        assert_eq!((t["State"].as_str(), t["HasPendingInterruptions"].as_bool()), (Some("Success"), Some(false)), "{t}");
        let lines = s.log_lines(&task).await;
        let msgs = messages(&lines);
        assert!(msgs.contains(&"after"), "{lines:?}");
        assert!(msgs.contains(&"notes=all quiet approved=True"), "{lines:?}");
        assert!(
            lines.iter().any(|(c, m)| c == "Highlight" && m.contains("admin (Users-1) chose Proceed") && m.contains("all quiet")),
            "{lines:?}"
        );

        // A second answer is refused and changes nothing.
        let again = submit(&s, &id, json!({"Notes": "changed my mind", "Result": "Abort"}), &s.key).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        assert!(again.error_text().contains("already submitted Proceed"), "{}", again.error_text());
        let i = s.get(&format!("/api/Spaces-1/interruptions/{id}")).await.body;
        assert_eq!((i["Form"]["Values"]["Result"].as_str(), i["Form"]["Values"]["Notes"].as_str()), (Some("Proceed"), Some("all quiet")));
        let pending = s.get(&format!("/api/Spaces-1/interruptions?regarding={task}&pendingOnly=true")).await.body;
        assert_eq!(pending["TotalResults"], 0);
    })
    .await;
}

#[tokio::test]
async fn only_the_responsible_user_answers_and_abort_fails_the_deployment() {
    on_both("manual-abort", |s| async move {
        project_with_steps(
            &s,
            "Guarded",
            json!({}),
            vec![
                manual_step("Sign off", "Sign it off"),
                script_step("Ship", "echo shipped"),
            ],
        )
        .await;
        let other = s
            .create_user_in_role("bob", "userroles-projectdeployer")
            .await;
        let task = deploy(&s, "Guarded", None).await;
        let id = pending_interruption(&s, &task, None).await["Id"]
            .as_str()
            .unwrap()
            .to_owned();

        let took = s
            .send(
                Method::PUT,
                &format!("/api/Spaces-1/interruptions/{id}/responsible"),
                &json!({}),
            )
            .await;
        assert_eq!(took.status, StatusCode::OK);
        // Bob sees that he does not hold it, and may not answer.
        let seen = s
            .call_with(
                Method::GET,
                &format!("/api/Spaces-1/interruptions/{id}"),
                None,
                Some(&other),
            )
            .await
            .body;
        assert_eq!(
            (
                seen["HasResponsibility"].as_bool(),
                seen["ResponsibleUserId"].as_str()
            ),
            (Some(false), Some("Users-1"))
        );
        let r = submit(
            &s,
            &id,
            json!({"Notes": "bob says go", "Result": "Proceed"}),
            &other,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(
            r.error_text().contains("taken responsibility"),
            "{}",
            r.error_text()
        );
        let i = s
            .get(&format!("/api/Spaces-1/interruptions/{id}"))
            .await
            .body;
        assert_eq!(
            (
                i["IsPending"].as_bool(),
                i["ResponsibleUserId"].as_str(),
                i["Form"]["Values"]["Notes"].clone()
            ),
            (Some(true), Some("Users-1"), Value::Null)
        );
        assert_eq!(
            s.get(&format!("/api/tasks/{task}")).await.body["State"],
            "Executing"
        );

        let r = submit(
            &s,
            &id,
            json!({"Notes": "not today", "Result": "Abort"}),
            &s.key,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let t = s.wait_for_task(&task).await;
        assert_eq!(t["State"], "Failed", "{t}");
        let error = t["ErrorMessage"].as_str().unwrap();
        assert!(error.contains("aborted by admin: not today"), "{error}");
        let lines = s.log_lines(&task).await;
        assert!(!messages(&lines).contains(&"shipped"), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|(_, m)| m.contains("admin (Users-1) chose Abort") && m.contains("not today")),
            "{lines:?}"
        );
        // Unknown interruptions are 404.
        let r = s.get("/api/Spaces-1/interruptions/Interruptions-999").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn guided_failure_retries_only_the_failed_action_until_it_succeeds() {
    on_both("guided-retry", |s| async move {
        // Not below /tmp, which is each step's own; writable by every step's
        // uid (a root server runs each as its own), and so is the counter.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let anyone = std::os::unix::fs::PermissionsExt::from_mode(0o777);
        std::fs::set_permissions(dir.path(), anyone).unwrap();
        // On a host, steps run on its worker, which can write only its own
        // scratch directory (the steps' directories are below its `work`):
        // that lasts as long as the lease, so the counter goes there.
        let counter = if common::on_host() {
            "${PWD%/work/*}/attempts".to_owned()
        } else {
            dir.path().join("attempts").display().to_string()
        };
        // Fails on its first two runs, succeeds on the third.
        let flaky = format!(
            "umask 0\nn=$(cat \"{c}\" 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > \"{c}\"\nif [ $n -lt 3 ]; then echo \"failing $n\"; exit 3; fi\necho \"worked on try $n\"",
            c = counter
        );
        project_with_steps(
            &s,
            "Flaky",
            json!({}),
            vec![script_step("First", "echo first ran"), script_step("Flaky", &flaky), script_step("Last", "echo last ran")],
        )
        .await;
        let task = deploy(&s, "Flaky", Some(true)).await;
        let first = pending_interruption(&s, &task, None).await;
        let first_id = first["Id"].as_str().unwrap().to_owned();
        assert_eq!(first["Type"], "GuidedFailure");
        let names: Vec<&str> = first["Form"]["Elements"].as_array().unwrap().iter().map(|e| e["Name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Instructions", "Notes", "Guidance"]);
        let t = s.get(&format!("/api/tasks/{task}")).await.body;
        assert_eq!((t["State"].as_str(), t["HasPendingInterruptions"].as_bool()), (Some("Executing"), Some(true)));

        let r = submit(&s, &first_id, json!({"Notes": "try again", "Guidance": "Exclude"}), &s.key).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let r = submit(&s, &first_id, json!({"Notes": "try again", "Guidance": "Retry"}), &s.key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // The retry fails too, which asks again.
        let second = pending_interruption(&s, &task, Some(&first_id)).await;
        let r = submit(&s, second["Id"].as_str().unwrap(), json!({"Guidance": "retry"}), &s.key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);

        let t = s.wait_for_task(&task).await;
        assert_eq!((t["State"].as_str(), t["HasPendingInterruptions"].as_bool()), (Some("Success"), Some(false)), "{t}");
        let lines = s.log_lines(&task).await;
        let msgs = messages(&lines);
        let count = |m: &str| msgs.iter().filter(|x| **x == m).count();
        assert_eq!(
            (count("first ran"), count("failing 1"), count("failing 2"), count("worked on try 3"), count("last ran")),
            (1, 1, 1, 1, 1),
            "{lines:?}"
        );
        assert!(lines.iter().any(|(_, m)| m.contains("chose Retry") && m.contains("try again")), "{lines:?}");
        let details = s.get(&format!("/api/tasks/{task}/details")).await.body;
        let flaky_step = &details["ActivityLogs"][0]["Children"][1];
        let attempts: Vec<&str> = flaky_step["Children"].as_array().unwrap().iter().map(|c| c["Status"].as_str().unwrap()).collect();
        assert_eq!(attempts, ["Failed", "Failed", "Success"], "{flaky_step}");
        assert_eq!(flaky_step["Status"], "Success");
    })
    .await;
}

#[tokio::test]
async fn guided_failure_ignore_carries_on_and_fail_stops() {
    on_both("guided-ignore", |s| async move {
        // Guided failure from the project's default mode, not the request.
        project_with_steps(
            &s,
            "Brittle",
            json!({"DefaultGuidedFailureMode": "On"}),
            vec![script_step("Break", "echo breaking\nexit 4"), script_step("Carry on", "echo carried on")],
        )
        .await;
        let task = deploy(&s, "Brittle", None).await;
        let i = pending_interruption(&s, &task, None).await;
        let r = submit(&s, i["Id"].as_str().unwrap(), json!({"Notes": "known issue", "Guidance": "Ignore"}), &s.key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let t = s.wait_for_task(&task).await;
        assert_eq!(t["State"], "Success", "{t}");
        let lines = s.log_lines(&task).await;
        assert_eq!(messages(&lines).iter().filter(|m| **m == "breaking").count(), 1);
        assert!(messages(&lines).contains(&"carried on"), "{lines:?}");
        let details = s.get(&format!("/api/tasks/{task}/details")).await.body;
        let statuses: Vec<&str> = details["ActivityLogs"][0]["Children"].as_array().unwrap().iter().map(|c| c["Status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["SuccessWithWarning", "Success"]);

        // The same failure, told to fail (and the request turning it off works too).
        s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Brittle", "ReleaseVersion": "1.0.1"})).await;
        let d = s.create("/api/Spaces-1/deployments/create/untenanted/v1",
            json!({"ProjectName": "Brittle", "ReleaseVersion": "1.0.1", "EnvironmentNames": ["Dev"]})).await;
        let task = d["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        let i = pending_interruption(&s, &task, None).await;
        let r = submit(&s, i["Id"].as_str().unwrap(), json!({"Notes": "give up", "Guidance": "Fail"}), &s.key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let t = s.wait_for_task(&task).await;
        assert_eq!(t["State"], "Failed", "{t}");
        assert!(t["ErrorMessage"].as_str().unwrap().contains("exited with code 4"), "{t}");
        assert!(!messages(&s.log_lines(&task).await).contains(&"carried on"));

        s.create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Brittle", "ReleaseVersion": "1.0.2"})).await;
        let d = s.create("/api/Spaces-1/deployments/create/untenanted/v1",
            json!({"ProjectName": "Brittle", "ReleaseVersion": "1.0.2", "EnvironmentNames": ["Dev"], "UseGuidedFailure": false})).await;
        let task = d["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        assert_eq!(s.wait_for_task(&task).await["State"], "Failed");
    })
    .await;
}

#[tokio::test]
async fn cancelling_a_waiting_task_closes_its_interruption() {
    on_both("manual-cancel", |s| async move {
        project_with_steps(
            &s,
            "Waiting",
            json!({}),
            vec![manual_step("Approve", "Approve it")],
        )
        .await;
        let task = deploy(&s, "Waiting", None).await;
        let id = pending_interruption(&s, &task, None).await["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let started = std::time::Instant::now();
        let r = s
            .call_with(
                Method::POST,
                &format!("/api/tasks/{task}/cancel"),
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let t = s.wait_for_task(&task).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(
            (t["State"].as_str(), t["HasPendingInterruptions"].as_bool()),
            (Some("Canceled"), Some(false)),
            "{t}"
        );
        let i = s
            .get(&format!("/api/Spaces-1/interruptions/{id}"))
            .await
            .body;
        assert_eq!(i["IsPending"], false, "{i}");
        let r = submit(&s, &id, json!({"Result": "Proceed"}), &s.key).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.error_text().contains("cancelled"), "{}", r.error_text());
    })
    .await;
}

#[tokio::test]
async fn a_restart_closes_the_interruptions_of_the_tasks_it_fails() {
    on_both("manual-restart", |s| async move {
        project_with_steps(
            &s,
            "Interrupted",
            json!({}),
            vec![manual_step("Approve", "Approve it")],
        )
        .await;
        let task = deploy(&s, "Interrupted", None).await;
        let id = pending_interruption(&s, &task, None).await["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        // The same node starting again over the same database: its recovery
        // fails what the "previous run" left running. On PostgreSQL it
        // takes the task over instead and waits on the same interruption,
        // while the "previous run" loses it.
        let restarted = cuttle_service::Instance::open(s.inst.config.clone())
            .await
            .unwrap();
        if s.backend == "postgres" {
            let mut waiting = false;
            for _ in 0..300 {
                let lines = s.log_lines(&task).await;
                if lines
                    .iter()
                    .any(|(_, m)| m.contains("Still waiting for someone to proceed or abort"))
                {
                    waiting = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(waiting, "{:?}", s.log_lines(&task).await);
            let t = s.get(&format!("/api/tasks/{task}")).await.body;
            assert_eq!(t["State"], "Executing", "{t}");
            let i = pending_interruption(&s, &task, None).await;
            assert_eq!(i["Id"], id.as_str(), "the same interruption: {i}");
            // The first run finds out at its next renewal, and lets the task
            // go without closing the interruption.
            for _ in 0..300 {
                if s.inst.runner.running_count() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(s.inst.runner.running_count(), 0);
            let i = s
                .get(&format!("/api/Spaces-1/interruptions/{id}"))
                .await
                .body;
            assert_eq!(i["IsPending"], true, "{i}");
            restarted.runner.shutdown(Duration::from_secs(1)).await;
            return;
        }
        let t = s.get(&format!("/api/tasks/{task}")).await.body;
        assert_eq!(
            (t["State"].as_str(), t["HasPendingInterruptions"].as_bool()),
            (Some("Failed"), Some(false)),
            "{t}"
        );
        assert!(
            t["ErrorMessage"]
                .as_str()
                .unwrap()
                .contains("server stopped"),
            "{t}"
        );
        let i = s
            .get(&format!("/api/Spaces-1/interruptions/{id}"))
            .await
            .body;
        assert_eq!(i["IsPending"], false, "{i}");
        assert!(
            i["Form"]["Values"]["Notes"]
                .as_str()
                .unwrap()
                .contains("server stopped"),
            "{i}"
        );
        restarted.runner.shutdown(Duration::from_secs(1)).await;
        // The original runner sees the interruption closed and lets the task go.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(s.inst.runner.running_count(), 0);
    })
    .await;
}
