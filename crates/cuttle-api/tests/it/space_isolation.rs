//! Spaces are walls: a resource of one space, asked for through another
//! space's routes, answers as if its id did not exist, and nothing done
//! through those routes changes it.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A second space with an environment and a project whose one step waits
/// for a manual intervention, released and deployed there; returns (space,
/// release, deployment, task).
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
    // A manual intervention: the task waits on it, with an interruption.
    let process = json!({"Version": 0, "Steps": [{"Name": "Wait", "Actions": [{
        "Name": "Wait",
        "ActionType": "Octopus.Manual",
        "Properties": {
            "Octopus.Action.Manual.Instructions": "Wait here",
            "Octopus.Action.Manual.BlockConcurrentDeployments": "False",
            "Octopus.Action.RunOnServer": "true",
        },
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

/// The id of the first item of a collection.
async fn first_id(s: &Server, path: &str) -> String {
    let body = s.get(path).await.body;
    let item = if body.is_array() {
        &body[0]
    } else {
        &body["Items"][0]
    };
    item["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: nothing at {path}: {body}", s.backend))
        .to_owned()
}

#[tokio::test]
async fn fault_every_space_route_treats_another_spaces_ids_as_missing() {
    on_both("space-walls-all", |s| async move {
        let (sp, release, _deployment, task) = deploy_in_second_space(&s).await;
        let project = first_id(&s, &format!("/api/{sp}/projects")).await;
        let project_doc = s.get(&format!("/api/{sp}/projects/{project}")).await.body;
        let variables = project_doc["VariableSetId"].as_str().unwrap().to_owned();
        let environment = first_id(&s, &format!("/api/{sp}/environments")).await;
        let lifecycle = first_id(&s, &format!("/api/{sp}/lifecycles")).await;
        let group = first_id(&s, &format!("/api/{sp}/projectgroups")).await;
        let channel = first_id(&s, &format!("/api/{sp}/projects/{project}/channels")).await;
        let pool = first_id(&s, &format!("/api/{sp}/workerpools")).await;
        let policy = first_id(&s, &format!("/api/{sp}/machinepolicies")).await;
        let mut interruption = None;
        for _ in 0..500 {
            let found = s
                .get(&format!("/api/{sp}/interruptions?regarding={task}"))
                .await
                .body;
            if let Some(id) = found["Items"][0]["Id"].as_str() {
                interruption = Some(id.to_owned());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let interruption = interruption.expect("the manual step's interruption");

        for path in [
            format!("/api/Spaces-1/projects/{project}"),
            format!("/api/Spaces-1/projects/{project}/channels"),
            format!("/api/Spaces-1/projects/{project}/releases"),
            format!("/api/Spaces-1/projects/{project}/releases/1.0.0"),
            format!("/api/Spaces-1/projects/{project}/deploymentprocesses"),
            format!("/api/Spaces-1/variables/{variables}"),
            format!("/api/Spaces-1/environments/{environment}"),
            format!("/api/Spaces-1/environments/{environment}/machines"),
            format!("/api/Spaces-1/lifecycles/{lifecycle}"),
            format!("/api/Spaces-1/projectgroups/{group}"),
            format!("/api/Spaces-1/projectgroups/{group}/projects"),
            format!("/api/Spaces-1/channels/{channel}"),
            format!("/api/Spaces-1/workerpools/{pool}"),
            format!("/api/Spaces-1/workerpools/{pool}/workers"),
            format!("/api/Spaces-1/machinepolicies/{policy}"),
            format!("/api/Spaces-1/releases/{release}/deployments/preview/{environment}"),
            format!("/api/Spaces-1/interruptions/{interruption}"),
            format!("/api/Spaces-1/interruptions/{interruption}/responsible"),
            format!("/api/projects/{project}"),
            format!("/api/interruptions/{interruption}"),
        ] {
            let r = s.get(&path).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{} GET {path}: {}",
                s.backend,
                r.body
            );
        }

        // Writes through Spaces-1 are refused and change nothing.
        let writes = [
            (
                Method::PUT,
                format!("/api/Spaces-1/projects/{project}"),
                project_doc.clone(),
            ),
            (
                Method::DELETE,
                format!("/api/Spaces-1/projects/{project}"),
                json!({}),
            ),
            (
                Method::DELETE,
                format!("/api/Spaces-1/environments/{environment}"),
                json!({}),
            ),
            (
                Method::PUT,
                format!("/api/Spaces-1/environments/{environment}"),
                json!({"Name": "Taken"}),
            ),
            (
                Method::DELETE,
                format!("/api/Spaces-1/channels/{channel}"),
                json!({}),
            ),
            (
                Method::PUT,
                format!("/api/Spaces-1/variables/{variables}"),
                json!({"Variables": []}),
            ),
            (
                Method::PUT,
                format!("/api/Spaces-1/interruptions/{interruption}/responsible"),
                json!({}),
            ),
            (
                Method::POST,
                format!("/api/Spaces-1/interruptions/{interruption}/submit"),
                json!({"Result": "Proceed"}),
            ),
            (
                Method::POST,
                format!("/api/Spaces-1/tasks/{task}/cancel"),
                json!({}),
            ),
        ];
        for (method, path, body) in writes {
            let r = s.send(method.clone(), &path, &body).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{} {method} {path}: {}",
                s.backend,
                r.body
            );
        }
        for (path, body) in [
            (
                "/api/Spaces-1/deployments",
                json!({"ReleaseId": release, "EnvironmentId": environment}),
            ),
            (
                "/api/Spaces-1/releases",
                json!({"ProjectId": project, "Version": "9.9.9"}),
            ),
        ] {
            let r = s.post(path, body).await;
            assert!(
                r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST,
                "{} POST {path}: {} {}",
                s.backend,
                r.status,
                r.body
            );
        }
        let after = s.get(&format!("/api/{sp}/projects/{project}")).await.body;
        assert_eq!(after, project_doc, "{}", s.backend);
        assert_eq!(
            s.get(&format!("/api/{sp}/environments/{environment}"))
                .await
                .body["Name"],
            "Far"
        );
        let i = s
            .get(&format!("/api/{sp}/interruptions/{interruption}"))
            .await
            .body;
        assert_eq!(i["IsPending"], true, "{}: {i}", s.backend);
        assert_eq!(state_of(&s, &sp, &task).await, "Executing", "{}", s.backend);
        let releases = s
            .get(&format!("/api/{sp}/projects/{project}/releases"))
            .await
            .body;
        assert_eq!(releases["TotalResults"], 1, "{}: {releases}", s.backend);
        let deployments = s.get(&format!("/api/{sp}/deployments")).await.body;
        assert_eq!(
            deployments["TotalResults"], 1,
            "{}: {deployments}",
            s.backend
        );
        s.post(&format!("/api/{sp}/tasks/{task}/cancel"), json!({}))
            .await;
    })
    .await;
}

/// Every id a value names, as the whole string or as a path segment of a
/// link (`/api/Spaces-1/projects/Projects-1{?skip}`).
fn names_any(value: &Value, ids: &std::collections::BTreeSet<String>, found: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let segments = s.split(['/', '{', '?', '#', ',', '&', '=']);
            for part in std::iter::once(s.as_str()).chain(segments) {
                if ids.contains(part) {
                    found.push(s.clone());
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| names_any(v, ids, found)),
        Value::Object(map) => map.values().for_each(|v| names_any(v, ids, found)),
        _ => {}
    }
}

/// The links a response hands out, templates cut off.
fn links_in(value: &Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(links)) = map.get("Links") {
                for link in links.values().filter_map(Value::as_str) {
                    let link = link.split('{').next().unwrap_or(link);
                    if link.starts_with("/api/") {
                        out.insert(link.to_owned());
                    }
                }
            }
            map.values().for_each(|v| links_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| links_in(v, out)),
        _ => {}
    }
}

/// A manager of a second space walks every readable route of the API (its
/// space's and the installation's), then every link those answers hand
/// out: no answer names anything of the default space.
#[tokio::test]
async fn a_space_managers_every_read_and_link_names_nothing_of_another_space() {
    on_both("space_isolation_links", |s| async move {
        s.project_with_script("Web", "echo web", json!({})).await;
        let task = s.release_and_deploy("Web", "1.0.0").await;
        s.wait_for_task(&task).await;
        let (sp, _, _, _) = deploy_in_second_space(&s).await;
        let (manager, key) = s.service_account("far-manager").await;
        let team = s
            .create(
                "/api/teams",
                json!({"Name": "far managers", "SpaceId": sp, "MemberUserIds": [manager]}),
            )
            .await;
        s.create(
            "/api/scopeduserroles",
            json!({"TeamId": team["Id"], "UserRoleId": "userroles-spacemanager", "SpaceId": sp}),
        )
        .await;

        // Everything of the default space, by id (the built-in feed's id,
        // `feeds-builtin`, is every space's, as in Octopus).
        let mut theirs = std::collections::BTreeSet::from(["Spaces-1".to_owned()]);
        for area in [
            "projects",
            "environments",
            "releases",
            "deployments",
            "lifecycles",
            "projectgroups",
            "channels",
            "tasks",
            "libraryvariablesets",
            "machinepolicies",
            "workerpools",
        ] {
            let page = s.get(&format!("/api/Spaces-1/{area}?take=1000")).await.body;
            for item in page["Items"].as_array().unwrap_or(&Vec::new()) {
                if let Some(id) = item["Id"].as_str() {
                    theirs.insert(id.to_owned());
                }
            }
        }
        assert!(
            theirs.contains("Projects-1") && theirs.contains(&task),
            "{theirs:?}"
        );

        let mut to_visit: std::collections::BTreeSet<String> = cuttle_api::route_table()
            .into_iter()
            .filter(|r| r.method == "GET")
            .map(|r| r.path.replace("{space}", &sp))
            .filter(|p| !p.contains('{'))
            .collect();
        let mut visited = std::collections::BTreeSet::new();
        let mut leaks = vec![];
        // Two rounds: the routes, then the links their answers hand out.
        for _ in 0..2 {
            let mut next = std::collections::BTreeSet::new();
            for path in std::mem::take(&mut to_visit) {
                if !visited.insert(path.clone()) {
                    continue;
                }
                let r = s.call_with(Method::GET, &path, None, Some(&key)).await;
                if !r.status.is_success() {
                    continue;
                }
                let mut found = vec![];
                names_any(&r.body, &theirs, &mut found);
                if !found.is_empty() {
                    leaks.push(format!("{path}: {found:?}"));
                }
                links_in(&r.body, &mut next);
            }
            to_visit = next;
        }
        assert!(visited.len() > 60, "{visited:?}");
        assert!(leaks.is_empty(), "{}: {leaks:#?}", s.backend);
    })
    .await;
}
