//! Build information as CI plugins push it, and on the releases that deploy
//! the package versions it describes.

use crate::common;

use common::on_both;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn build(package: &str, version: &str, number: &str) -> Value {
    json!({"PackageId": package, "Version": version, "OctopusBuildInformation": {
        "BuildEnvironment": "GitHub Actions", "BuildNumber": number,
        "BuildUrl": format!("https://ci.example/acme/{number}"), "Branch": "main",
        "VcsType": "Git", "VcsRoot": "https://github.com/acme/web.git", "VcsCommitNumber": "abc123",
        "Commits": [{"Id": "abc123", "Comment": "Fix the <b>login</b> page"}]}})
}

/// The smallest zip there is: an end-of-central-directory record alone.
const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

#[tokio::test]
async fn build_information_is_recorded_once_per_version_and_shown_on_releases() {
    on_both("build-info", |s| async move {
        let created = s
            .create("/api/Spaces-1/build-information", build("Acme.Web", "1.0.0", "41"))
            .await;
        assert_eq!(created["PackageId"], "Acme.Web");
        assert_eq!(created["BuildNumber"], "41");
        assert_eq!(
            created["VcsCommitUrl"],
            "https://github.com/acme/web/commit/abc123"
        );
        assert_eq!(
            created["Commits"][0]["LinkUrl"],
            "https://github.com/acme/web/commit/abc123"
        );
        let id = created["Id"].as_str().unwrap().to_owned();

        // The same version again: refused, replaced or left, as asked.
        let again = s
            .post("/api/Spaces-1/build-information", build("Acme.Web", "1.0.0", "42"))
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        let kept = s
            .post(
                "/api/Spaces-1/build-information?overwriteMode=IgnoreIfExists",
                build("Acme.Web", "1.0.0", "42"),
            )
            .await;
        assert_eq!(kept.body["BuildNumber"], "41", "{}", kept.body);
        let replaced = s
            .post(
                "/api/Spaces-1/build-information?overwriteMode=OverwriteExisting",
                build("Acme.Web", "1.0.0", "42"),
            )
            .await;
        assert_eq!(replaced.status, StatusCode::CREATED);
        assert_eq!(replaced.body["Id"], id.as_str());
        assert_eq!(replaced.body["BuildNumber"], "42");

        s.create("/api/Spaces-1/build-information", build("Acme.Db", "2.0.0", "7"))
            .await;
        let listed = s
            .get("/api/Spaces-1/build-information?packageId=acme.web")
            .await
            .body;
        assert_eq!(listed["TotalResults"], 1, "{listed}");

        // A release that deploys Acme.Web 1.0.0 shows its build.
        s.push_package("Acme.Web.1.0.0.zip", EMPTY_ZIP).await;
        let project = s
            .create(
                "/api/projects",
                json!({"Name": "Web", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let project_id = project["Id"].as_str().unwrap();
        let process = json!({"Version": 0, "Steps": [{"Name": "Deploy web", "Actions": [{
            "Name": "Deploy web", "ActionType": "Octopus.TentaclePackage",
            "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin"}]}]}]});
        let r = s
            .send(
                Method::PUT,
                &format!("/api/projects/{project_id}/deploymentprocesses"),
                &process,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let release = s
            .create(
                "/api/Spaces-1/releases",
                json!({"ProjectId": project_id, "Version": "1.0.0"}),
            )
            .await;
        let shown = &release["BuildInformation"];
        assert_eq!(shown.as_array().map(Vec::len), Some(1), "{release}");
        assert_eq!(shown[0]["BuildNumber"], "42");
        assert_eq!(shown[0]["Commits"][0]["Comment"], "Fix the <b>login</b> page");

        // Deleted, it is gone.
        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/Spaces-1/build-information/{id}"),
                None,
                Some(&s.key),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let gone = s.get(&format!("/api/Spaces-1/build-information/{id}")).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn bad_build_information_is_refused_and_records_nothing() {
    on_both("build-info-bad", |s| async move {
        let cases = [
            (json!({"Version": "1.0.0"}), "PackageId is required"),
            (json!({"PackageId": "Acme.Web"}), "Version is required"),
            (
                json!({"PackageId": "Acme.Web", "Version": "one"}),
                "Version 'one' is not a valid version",
            ),
        ];
        for (body, expected) in cases {
            let r = s.post("/api/Spaces-1/build-information", body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
            assert!(r.error_text().contains(expected), "{}", r.error_text());
        }
        let r = s
            .post(
                "/api/Spaces-1/build-information?overwriteMode=Sometimes",
                build("Acme.Web", "1.0.0", "1"),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let r = s
            .call_with(
                Method::POST,
                "/api/Spaces-1/build-information",
                Some("{not json"),
                Some(&s.key),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let listed = s.get("/api/Spaces-1/build-information").await.body;
        assert_eq!(listed["TotalResults"], 0, "{listed}");
    })
    .await;
}

#[tokio::test]
async fn an_existing_version_is_refused_in_octopus_words_or_handled_as_the_body_asks() {
    on_both("build-info-exists", |s| async move {
        s.create(
            "/api/Spaces-1/build-information",
            build("Acme.Web", "1.0.0", "41"),
        )
        .await;

        let again = s
            .post(
                "/api/Spaces-1/build-information",
                build("Acme.Web", "1.0.0", "42"),
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        // Clients compare Octopus's message; Cuttle's explanation follows.
        assert_eq!(
            again.body["ErrorMessage"],
            "Metadata for the specified Package ID and version already exists.",
            "{}",
            again.body
        );
        let why = again.body["Errors"][0].as_str().unwrap_or("");
        assert!(
            why.contains("Acme.Web 1.0.0") && why.contains("OverwriteExisting"),
            "{}",
            again.body
        );

        // The overwrite mode may come in the body, as some clients send it.
        let mut body = build("Acme.Web", "1.0.0", "43");
        body["OverwriteMode"] = json!("IgnoreIfExists");
        let kept = s.post("/api/Spaces-1/build-information", body).await;
        assert_eq!(kept.status, StatusCode::CREATED, "{}", kept.body);
        assert_eq!(kept.body["BuildNumber"], "41", "{}", kept.body);

        let mut body = build("Acme.Web", "1.0.0", "44");
        body["overwriteMode"] = json!("OverwriteExisting");
        let replaced = s.post("/api/Spaces-1/build-information", body).await;
        assert_eq!(replaced.status, StatusCode::CREATED, "{}", replaced.body);
        assert_eq!(replaced.body["BuildNumber"], "44", "{}", replaced.body);

        // The query wins over the body.
        let mut body = build("Acme.Web", "1.0.0", "45");
        body["OverwriteMode"] = json!("OverwriteExisting");
        let refused = s
            .post(
                "/api/Spaces-1/build-information?overwriteMode=FailIfExists",
                body,
            )
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);

        // A mode that is none of the three is refused, and changes nothing.
        let mut body = build("Acme.Web", "1.0.0", "46");
        body["OverwriteMode"] = json!("Always");
        let bad = s.post("/api/Spaces-1/build-information", body).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert!(bad.error_text().contains("Always"), "{}", bad.error_text());

        let listed = s
            .get("/api/Spaces-1/build-information?packageId=Acme.Web")
            .await
            .body;
        assert_eq!(listed["TotalResults"], 1, "{listed}");
        assert_eq!(listed["Items"][0]["BuildNumber"], "44", "{listed}");
    })
    .await;
}
