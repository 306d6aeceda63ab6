//! Deleting a space, on both databases: refused until its task queue is
//! stopped (and always for the default space), then everything in it goes
//! in one transaction, with the package files no other space uses. A
//! stopped queue starts none of the space's tasks until it is restarted.

use crate::common;

use common::{on_both, Server};
use cuttle_model::Project;
use cuttle_store::packages::PackageQuery;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// The smallest zip there is: an end-of-central-directory record alone.
const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
/// Another empty zip, with a one-byte comment, so its file differs.
const COMMENTED_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0x";

async fn push_to(s: &Server, space: &str, file_name: &str, data: &[u8]) {
    let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name(file_name.to_owned());
    let resp = s
        .http()
        .post(format!("{}/api/{space}/packages/raw", s.url))
        .header("X-Octopus-ApiKey", &s.key)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", s.backend);
}

fn package_files(s: &Server) -> usize {
    std::fs::read_dir(s.inst.config.data_dir.join("packages"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .count()
        })
        .unwrap_or(0)
}

async fn delete(s: &Server, path: &str) -> common::Reply {
    s.call_with(Method::DELETE, path, None, Some(&s.key)).await
}

/// Sets the space's `TaskQueueStopped` with a PUT of its resource.
async fn stop_queue(s: &Server, space_id: &str, stopped: bool) {
    let mut space = s.get(&format!("/api/spaces/{space_id}")).await.body;
    space["TaskQueueStopped"] = json!(stopped);
    let r = s
        .send(Method::PUT, &format!("/api/spaces/{space_id}"), &space)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
    assert_eq!(r.body["TaskQueueStopped"], stopped);
}

/// A project with one script step in the space, and an environment `Dev`.
async fn project_in(s: &Server, space: &str) -> String {
    s.create(
        &format!("/api/{space}/environments"),
        json!({"Name": "Dev"}),
    )
    .await;
    let first_id = |v: Value| v["Items"][0]["Id"].as_str().unwrap().to_owned();
    let group = first_id(s.get(&format!("/api/{space}/projectgroups")).await.body);
    let lifecycle = first_id(s.get(&format!("/api/{space}/lifecycles")).await.body);
    let project = s
        .create(
            &format!("/api/{space}/projects"),
            json!({"Name": "Doomed app", "ProjectGroupId": group, "LifecycleId": lifecycle}),
        )
        .await;
    let id = project["Id"].as_str().unwrap().to_owned();
    let process = json!({"Version": 0, "Steps": [{"Name": "Run it", "Actions": [{
        "ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": "echo hi", "Octopus.Action.Script.Syntax": "Bash"}}]}]});
    let r = s
        .send(
            Method::PUT,
            &format!("/api/{space}/projects/{id}/deploymentprocesses"),
            &process,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
    id
}

#[tokio::test]
async fn a_stopped_space_is_deleted_with_everything_in_it() {
    on_both("space-delete", |s| async move {
        let space = s.create("/api/spaces", json!({"Name": "Doomed"})).await;
        let space_id = space["Id"].as_str().unwrap().to_owned();
        let project_id = project_in(&s, &space_id).await;
        push_to(&s, "Spaces-1", "Acme.Shared.1.0.0.zip", EMPTY_ZIP).await;
        push_to(&s, &space_id, "Acme.Shared.1.0.0.zip", EMPTY_ZIP).await;
        push_to(&s, &space_id, "Acme.Only.1.0.0.zip", COMMENTED_ZIP).await;
        assert_eq!(package_files(&s), 2, "{}", s.backend);

        // Refused while the queue runs, and nothing changes.
        let r = delete(&s, &format!("/api/spaces/{space_id}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}: {}", s.backend, r.body);
        assert!(
            r.error_text().contains("task queue") && r.error_text().contains("stopped"),
            "{}",
            r.error_text()
        );
        assert_eq!(s.get(&format!("/api/spaces/{space_id}")).await.status, StatusCode::OK);
        assert_eq!(
            s.get(&format!("/api/{space_id}/projects/{project_id}")).await.status,
            StatusCode::OK
        );

        // Stopped, the space's tasks wait in the queue.
        stop_queue(&s, &space_id, true).await;
        s.create(
            &format!("/api/{space_id}/releases/create/v1"),
            json!({"ProjectName": "Doomed app", "ReleaseVersion": "1.0.0"}),
        )
        .await;
        let d = s
            .create(
                &format!("/api/{space_id}/deployments/create/untenanted/v1"),
                json!({"ProjectName": "Doomed app", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Dev"]}),
            )
            .await;
        let task_id = d["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .unwrap()
            .to_owned();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let task = s.get(&format!("/api/tasks/{task_id}")).await.body;
        assert_eq!(task["State"], "Queued", "{}: {task}", s.backend);

        let r = delete(&s, &format!("/api/spaces/{space_id}")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}: {}", s.backend, r.body);
        assert_eq!(
            s.get(&format!("/api/spaces/{space_id}")).await.status,
            StatusCode::NOT_FOUND
        );
        let store = &s.inst.store;
        assert!(store.get::<Project>(&project_id).await.unwrap().is_none());
        assert!(store.task(&task_id).await.unwrap().is_none());
        let left = store
            .packages(&PackageQuery {
                space_id: space_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(left.is_empty(), "{}: {left:?}", s.backend);
        // The shared file stays for the default space; the other goes.
        assert_eq!(package_files(&s), 1, "{}", s.backend);
        let kept = s.get("/api/Spaces-1/packages?take=100").await.body;
        assert_eq!(kept["TotalResults"], 1, "{kept}");

        // Gone is gone.
        let r = delete(&s, &format!("/api/spaces/{space_id}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}: {}", s.backend, r.body);
    })
    .await;
}

#[tokio::test]
async fn the_default_space_cannot_be_deleted() {
    on_both("space-delete-default", |s| async move {
        stop_queue(&s, "Spaces-1", true).await;
        s.project_with_script("Waiting", "echo hi", json!({})).await;
        let task_id = s.release_and_deploy("Waiting", "1.0.0").await;
        let r = delete(&s, "/api/spaces/Spaces-1").await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{}: {}",
            s.backend,
            r.body
        );
        assert!(r.error_text().contains("default"), "{}", r.error_text());
        assert_eq!(s.get("/api/spaces/Spaces-1").await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let task = s.get(&format!("/api/tasks/{task_id}")).await.body;
        assert_eq!(task["State"], "Queued", "{}: {task}", s.backend);

        // Restarted, the queue runs what waited.
        stop_queue(&s, "Spaces-1", false).await;
        let task = s.wait_for_task(&task_id).await;
        assert_eq!(task["State"], "Success", "{}: {task}", s.backend);

        let r = delete(&s, "/api/spaces/Spaces-99").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}: {}", s.backend, r.body);
    })
    .await;
}
