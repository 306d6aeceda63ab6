//! Process semantics seen from outside: the deployment preview (order,
//! parallel groups, placement, skips and their reasons), process validation of
//! start triggers and run conditions, and a step whose role has no targets.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn put_process(s: &Server, project_id: &str, steps: Value) -> common::Reply {
    s.send(
        Method::PUT,
        &format!("/api/projects/{project_id}/deploymentprocesses"),
        &json!({"Version": 0, "Steps": steps}),
    )
    .await
}

fn script(name: &str, extra: Value) -> Value {
    let mut step = json!({"Name": name, "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": format!("echo {name}"),
                       "Octopus.Action.Script.Syntax": "Bash"}}]});
    if let (Value::Object(o), Value::Object(e)) = (&mut step, extra) {
        for (k, v) in e {
            if k == "Action" {
                if let (Value::Object(a), Value::Object(more)) = (&mut o["Actions"][0], v) {
                    a.extend(more);
                }
            } else if k == "Properties" {
                let props = o.entry("Properties").or_insert_with(|| json!({}));
                if let (Value::Object(p), Value::Object(more)) = (props, v) {
                    p.extend(more);
                }
            } else {
                o.insert(k, v);
            }
        }
    }
    step
}

#[tokio::test]
async fn the_preview_shows_groups_placement_and_skips_without_running() {
    on_both("plan-preview", |s| async move {
        let dev = s.create("/api/environments", json!({"Name": "Dev"})).await;
        let prod = s.create("/api/environments", json!({"Name": "Prod"})).await;
        let project = s
            .create(
                "/api/projects",
                json!({"Name": "Planned", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let pid = project["Id"].as_str().unwrap();
        let r = put_process(&s, pid, json!([
            script("First", json!({})),
            script("Alongside", json!({"StartTrigger": "StartWithPrevious"})),
            script("Off", json!({"Action": {"IsDisabled": true}})),
            script("Web only", json!({"Properties": {"Octopus.Action.TargetRoles": "web"}})),
            script("On failure", json!({"Condition": "Failure"})),
            script("Prod only", json!({"Action": {"Environments": [prod["Id"]]}})),
        ]))
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let release = s
            .create("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Planned", "ReleaseVersion": "1.0.0"}))
            .await;
        let rid = release["ReleaseId"].as_str().unwrap();
        let dev_id = dev["Id"].as_str().unwrap();

        let p = s.get(&format!("/api/Spaces-1/releases/{rid}/deployments/preview/{dev_id}")).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        let p = p.body;
        assert_eq!(p["Groups"], json!([[1, 2], [3], [4], [5], [6]]));
        let step = |n: usize| p["Steps"][n - 1]["Actions"][0].clone();
        assert_eq!((step(1)["Runs"].clone(), step(1)["Targets"].clone()), (json!(true), json!(["Built-in worker"])));
        assert_eq!(p["Steps"][1]["Group"], 1);
        assert_eq!(step(3)["SkipReason"], "the step is disabled");
        assert_eq!(step(4)["Runs"], false);
        assert!(step(4)["SkipReason"].as_str().unwrap().contains("role web"), "{p}");
        assert!(p["Warnings"][0].as_str().unwrap().contains("Web only"), "{p}");
        assert_eq!(p["Steps"][4]["ConditionNote"], "Runs only if an earlier step fails");
        assert_eq!(step(6)["SkipReason"], "the step does not run in this environment");
        for link in ["Self", "Release", "Environment"] {
            let href = p["Links"][link].as_str().unwrap();
            assert_eq!(s.get(href).await.status, StatusCode::OK, "{link} {href}");
        }
        let in_prod = s.get(&format!("/api/releases/{rid}/deployments/preview/{}", prod["Id"].as_str().unwrap())).await.body;
        assert_eq!(in_prod["Steps"][5]["Actions"][0]["Runs"], true);
        // The default lifecycle goes environment by environment: Prod waits for Dev.
        assert_eq!((p["Allowed"].clone(), in_prod["Allowed"].clone()), (json!(true), json!(false)));
        assert!(in_prod["BlockedReason"].as_str().unwrap().contains("Dev"), "{in_prod}");
        // Nothing ran: no task, no deployment.
        assert_eq!(s.get("/api/tasks").await.body["TotalResults"], 0);
        assert_eq!(s.get(&format!("/api/Spaces-1/releases/{rid}/deployments/preview/Environments-99")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(s.get(&format!("/api/Spaces-1/releases/Releases-99/deployments/preview/{dev_id}")).await.status, StatusCode::NOT_FOUND);

        // Deployed, the role-less step warns and the rest runs.
        let d = s
            .create("/api/Spaces-1/deployments/create/untenanted/v1",
                json!({"ProjectName": "Planned", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]}))
            .await;
        let task = d["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        let t = s.wait_for_task(&task).await;
        let lines = s.log_lines(&task).await;
        assert_eq!(t["State"], "Success", "{t} {lines:?}");
        assert!(lines.iter().any(|(c, m)| c == "Warning" && m.contains("Web only") && m.contains("role web")), "{lines:?}");
        for ran in ["First", "Alongside"] {
            assert!(lines.iter().any(|(c, m)| c == "Info" && m == ran), "{ran}: {lines:?}");
        }
        assert!(!lines.iter().any(|(_, m)| m == "Prod only" || m == "On failure"), "{lines:?}");
    })
    .await;
}

#[tokio::test]
async fn invalid_start_triggers_and_conditions_are_refused() {
    on_both("plan-invalid", |s| async move {
        let project = s
            .create(
                "/api/projects",
                json!({"Name": "Strict", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let pid = project["Id"].as_str().unwrap();
        for (steps, needle) in [
            (json!([script("Lead", json!({"StartTrigger": "StartWithPrevious"}))]), "first step"),
            (json!([script("A", json!({})), script("B", json!({"StartTrigger": "Sideways"}))]), "Sideways"),
            (json!([script("V", json!({"Condition": "Variable"}))]), "ConditionVariableExpression"),
        ] {
            let r = put_process(&s, pid, steps).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
            assert!(r.error_text().contains(needle), "{needle}: {}", r.body);
        }
        let process = s.get(&format!("/api/projects/{pid}/deploymentprocesses")).await.body;
        assert_eq!((process["Version"].as_i64(), process["Steps"].as_array().map(Vec::len)), (Some(0), Some(0)));
    })
    .await;
}

#[tokio::test]
async fn steps_that_start_with_the_previous_one_run_at_the_same_time() {
    on_both("plan-parallel", |s| async move {
        s.create("/api/environments", json!({"Name": "Dev"})).await;
        let project = s
            .create(
                "/api/projects",
                json!({"Name": "Together", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let slow = |name: &str, trigger: &str| {
            let mut step = script(name, json!({"StartTrigger": trigger}));
            step["Actions"][0]["Properties"]["Octopus.Action.Script.ScriptBody"] =
                json!(format!("sleep 0.7; echo {name} done"));
            step
        };
        let r = put_process(&s, project["Id"].as_str().unwrap(), json!([
            slow("One", "StartAfterPrevious"),
            slow("Two", "StartWithPrevious"),
            slow("Three", "StartAfterPrevious"),
        ]))
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let task = s.release_and_deploy("Together", "1.0.0").await;
        let t = s.wait_for_task(&task).await;
        assert_eq!(t["State"], "Success", "{t}");
        let details = s.get(&format!("/api/tasks/{task}/details")).await.body;
        let steps = details["ActivityLogs"][0]["Children"].as_array().unwrap().clone();
        let at = |i: usize, field: &str| steps[i][field].as_str().unwrap().to_owned();
        assert_eq!(steps.iter().map(|s| s["Name"].as_str().unwrap()).collect::<Vec<_>>(),
            ["Step 1: One", "Step 2: Two", "Step 3: Three"]);
        // One and Two overlap; Three waits for both.
        assert!(at(1, "Started") < at(0, "Ended") && at(0, "Started") < at(1, "Ended"), "{steps:?}");
        assert!(at(2, "Started") >= at(0, "Ended") && at(2, "Started") >= at(1, "Ended"), "{steps:?}");
        let lines = s.log_lines(&task).await;
        for name in ["One", "Two", "Three"] {
            assert!(lines.iter().any(|(_, m)| m == &format!("{name} done")), "{lines:?}");
        }
    })
    .await;
}
