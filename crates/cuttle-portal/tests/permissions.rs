//! The portal's main pages walked by people of different permissions: each
//! sees only what they may, and a form they may not submit is refused even
//! when posted by hand. Sessions end when a password changes or the person
//! is disabled.

mod common;

use common::{on_both, script_step, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A person who signs in with `password`, in a team of Spaces-1 holding
/// `role` narrowed as given; returns their id.
async fn person(
    s: &Server,
    name: &str,
    password: &str,
    role: &str,
    projects: &[&str],
    envs: &[&str],
) -> String {
    let user = s
        .create(
            "/api/users",
            json!({"Username": name, "Password": password}),
        )
        .await;
    let id = user["Id"].as_str().unwrap().to_owned();
    let team = s
        .create(
            "/api/teams",
            json!({"Name": format!("{name}'s team"), "SpaceId": "Spaces-1", "MemberUserIds": [id]}),
        )
        .await;
    s.create(
        "/api/scopeduserroles",
        json!({"TeamId": team["Id"], "UserRoleId": role, "SpaceId": "Spaces-1",
               "ProjectIds": projects, "EnvironmentIds": envs}),
    )
    .await;
    id
}

#[tokio::test]
async fn each_person_sees_only_what_they_may() {
    on_both("portal_permissions", |s| async move {
        s.environment("Dev").await;
        s.environment("Production").await;
        let web = s.project("Web", vec![script_step("Say", "echo web")]).await;
        let api = s.project("Api", vec![script_step("Say", "echo api")]).await;
        let task = s.deploy("Api", "1.0.0", "Dev").await;
        s.wait_done(&task).await;
        person(
            &s,
            "dev",
            "correct-horse-42",
            "userroles-projectdeployer",
            &[&web],
            &["Environments-1"],
        )
        .await;
        person(
            &s,
            "auditor",
            "battery-staple-7",
            "userroles-environmentviewer",
            &[],
            &[],
        )
        .await;

        // The administrator sees everything.
        let admin = s.sign_in().await;
        let home = admin.get("/").await;
        // Names appear as element text, which the checks below look for.
        assert!(
            home.body.contains(">Web<") && home.body.contains(">Api<"),
            "{}",
            home.body
        );
        let listed = admin.get("/projects").await;
        assert!(listed.body.contains(">Api<") && listed.body.contains(r#"action="/projects""#));
        assert!(home.body.contains(r#"href="/audit""#));

        let teams = admin.get("/configuration/teams").await;
        assert_eq!(teams.status, StatusCode::OK);
        assert!(
            teams.body.contains("dev&#39;s team") || teams.body.contains("dev's team"),
            "{}",
            teams.body
        );
        assert!(
            teams
                .body
                .contains("Project Deployer (Projects-1, Environments-1)"),
            "{}",
            teams.body
        );

        // The deployer: their project only, nowhere near users or targets.
        let dev = s.sign_in_as("dev", "correct-horse-42").await;
        let home = dev.get("/").await;
        assert_eq!(home.status, StatusCode::OK);
        assert!(home.body.contains("Web"), "{}", home.body);
        assert!(!home.body.contains(">Api<"), "{}", home.body);
        let projects = dev.get("/projects").await;
        assert!(projects.body.contains("Web") && !projects.body.contains(">Api<"));
        // No new-project form for one who may not create projects.
        assert!(
            !projects.body.contains(r#"action="/projects""#),
            "{}",
            projects.body
        );
        let hidden = dev.get(&format!("/projects/{api}")).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);
        let users = dev.get("/configuration/users").await;
        assert_eq!(users.status, StatusCode::FORBIDDEN);
        assert!(users.body.contains("UserView"), "{}", users.body);
        assert_eq!(
            dev.get("/configuration/teams").await.status,
            StatusCode::FORBIDDEN
        );
        let targets = dev.get("/infrastructure/targets").await;
        assert_eq!(targets.status, StatusCode::FORBIDDEN);
        // Posted by hand, a form they may not use is refused.
        let made = dev
            .post("/projects", &[("csrf", &dev.csrf), ("Name", "Sneaky")])
            .await;
        assert_eq!(made.status, StatusCode::FORBIDDEN);
        let (_, all) = s
            .api(Method::GET, "/api/projects?partialName=Sneaky", None)
            .await;
        assert_eq!(all["TotalResults"], 0);
        // Their own keys are theirs to see.
        assert_eq!(
            dev.get("/configuration/api-keys").await.status,
            StatusCode::OK
        );

        // The environment viewer: no projects, no dashboard link.
        let auditor = s.sign_in_as("auditor", "battery-staple-7").await;
        let keys = auditor.get("/configuration/api-keys").await;
        assert!(!keys.body.contains(r#"href="/projects""#), "{}", keys.body);
        assert!(
            keys.body.contains(r#"href="/infrastructure""#),
            "{}",
            keys.body
        );
        assert_eq!(auditor.get("/").await.status, StatusCode::FORBIDDEN);
        assert_eq!(
            auditor.get("/infrastructure/environments").await.status,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn a_new_password_or_disabling_ends_sessions_at_once() {
    on_both("portal_sessions_end", |s| async move {
        let id = person(
            &s,
            "pat",
            "first-secret-9",
            "userroles-projectviewer",
            &[],
            &[],
        )
        .await;
        let pat = s.sign_in_as("pat", "first-secret-9").await;
        assert_eq!(pat.get("/").await.status, StatusCode::OK);
        let (status, reply) = s
            .api(
                Method::PUT,
                &format!("/api/users/{id}"),
                Some(json!({"Password": "second-secret-8"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        // The old session now sends the browser to sign in.
        let after = pat.get("/").await;
        assert_eq!(after.status, StatusCode::SEE_OTHER);
        let pat = s.sign_in_as("pat", "second-secret-8").await;
        assert_eq!(pat.get("/").await.status, StatusCode::OK);
        let (status, _) = s
            .api(
                Method::PUT,
                &format!("/api/users/{id}"),
                Some(json!({"IsActive": false})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(pat.get("/").await.status, StatusCode::SEE_OTHER);
    })
    .await;
}
