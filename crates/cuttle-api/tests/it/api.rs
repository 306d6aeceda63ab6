//! The REST API over HTTP against a real server and database: shapes,
//! paging, links, and every bad-input case returning the right status with a
//! readable error and writing nothing.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn count(s: &Server, path: &str) -> i64 {
    s.get(path).await.body["TotalResults"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test]
async fn root_space_and_defaults() {
    on_both("root", |s| async move {
        let root = s.call_with(Method::GET, "/api", None, None).await;
        assert_eq!(root.status, StatusCode::OK);
        assert_eq!(root.body["ApiVersion"], "3.0.0");
        let version = semver::Version::parse(root.body["Version"].as_str().unwrap()).unwrap();
        assert!(
            version >= semver::Version::new(2022, 3, 5512),
            "clients need at least 2022.3.5512"
        );

        let spaces = s
            .get("/api/spaces?partialName=Default&skip=0&take=2147483647")
            .await
            .body;
        assert_eq!(spaces["Items"][0]["Id"], "Spaces-1");
        assert_eq!(spaces["Items"][0]["Name"], "Default");
        assert_eq!(spaces["Items"][0]["IsDefault"], true);
        let groups = s.get("/api/Spaces-1/projectgroups/all").await.body;
        assert_eq!(groups[0]["Name"], "Default Project Group");
        let lifecycles = s
            .get("/api/Spaces-1/lifecycles?partialName=default")
            .await
            .body;
        assert_eq!(lifecycles["Items"][0]["Name"], "Default Lifecycle");
        assert_eq!(lifecycles["Items"][0]["Phases"], json!([]));
        let feeds = s.get("/api/Spaces-1/feeds?take=1").await.body;
        assert_eq!(feeds["Items"][0]["Id"], "feeds-builtin");
        assert_eq!(feeds["Items"][0]["FeedType"], "BuiltIn");
        let me = s.get("/api/users/me").await;
        assert_eq!(
            (me.status, me.body["Username"].as_str()),
            (StatusCode::OK, Some("admin"))
        );
        assert!(me.body.get("PasswordHash").is_none());

        // A new space starts with its own defaults.
        let space = s.create("/api/spaces", json!({"Name": "Team B"})).await;
        let id = space["Id"].as_str().unwrap();
        assert_eq!(
            s.get(&format!("/api/{id}/projectgroups/all"))
                .await
                .body
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(count(&s, &format!("/api/{id}/lifecycles")).await, 1);
        assert_eq!(
            count(&s, "/api/lifecycles").await,
            1,
            "space-less routes act on the default space"
        );
    })
    .await;
}

#[tokio::test]
async fn paging_filters_and_links_resolve() {
    on_both("paging", |s| async move {
        for name in ["Dev", "Test", "Staging", "Production", "Production EU"] {
            s.create("/api/environments", json!({"name": name})).await;
        }
        let p = s.get("/api/Spaces-1/environments?skip=1&take=2").await.body;
        assert_eq!(
            (p["TotalResults"].as_i64(), p["ItemsPerPage"].as_i64()),
            (Some(5), Some(2))
        );
        assert_eq!(
            (p["NumberOfPages"].as_i64(), p["LastPageNumber"].as_i64()),
            (Some(3), Some(2))
        );
        assert_eq!(p["Items"][0]["Name"], "Test");
        assert!(p["Links"]["Page.Next"].is_string());
        assert_eq!(count(&s, "/api/environments?partialName=prod").await, 2);
        assert_eq!(count(&s, "/api/environments?name=production").await, 1);
        assert_eq!(
            count(
                &s,
                "/api/environments?ids=Environments-1,Environments-3,Environments-99"
            )
            .await,
            2
        );
        assert_eq!(count(&s, "/api/environments?take=2147483647").await, 5);
        let bad = s.get("/api/environments?skip=lots").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);

        // Every link of every kind of resource answers.
        let project = s
            .project_with_script("Linked", "echo linked", json!({}))
            .await;
        let task = s.release_and_deploy("Linked", "1.0.0").await;
        s.wait_for_task(&task).await;
        let release = s.get("/api/projects/Linked/releases/1.0.0").await.body;
        let deployment = s.get("/api/deployments").await.body["Items"][0].clone();
        let resources = [
            s.get("/api/spaces/Spaces-1").await.body,
            s.get("/api/environments/Environments-1").await.body,
            project.clone(),
            release,
            deployment,
            s.get(&format!("/api/tasks/{task}")).await.body,
            s.get("/api/users/me").await.body,
        ];
        for r in resources {
            let links = r["Links"]
                .as_object()
                .unwrap_or_else(|| panic!("no Links in {r}"));
            assert!(links.contains_key("Self"));
            for (name, href) in links {
                let href = href.as_str().unwrap();
                if name == "Cancel" || href.contains('{') {
                    continue;
                }
                let got = s.get(href).await;
                assert_eq!(
                    got.status,
                    StatusCode::OK,
                    "{}: link {name} → {href}: {}",
                    s.backend,
                    got.body
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn authentication_is_required() {
    on_both("auth", |s| async move {
        for key in [None, Some(""), Some("API-NOTAREALKEYNOTAREALKEY0000000")] {
            let r = s.call_with(Method::GET, "/api/projects", None, key).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{key:?}");
            assert!(!r.error_text().is_empty());
        }
        let bearer = s
            .http()
            .get(format!("{}/api/users/me", s.url))
            .bearer_auth(&s.key)
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), StatusCode::OK);
        let query = s
            .call_with(
                Method::GET,
                &format!("/api/users/me?apikey={}", s.key),
                None,
                None,
            )
            .await;
        assert_eq!(query.status, StatusCode::OK);

        // A key works until it is revoked, then writes nothing.
        let me = s.get("/api/users/me").await.body;
        let uid = me["Id"].as_str().unwrap();
        let created = s
            .create(
                &format!("/api/users/{uid}/apikeys"),
                json!({"Purpose": "ci"}),
            )
            .await;
        let key = created["ApiKey"].as_str().unwrap().to_owned();
        assert!(key.starts_with("API-"));
        let listed = s.get(&format!("/api/users/{uid}/apikeys")).await.body;
        assert!(
            listed["Items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k.get("ApiKey").is_none()),
            "secrets are shown once"
        );
        assert_eq!(
            s.call_with(Method::GET, "/api/users/me", None, Some(&key))
                .await
                .status,
            StatusCode::OK
        );
        let del = s
            .call_with(
                Method::DELETE,
                &format!(
                    "/api/users/{uid}/apikeys/{}",
                    created["Id"].as_str().unwrap()
                ),
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        let before = count(&s, "/api/environments").await;
        let r = s
            .call_with(
                Method::POST,
                "/api/environments",
                Some(r#"{"Name":"Sneaky"}"#),
                Some(&key),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.error_text().contains("revoked"), "{}", r.error_text());
        assert_eq!(count(&s, "/api/environments").await, before);
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    on_both("bad-input", |s| async move {
        let project = s.project_with_script("Web", "echo web", json!({})).await;
        s.project_with_script("Api", "echo api", json!({})).await;
        let envs = count(&s, "/api/environments").await;
        let projects = count(&s, "/api/projects").await;

        // Malformed JSON.
        let r = s.call_with(Method::POST, "/api/environments", Some("{\"Name\": "), Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("not valid JSON"), "{}", r.error_text());
        let r = s.call_with(Method::POST, "/api/environments", Some(""), Some(&s.key)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        // Missing required fields, each named.
        let r = s.post("/api/environments", json!({"Description": "no name"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("Name is required"), "{}", r.error_text());
        let r = s.post("/api/projects", json!({"Name": "Orphan"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("ProjectGroupId is required") && r.error_text().contains("LifecycleId is required"), "{}", r.error_text());
        let r = s.post("/api/Spaces-1/deployments/create/untenanted/v1", json!({"ProjectName": "Web"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("ReleaseVersion is required"), "{}", r.error_text());

        // Unknown ids, in the route and in the body.
        let r = s.get("/api/environments/Environments-999").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.error_text().contains("Environments-999"), "{}", r.error_text());
        assert_eq!(s.get("/api/Spaces-77/projects").await.status, StatusCode::NOT_FOUND);
        assert_eq!(s.get("/api/no/such/route/here").await.status, StatusCode::NOT_FOUND);
        let r = s.post("/api/projects", json!({"Name": "Lost", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-404"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("Lifecycles-404"), "{}", r.error_text());
        let r = s.post("/api/deployments", json!({"ReleaseId": "Releases-404", "EnvironmentId": "Environments-1"})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.error_text().contains("Releases-404"), "{}", r.error_text());
        let r = s.post("/api/Spaces-1/deployments/create/untenanted/v1", json!({"ProjectName": "Web", "ReleaseVersion": "9.9.9", "EnvironmentNames": ["Dev"]})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.error_text().contains("9.9.9"), "{}", r.error_text());

        // Unknown task ids are simply absent from lists.
        let r = s.get("/api/Spaces-1/tasks?ids=ServerTasks-404&skip=0&take=300").await;
        assert_eq!((r.status, r.body["Items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));

        // Duplicate names.
        let r = s.post("/api/environments", json!({"Name": "dev"})).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.error_text().contains("already exists"), "{}", r.error_text());
        let r = s.post("/api/projects", json!({"Name": "WEB", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"})).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!((count(&s, "/api/environments").await, count(&s, "/api/projects").await), (envs, projects));

        // A release version that already exists for the project.
        let pid = project["Id"].as_str().unwrap();
        s.create("/api/releases", json!({"ProjectId": pid, "Version": "1.0.0"})).await;
        let r = s.post("/api/releases", json!({"ProjectId": pid, "Version": "1.0.0"})).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.error_text().contains("1.0.0"), "{}", r.error_text());
        let r = s.post("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Web", "ReleaseVersion": "1.0.0"})).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        let r = s.post("/api/releases", json!({"ProjectId": pid, "Version": "not a version"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(count(&s, &format!("/api/projects/{pid}/releases")).await, 1);

        // Deploying a release of another project.
        let release = s.get("/api/projects/Web/releases/1.0.0").await.body;
        let other = s.get("/api/projects/Api").await.body;
        let r = s.post("/api/deployments", json!({"ReleaseId": release["Id"], "EnvironmentId": "Environments-1", "ProjectId": other["Id"]})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error_text().contains("belongs to the project 'Web'"), "{}", r.error_text());
        assert_eq!(count(&s, "/api/deployments").await, 0);
        assert_eq!(count(&s, "/api/tasks").await, 0, "no task was queued");

        // A stale process update.
        let path = format!("/api/projects/{pid}/deploymentprocesses");
        let current = s.get(&path).await.body;
        let stale = json!({"Version": current["Version"].as_i64().unwrap() - 1, "Steps": current["Steps"]});
        let r = s.send(Method::PUT, &path, &stale).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.error_text().contains("Reload"), "{}", r.error_text());
        let r = s.send(Method::PUT, &path, &json!({"Version": current["Version"], "Steps": [{"Name": "", "Actions": []}]})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(s.get(&path).await.body["Steps"], current["Steps"]);
        // Steps that could only fail when deployed: an empty script, a
        // package step without its package.
        let empty = json!({"Version": current["Version"], "Steps": [
            {"Name": "Blank", "Actions": [{"Name": "Blank", "ActionType": "Octopus.Script",
                "Properties": {"Octopus.Action.Script.ScriptBody": "  ", "Octopus.Action.Script.Syntax": "Bash"}}]},
            {"Name": "Ship", "Actions": [{"Name": "Ship", "ActionType": "Octopus.TentaclePackage",
                "Packages": [{"Name": "", "PackageId": "", "FeedId": "feeds-builtin"}]}]}]});
        let r = s.send(Method::PUT, &path, &empty).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let text = r.error_text();
        assert!(text.contains("Step 1 ('Blank'): The script is empty"), "{text}");
        assert!(text.contains("Step 2 ('Ship'): A package ID is required"), "{text}");
        assert_eq!(s.get(&path).await.body["Steps"], current["Steps"]);
    })
    .await;
}

#[tokio::test]
async fn octopus_shaped_bodies_bind_case_insensitively() {
    on_both("case", |s| async move {
        let body: Value = json!({"name": "Lowercase", "description": "d", "spaceId": "Spaces-1", "spaceName": "Default"});
        let env = s.create("/api/Spaces-1/environments", body).await;
        assert_eq!((env["Name"].as_str(), env["Description"].as_str()), (Some("Lowercase"), Some("d")));
    })
    .await;
}
