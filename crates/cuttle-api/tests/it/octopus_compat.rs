//! What long-lived Octopus clients take for granted beyond the resource
//! shapes: route paths that match whatever the case of their literal
//! segments, and a capabilities document that lists, by Octopus's names,
//! the requests the server answers.

use crate::common;

use common::{on_both, Server};
use cuttle_api::capabilities::CAPABILITIES;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn same_answer(s: &Server, camel: &str, lower: &str) -> Value {
    let a = s.get(camel).await;
    let b = s.get(lower).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}: {camel}: {}",
        s.backend,
        a.body
    );
    assert_eq!(
        b.status,
        StatusCode::OK,
        "{}: {lower}: {}",
        s.backend,
        b.body
    );
    assert_eq!(a.body, b.body, "{camel}");
    a.body
}

async fn delete(s: &Server, path: &str) -> StatusCode {
    s.call_with(Method::DELETE, path, None, Some(&s.key))
        .await
        .status
}

#[tokio::test]
async fn literal_segments_match_in_any_case_and_ids_keep_theirs() {
    on_both("route-case", |s| async move {
        // GET: collections under their camel-case names, with and without
        // the space, and with the query kept as sent.
        for (camel, lower) in [
            ("/api/Spaces-1/ProjectGroups", "/api/Spaces-1/projectgroups"),
            ("/api/libraryVariableSets", "/api/libraryvariablesets"),
            (
                "/api/Spaces-1/MachinePolicies",
                "/api/Spaces-1/machinepolicies",
            ),
            ("/api/workerPools", "/api/workerpools"),
            ("/api/Spaces-1/Feeds?take=1", "/api/Spaces-1/feeds?take=1"),
            ("/API/Spaces/All", "/api/spaces/all"),
            ("/api/Spaces", "/api/spaces"),
            ("/api/Users/Me", "/api/users/me"),
            ("/API", "/api"),
        ] {
            same_answer(&s, camel, lower).await;
        }
        let filtered = s
            .get("/api/Spaces-1/Environments?partialName=nothing-is-called-this")
            .await;
        assert_eq!(filtered.body["TotalResults"], 0, "{}", filtered.body);
        // `/api/Projects` is the project list, not a space called Projects.
        let projects = s.get("/api/Projects").await;
        assert_eq!(projects.body["ItemType"], "Project", "{}", projects.body);

        // POST, then GET, PUT and DELETE through camel-case paths.
        let group = s
            .create("/api/Spaces-1/ProjectGroups", json!({"Name": "Web things"}))
            .await;
        let group_id = group["Id"].as_str().unwrap().to_owned();
        let project = s
            .create(
                "/api/Spaces-1/Projects",
                json!({"Name": "Web", "ProjectGroupId": group_id, "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let project_id = project["Id"].as_str().unwrap().to_owned();
        let process_id = project["DeploymentProcessId"].as_str().unwrap().to_owned();
        let process = same_answer(
            &s,
            &format!("/api/Spaces-1/DeploymentProcesses/{process_id}"),
            &format!("/api/Spaces-1/deploymentprocesses/{process_id}"),
        )
        .await;
        same_answer(
            &s,
            &format!("/api/Spaces-1/Projects/{project_id}/DeploymentProcesses"),
            &format!("/api/Spaces-1/projects/{project_id}/deploymentprocesses"),
        )
        .await;
        let mut changed = process.clone();
        changed["Steps"] = json!([{"Name": "Say hi", "Actions": [{"Name": "Say hi",
            "ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.RunOnServer": "true",
                "Octopus.Action.Script.ScriptBody": "echo hi"}}]}]);
        let put = s
            .send(
                Method::PUT,
                &format!("/api/Spaces-1/deploymentProcesses/{process_id}"),
                &changed,
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        let read = s
            .get(&format!("/api/Spaces-1/deploymentprocesses/{process_id}"))
            .await
            .body;
        assert_eq!(read["Steps"][0]["Name"], "Say hi", "{read}");

        let set = s
            .create(
                "/api/LibraryVariableSets",
                json!({"Name": "Shared", "Description": ""}),
            )
            .await;
        let set_id = set["Id"].as_str().unwrap();
        assert_eq!(
            delete(&s, &format!("/api/Spaces-1/LibraryVariableSets/{set_id}")).await,
            StatusCode::NO_CONTENT
        );
        let gone = s.get(&format!("/api/libraryvariablesets/{set_id}")).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);

        // Ids are not literals: one in the wrong case is found as it was
        // before, that is not at all.
        let wrong_case = process_id.to_ascii_uppercase();
        for path in [
            format!("/api/Spaces-1/DeploymentProcesses/{wrong_case}"),
            format!("/api/Spaces-1/deploymentprocesses/{wrong_case}"),
        ] {
            let r = s.get(&path).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        }
        let lower_space = s.get("/api/spaces-1/projects").await;
        let upper_space = s.get("/api/SPACES-1/Projects").await;
        assert_eq!(lower_space.status, upper_space.status);

        // Build information: its own route in any case; Octopus has no
        // route without the hyphen, and neither does Cuttle.
        same_answer(
            &s,
            "/api/Spaces-1/Build-Information",
            "/api/Spaces-1/build-information",
        )
        .await;
        for unknown in [
            "/api/Spaces-1/BuildInformation",
            "/api/Spaces-1/buildinformation",
            "/api/Spaces-1/NoSuchThing",
            "/api/Spaces-1/Projects/Projects-1/NoSuchThing",
            "/api/NoSuchThing/At/All",
        ] {
            let r = s.get(unknown).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{unknown}: {}", r.body);
        }

        // The portal's pages are where they were.
        let signin = s
            .http()
            .get(format!("{}/signin", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(signin.status(), StatusCode::OK);
        let home = s
            .client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/", s.url))
            .send()
            .await
            .unwrap();
        assert!(
            home.status().is_success() || home.status().is_redirection(),
            "{}",
            home.status()
        );
    })
    .await;
}

#[tokio::test]
async fn capabilities_name_the_requests_the_server_answers() {
    on_both("capabilities", |s| async move {
        let listed = s.get("/api/capabilities").await;
        assert_eq!(listed.status, StatusCode::OK);
        let names: Vec<&str> = listed.body["Capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for expected in [
            "GetAllSpacesRequest",
            "CreateReleaseCommandV1",
            "CreateDeploymentUntenantedCommandV1",
        ] {
            assert!(names.contains(&expected), "{expected}: {names:?}");
        }
        // Every name listed stands for a request that is answered: with an
        // empty body a command is refused as invalid, never unknown.
        for name in &names {
            let c = CAPABILITIES
                .iter()
                .find(|c| c.name == *name)
                .unwrap_or_else(|| panic!("{name} has no route"));
            let path = c.path.replace("{spaceId}", "Spaces-1");
            let method = Method::from_bytes(c.method.as_bytes()).unwrap();
            let r = match method {
                Method::GET => s.get(&path).await,
                m => s.send(m, &path, &json!({})).await,
            };
            assert!(
                r.status != StatusCode::NOT_FOUND && r.status != StatusCode::METHOD_NOT_ALLOWED,
                "{name}: {} {path} → {}: {}",
                c.method,
                r.status,
                r.body
            );
        }
        assert_eq!(names.len(), CAPABILITIES.len(), "{names:?}");
    })
    .await;
}
