//! Spaces are walls: a resource of one space, asked for through another
//! space's routes, answers as if its id did not exist, and nothing done
//! through those routes changes it.

mod common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A second space with an environment and a project whose one step sleeps,
/// released and deployed there; returns (space, release, deployment, task).
async fn deploy_in_second_space(s: &Server) -> (String, String, String, String) {
    let space = s.create("/api/spaces", json!({"Name": "Elsewhere"})).await;
    let sp = space["Id"].as_str().unwrap().to_owned();
    let group = s.get(&format!("/api/{sp}/projectgroups/all")).await.body[0]["Id"].clone();
    let lifecycle = s.get(&format!("/api/{sp}/lifecycles")).await.body["Items"][0]["Id"].clone();
    s.create(&format!("/api/{sp}/environments"), json!({"Name": "Far"}))
        .await;
    let project = s
        .create(
            &format!("/api/{sp}/projects"),
            json!({"Name": "Remote", "ProjectGroupId": group, "LifecycleId": lifecycle}),
        )
        .await;
    let process = json!({"Version": 0, "Steps": [{"Name": "Wait", "Actions": [{
        "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": "echo waiting; sleep 30", "Octopus.Action.Script.Syntax": "Bash"},
    }]}]});
    let path = format!(
        "/api/{sp}/projects/{}/deploymentprocesses",
        project["Id"].as_str().unwrap()
    );
    let r = s.send(Method::PUT, &path, &process).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let release = s
        .create(
            &format!("/api/{sp}/releases/create/v1"),
            json!({"ProjectName": "Remote", "ReleaseVersion": "1.0.0"}),
        )
        .await["ReleaseId"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = s
        .create(
            &format!("/api/{sp}/deployments/create/untenanted/v1"),
            json!({"ProjectName": "Remote", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Far"]}),
        )
        .await;
    let d = &created["DeploymentServerTasks"][0];
    (
        sp,
        release,
        d["DeploymentId"].as_str().unwrap().to_owned(),
        d["ServerTaskId"].as_str().unwrap().to_owned(),
    )
}

async fn state_of(s: &Server, space: &str, task: &str) -> Value {
    s.get(&format!("/api/{space}/tasks/{task}")).await.body["State"].clone()
}

#[tokio::test]
async fn fault_another_spaces_task_is_not_found_and_not_cancelled() {
    on_both("space-walls", |s| async move {
        let (sp, release, deployment, task) = deploy_in_second_space(&s).await;
        // Running (or about to), so a cancel would show.
        for _ in 0..500 {
            if state_of(&s, &sp, &task).await == "Executing" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(state_of(&s, &sp, &task).await, "Executing", "{}", s.backend);

        let reads = [
            format!("/api/Spaces-1/tasks/{task}"),
            format!("/api/Spaces-1/tasks/{task}/details"),
            format!("/api/Spaces-1/tasks/{task}/raw"),
            format!("/api/Spaces-1/tasks/{task}/stream"),
            format!("/api/Spaces-1/releases/{release}"),
            format!("/api/Spaces-1/releases/{release}/deployments"),
            format!("/api/Spaces-1/releases/{release}/progression"),
            format!("/api/Spaces-1/deployments/{deployment}"),
            format!("/api/releases/{release}"),
            format!("/api/deployments/{deployment}"),
        ];
        for path in &reads {
            let r = s.get(path).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{} GET {path}: {}",
                s.backend,
                r.body
            );
        }
        let listed = s.get(&format!("/api/Spaces-1/tasks?ids={task}")).await.body;
        assert_eq!(listed["TotalResults"], 0, "{}: {listed}", s.backend);

        let r = s
            .post(&format!("/api/Spaces-1/tasks/{task}/cancel"), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}: {}", s.backend, r.body);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            state_of(&s, &sp, &task).await,
            "Executing",
            "{}: a cancel through another space's route changed the task",
            s.backend
        );

        // Its own space's routes still answer, and cancel it.
        for path in [
            format!("/api/{sp}/tasks/{task}/details"),
            format!("/api/{sp}/tasks/{task}/raw"),
            format!("/api/{sp}/deployments/{deployment}"),
        ] {
            let r = s.get(&path).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{} GET {path}: {}",
                s.backend,
                r.body
            );
        }
        let r = s
            .post(&format!("/api/{sp}/tasks/{task}/cancel"), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
        let done = s.wait_for_task(&task).await;
        assert_eq!(done["State"], "Canceled", "{}", s.backend);
    })
    .await;
}
