//! Which package versions a release deploys when the caller names them in
//! `SelectedPackages` by step (`StepName`) or by action (`ActionName`), as
//! Octopus clients do; a selection naming nothing in the process is refused.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The smallest zip there is: an end-of-central-directory record alone.
const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// A project whose two steps are named apart from their actions, with two
/// versions of each step's package in the feed.
async fn two_step_project(s: &Server) -> String {
    for file in [
        "Acme.Web.1.0.0.zip",
        "Acme.Web.2.0.0.zip",
        "Acme.Db.1.0.0.zip",
        "Acme.Db.2.0.0.zip",
    ] {
        s.push_package(file, EMPTY_ZIP).await;
    }
    let project = s
        .create(
            "/api/projects",
            json!({"Name": "Shop", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        )
        .await;
    let project_id = project["Id"].as_str().unwrap().to_owned();
    let action = |name: &str, package: &str| {
        json!({"Name": name, "ActionType": "Octopus.TentaclePackage",
               "Packages": [{"Name": "", "PackageId": package, "FeedId": "feeds-builtin"}]})
    };
    let process = json!({"Version": 0, "Steps": [
        {"Name": "Web tier", "Actions": [action("Deploy web", "Acme.Web")]},
        {"Name": "Db tier", "Actions": [action("Migrate db", "Acme.Db")]}]});
    let r = s
        .send(
            Method::PUT,
            &format!("/api/projects/{project_id}/deploymentprocesses"),
            &process,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
    project_id
}

/// The version the release chose for each action, by action name.
fn chosen(release: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = release["SelectedPackages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ActionName"].as_str().unwrap().to_owned(),
                p["Version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn pair(action: &str, version: &str) -> (String, String) {
    (action.to_owned(), version.to_owned())
}

#[tokio::test]
async fn selected_packages_honour_step_and_action_names() {
    on_both("rel-step-name", |s| async move {
        let project_id = two_step_project(&s).await;

        // A step's name (in any case) picks its action's package.
        let release = s
            .create(
                "/api/Spaces-1/releases",
                json!({"ProjectId": project_id, "Version": "1.0.0", "SelectedPackages": [
                    {"StepName": "web TIER", "Version": "1.0.0"},
                    {"ActionName": "MIGRATE db", "Version": "1.0.0"}]}),
            )
            .await;
        assert_eq!(
            chosen(&release),
            vec![pair("Deploy web", "1.0.0"), pair("Migrate db", "1.0.0")],
            "{}: {release}",
            s.backend
        );

        // Step and action together; what is not named gets the newest.
        let release = s
            .create(
                "/api/Spaces-1/releases",
                json!({"ProjectId": project_id, "Version": "1.0.1", "SelectedPackages": [
                    {"StepName": "Db tier", "ActionName": "Migrate db", "Version": "1.0.0"}]}),
            )
            .await;
        assert_eq!(
            chosen(&release),
            vec![pair("Deploy web", "2.0.0"), pair("Migrate db", "1.0.0")],
            "{}: {release}",
            s.backend
        );
    })
    .await;
}

#[tokio::test]
async fn a_selection_naming_nothing_in_the_process_is_refused() {
    on_both("rel-step-unknown", |s| async move {
        let project_id = two_step_project(&s).await;
        for (selection, named) in [
            (
                json!({"StepName": "Cache tier", "Version": "1.0.0"}),
                "Cache tier",
            ),
            (
                json!({"ActionName": "Warm cache", "Version": "1.0.0"}),
                "Warm cache",
            ),
            // The action is real, but not in the step named.
            (
                json!({"StepName": "Web tier", "ActionName": "Migrate db", "Version": "1.0.0"}),
                "Migrate db",
            ),
        ] {
            let r = s
                .post(
                    "/api/Spaces-1/releases",
                    json!({"ProjectId": project_id, "Version": "3.0.0",
                           "SelectedPackages": [selection]}),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{}: {}",
                s.backend,
                r.body
            );
            assert!(
                r.error_text().contains(named),
                "{}: {}",
                s.backend,
                r.error_text()
            );
        }
        // Nothing was created.
        let releases = s.get(&format!("/api/projects/{project_id}/releases")).await;
        assert_eq!(releases.body["TotalResults"], 0, "{}", releases.body);
    })
    .await;
}
