//! The portal's main pages walked by people of different permissions: each
//! sees only what they may, and a form they may not submit is refused even
//! when posted by hand. Sessions end when a password changes or the person
//! is disabled.

use crate::common;

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

/// People narrowed to one project or one environment see, on the task and
/// infrastructure pages, only what their grant reaches; the rest answers
/// as missing, posted forms included.
#[tokio::test]
async fn task_and_infrastructure_pages_follow_a_narrowed_grant() {
    on_both("portal_narrowed_pages", |s| async move {
        s.environment("Dev").await;
        s.environment("Production").await;
        let web = s.project("Web", vec![script_step("Say", "echo web")]).await;
        s.project("Api", vec![script_step("Say", "echo api")]).await;
        let web_task = s.deploy("Web", "1.0.0", "Dev").await;
        let api_task = s.deploy("Api", "1.0.0", "Dev").await;
        s.wait_done(&web_task).await;
        s.wait_done(&api_task).await;
        person(
            &s,
            "webdev",
            "correct-horse-42",
            "userroles-projectdeployer",
            &[&web],
            &["Environments-1"],
        )
        .await;
        person(
            &s,
            "devops",
            "battery-staple-7",
            "userroles-environmentmanager",
            &[],
            &["Environments-1"],
        )
        .await;

        let webdev = s.sign_in_as("webdev", "correct-horse-42").await;
        let tasks = webdev.get("/tasks").await;
        assert_eq!(tasks.status, StatusCode::OK);
        let link = |t: &str| format!("href=\"/tasks/{t}\"");
        assert!(tasks.body.contains(&link(&web_task)), "{}", tasks.body);
        assert!(!tasks.body.contains(&link(&api_task)), "{}", tasks.body);
        assert!(!tasks.body.contains(">Api<"), "{}", tasks.body);
        assert_eq!(
            webdev.get(&format!("/tasks/{web_task}")).await.status,
            StatusCode::OK
        );
        assert_eq!(
            webdev.get(&format!("/tasks/{api_task}")).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            webdev
                .get(&format!("/tasks/{api_task}/header"))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let cancel = webdev
            .post(
                &format!("/tasks/{api_task}/cancel"),
                &[("csrf", &webdev.csrf)],
            )
            .await;
        assert_eq!(cancel.status, StatusCode::NOT_FOUND, "{}", cancel.body);

        let devops = s.sign_in_as("devops", "battery-staple-7").await;
        let envs = devops.get("/infrastructure/environments").await;
        assert_eq!(envs.status, StatusCode::OK);
        assert!(envs.body.contains(">Dev<"), "{}", envs.body);
        assert!(!envs.body.contains(">Production<"), "{}", envs.body);
        assert_eq!(
            devops
                .get("/infrastructure/environments/Environments-2")
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let renamed = devops
            .post(
                "/infrastructure/environments/Environments-2",
                &[("csrf", &devops.csrf), ("Name", "Renamed")],
            )
            .await;
        assert_eq!(renamed.status, StatusCode::NOT_FOUND, "{}", renamed.body);
        let deleted = devops
            .post(
                "/infrastructure/environments/Environments-2/delete",
                &[("csrf", &devops.csrf)],
            )
            .await;
        assert_eq!(deleted.status, StatusCode::NOT_FOUND, "{}", deleted.body);
        let (_, prod) = s
            .api(Method::GET, "/api/environments/Environments-2", None)
            .await;
        assert_eq!(prod["Name"], "Production");
        // Their own environment they may change.
        let dev = devops
            .post(
                "/infrastructure/environments/Environments-1",
                &[("csrf", &devops.csrf), ("Name", "Development")],
            )
            .await;
        assert!(
            dev.status.is_redirection() || dev.status.is_success(),
            "{}",
            dev.body
        );
        let (_, dev_env) = s
            .api(Method::GET, "/api/environments/Environments-1", None)
            .await;
        assert_eq!(dev_env["Name"], "Development");
    })
    .await;
}
