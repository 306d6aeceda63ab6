//! Fields the official Octopus TypeScript client declares on the resources
//! its release and deployment flows read back — a project, an environment,
//! a deployment process's actions — in the shape Octopus gives them, so that
//! code written against the client finds them.

use crate::common;

use common::on_both;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn script_action(container: Value) -> Value {
    json!({"Id": "", "Name": "Run a Script", "ActionType": "Octopus.Script", "Container": container,
        "Properties": {"Octopus.Action.RunOnServer": "true", "Octopus.Action.Script.ScriptSource": "Inline",
            "Octopus.Action.Script.Syntax": "Bash", "Octopus.Action.Script.ScriptBody": "echo hello"}})
}

fn process_with(version: &Value, container: Value) -> Value {
    json!({"Version": version, "Steps": [{"Id": "", "Name": "Say hello", "Properties": {},
        "Actions": [script_action(container)]}]})
}

/// What a project that uses none of Octopus's Git, release-creation,
/// template or extension features shows for them.
fn assert_project_shape(p: &Value, backend: &str) {
    assert_eq!(p["IsVersionControlled"], false, "{backend}: {p}");
    assert_eq!(
        p["PersistenceSettings"],
        json!({"Type": "Database"}),
        "{backend}: {p}"
    );
    assert_eq!(
        p["ReleaseCreationStrategy"],
        json!({"ChannelId": null, "ReleaseCreationPackage": null, "ReleaseCreationPackageStepId": null}),
        "{backend}: {p}"
    );
    for list in [
        "Templates",
        "AutoDeployReleaseOverrides",
        "ExtensionSettings",
    ] {
        assert_eq!(p[list], json!([]), "{backend}: {list} in {p}");
    }
    assert!(
        p.get("ClonedFromProjectId").is_some_and(Value::is_null),
        "{backend}: {p}"
    );
}

#[tokio::test]
async fn projects_show_the_fields_octopus_clients_read_and_ignore_what_cuttle_does_not_keep() {
    on_both("client-shapes-project", |s| async move {
        let created = s
            .create(
                "/api/Spaces-1/projects",
                json!({"Name": "Shapes", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        assert_project_shape(&created, s.backend);
        let id = created["Id"].as_str().unwrap();
        let path = format!("/api/Spaces-1/projects/{id}");
        assert_project_shape(&s.get(&path).await.body, s.backend);
        let listed = s.get("/api/Spaces-1/projects?partialName=Shapes").await.body;
        assert_project_shape(&listed["Items"][0], s.backend);

        // A client that sends them back changed (as one copying a project
        // from Octopus would) does not make the project a Git one.
        let mut changed = created.clone();
        changed["Description"] = json!("now described");
        changed["IsVersionControlled"] = json!(true);
        changed["PersistenceSettings"] = json!({"Type": "VersionControlled", "Url": "https://git.example/x.git",
            "DefaultBranch": "main", "BasePath": ".octopus", "Credentials": {"Type": "Anonymous"}});
        changed["Templates"] = json!([{"Name": "Region", "Label": "Region"}]);
        changed["ClonedFromProjectId"] = json!("Projects-99");
        let r = s.send(Method::PUT, &path, &changed).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
        assert_eq!(r.body["Description"], "now described");
        assert_project_shape(&r.body, s.backend);
        assert_project_shape(&s.get(&path).await.body, s.backend);
    })
    .await;
}

#[tokio::test]
async fn environments_show_empty_extension_settings() {
    on_both("client-shapes-environment", |s| async move {
        let created = s
            .create(
                "/api/Spaces-1/environments",
                json!({"Name": "Staging", "ExtensionSettings": [{"ExtensionId": "jira-integration", "Values": {}}]}),
            )
            .await;
        assert_eq!(created["ExtensionSettings"], json!([]), "{created}");
        let id = created["Id"].as_str().unwrap();
        let got = s.get(&format!("/api/Spaces-1/environments/{id}")).await.body;
        assert_eq!(got["ExtensionSettings"], json!([]), "{got}");
    })
    .await;
}

#[tokio::test]
async fn actions_keep_the_empty_container_clients_send_and_refuse_a_container_image() {
    on_both("client-shapes-container", |s| async move {
        let project = s
            .create(
                "/api/Spaces-1/projects",
                json!({"Name": "Containers", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let path = format!(
            "/api/Spaces-1/projects/{}/deploymentprocesses",
            project["Id"].as_str().unwrap()
        );
        let empty = json!({"Image": null, "FeedId": null});

        // The official client's own deployment tests send this container.
        let before = s.get(&path).await.body;
        let r = s
            .send(Method::PUT, &path, &process_with(&before["Version"], empty.clone()))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
        assert_eq!(r.body["Steps"][0]["Actions"][0]["Container"], empty);
        let saved = s.get(&path).await.body;
        assert_eq!(saved["Steps"][0]["Actions"][0]["Container"], empty);

        // Without one, or with an empty image, the action has the empty one.
        let mut bare = process_with(&saved["Version"], Value::Null);
        bare["Steps"][0]["Actions"][0]
            .as_object_mut()
            .unwrap()
            .remove("Container");
        let r = s.send(Method::PUT, &path, &bare).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
        assert_eq!(r.body["Steps"][0]["Actions"][0]["Container"], empty);
        let r = s
            .send(
                Method::PUT,
                &path,
                &process_with(&r.body["Version"], json!({"Image": " ", "FeedId": null})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
        assert_eq!(r.body["Steps"][0]["Actions"][0]["Container"], empty);

        // An image would have to be run; Cuttle cannot, and says so.
        let kept = s.get(&path).await.body;
        let r = s
            .send(
                Method::PUT,
                &path,
                &process_with(&kept["Version"], json!({"Image": "ubuntu:22.04", "FeedId": "feeds-docker"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}: {}", s.backend, r.body);
        let text = r.error_text();
        assert!(
            text.contains("container image 'ubuntu:22.04'") && text.contains("Run a Script"),
            "{text}"
        );
        assert_eq!(s.get(&path).await.body, kept, "{}", s.backend);
    })
    .await;
}
