//! The project pages over HTTP, on both databases: creating a project, a
//! release and a deployment through their forms; mistakes shown beside the
//! field they concern with nothing written; and names and notes escaped.

use crate::common;

use common::{on_both, script_step, Browser, Page, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn environment_id(s: &Server, name: &str) -> String {
    s.environment(name).await;
    let (_, found) = s
        .api(Method::GET, &format!("/api/environments?name={name}"), None)
        .await;
    found["Items"][0]["Id"].as_str().unwrap().to_owned()
}

async fn total(s: &Server, path: &str) -> i64 {
    let (status, reply) = s.api(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {reply}");
    reply["TotalResults"]
        .as_i64()
        .unwrap_or_else(|| panic!("{path}: {reply}"))
}

async fn set_process(s: &Server, project: &str, steps: Vec<Value>) {
    let (status, reply) = s
        .api(
            Method::PUT,
            &format!("/api/projects/{project}/deploymentprocesses"),
            Some(json!({"Steps": steps})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

/// The text of the error paragraph under the input with this id.
fn error_under(page: &Page, id: &str) -> String {
    let marker = format!(r#"id="{id}-error""#);
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no error under #{id} in:\n{}", page.body));
    let rest = &page.body[at + marker.len()..];
    let start = rest.find('>').unwrap() + 1;
    rest[start..start + rest[start..].find("</p>").unwrap()].to_owned()
}

async fn create_project_form(b: &Browser<'_>, name: &str, description: &str) -> Page {
    b.post(
        "/projects",
        &[
            ("csrf", b.csrf.as_str()),
            ("Name", name),
            ("Description", description),
            ("ProjectGroupId", "ProjectGroups-1"),
            ("LifecycleId", "Lifecycles-1"),
        ],
    )
    .await
}

#[tokio::test]
async fn project_release_and_deployment_through_the_forms() {
    on_both("portal-projects-happy", |s| async move {
        let dev = environment_id(&s, "Development").await;
        let prod = environment_id(&s, "Production").await;
        let b = s.sign_in().await;

        let list = b.get("/projects").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        assert!(list.body.contains("No projects yet"), "{}", list.body);
        assert!(list
            .body
            .contains(r#"<label for="project-name">Name</label>"#));
        assert!(list.body.contains(r#"id="create-project""#));

        // Created: on to the process, the next thing a new project needs.
        let created = create_project_form(&b, "Web shop", "The shop").await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let location = created.location().unwrap().to_owned();
        let id = location
            .strip_prefix("/projects/")
            .and_then(|l| l.strip_suffix("/process"))
            .unwrap_or_else(|| panic!("{location}"))
            .to_owned();
        let (_, project) = s
            .api(Method::GET, &format!("/api/projects/{id}"), None)
            .await;
        assert_eq!(project["Name"], "Web shop");
        assert_eq!(project["Description"], "The shop");
        let list = b.get("/projects").await;
        assert!(list.body.contains(&format!(r#"href="/projects/{id}""#)));
        set_process(&s, &id, vec![script_step("Greet", "echo hello")]).await;

        // The release form suggests the version the API would pick.
        let form = b.get(&format!("/projects/{id}/releases/new")).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(
            form.body
                .contains(r#"id="release-version" type="text" name="Version" value="0.0.1""#),
            "{}",
            form.body
        );
        assert!(form.body.contains(r#"id="release-notes""#));
        let made = b
            .post(
                &format!("/projects/{id}/releases"),
                &[
                    ("csrf", b.csrf.as_str()),
                    ("Version", "1.0.0"),
                    ("ReleaseNotes", "First cut\nwith two lines"),
                ],
            )
            .await;
        assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
        assert_eq!(
            made.location(),
            Some(format!("/projects/{id}/releases/1.0.0").as_str())
        );
        let release = b.get(&format!("/projects/{id}/releases/1.0.0")).await;
        assert_eq!(release.status, StatusCode::OK, "{}", release.body);
        assert!(release.body.contains("First cut\nwith two lines"));
        // The default lifecycle goes Development, then Production.
        assert!(release.body.contains(&format!(r#"id="deploy-to-{dev}""#)));
        assert!(!release.body.contains(&format!(r#"id="deploy-to-{prod}""#)));
        let next = b.get(&format!("/projects/{id}/releases/new")).await;
        assert!(next.body.contains(r#"name="Version" value="1.0.1""#));

        let deploy = format!("/projects/{id}/releases/1.0.0/deploy");
        let page = b.get(&format!("{deploy}?environment={dev}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(&format!(
            r#"id="deploy-env-{dev}" type="checkbox" name="EnvironmentId" value="{dev}" checked"#
        )));
        assert!(!page.body.contains(&format!(r#"id="deploy-env-{prod}""#)));
        assert!(page.body.contains(r#"id="preview-deploy""#));

        // A preview shows the plan and queues nothing.
        let preview = b
            .post(
                &deploy,
                &[
                    ("csrf", b.csrf.as_str()),
                    ("EnvironmentId", dev.as_str()),
                    ("action", "preview"),
                ],
            )
            .await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
        assert!(
            preview.body.contains("Plan for Development"),
            "{}",
            preview.body
        );
        assert!(preview.body.contains("Greet"));
        assert_eq!(total(&s, "/api/deployments").await, 0);

        let queued = b
            .post(
                &deploy,
                &[
                    ("csrf", b.csrf.as_str()),
                    ("EnvironmentId", dev.as_str()),
                    ("action", "deploy"),
                ],
            )
            .await;
        assert_eq!(queued.status, StatusCode::SEE_OTHER, "{}", queued.body);
        let task = queued
            .location()
            .and_then(|l| l.strip_prefix("/tasks/"))
            .unwrap_or_else(|| panic!("{:?}", queued.location()))
            .to_owned();
        let done = s.wait_done(&task).await;
        assert_eq!(done["State"], "Success", "{done}");

        // The overview shows it in the release's row; the release page lets
        // it on to Production now.
        let overview = b.get(&format!("/projects/{id}")).await;
        assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
        assert!(overview.body.contains(&format!(r#"href="/tasks/{task}""#)));
        assert!(overview.body.contains("cell state-success"));
        assert!(overview.body.contains(r#"data-live="false""#));
        // The board alone, as the page script refetches it; it needs a session.
        let fragment = b.get(&format!("/projects/{id}/board")).await;
        assert_eq!(fragment.status, StatusCode::OK);
        assert!(
            fragment
                .body
                .starts_with(r#"<div class="table-wrap board-wrap" id="project-board""#),
            "{}",
            fragment.body
        );
        assert!(fragment.body.contains(&format!(r#"href="/tasks/{task}""#)));
        let signed_out = s.get_page(&format!("/projects/{id}/board"), None).await;
        assert_eq!(signed_out.status, StatusCode::UNAUTHORIZED);
        let release = b.get(&format!("/projects/{id}/releases/1.0.0")).await;
        assert!(release.body.contains(&format!(r#"id="deploy-to-{prod}""#)));

        // Several environments at once: back to the release, all queued.
        let both = b
            .post(
                &deploy,
                &[
                    ("csrf", b.csrf.as_str()),
                    ("EnvironmentId", dev.as_str()),
                    ("EnvironmentId", prod.as_str()),
                    ("action", "deploy"),
                ],
            )
            .await;
        assert_eq!(both.status, StatusCode::SEE_OTHER, "{}", both.body);
        assert_eq!(
            both.location(),
            Some(format!("/projects/{id}/releases/1.0.0").as_str())
        );
        let (_, deployments) = s.api(Method::GET, "/api/deployments", None).await;
        assert_eq!(deployments["TotalResults"], 3, "{deployments}");
        for d in deployments["Items"].as_array().unwrap() {
            let t = s.wait_done(d["TaskId"].as_str().unwrap()).await;
            assert_eq!(t["State"], "Success", "{t}");
        }
    })
    .await;
}

#[tokio::test]
async fn project_mistakes_are_shown_on_the_name_and_create_nothing() {
    on_both("portal-projects-mistakes", |s| async move {
        s.project("Web", vec![]).await;
        let b = s.sign_in().await;
        assert_eq!(total(&s, "/api/projects").await, 1);
        let list = b.get("/projects").await;
        assert!(list.body.contains("No environments yet"), "{}", list.body);
        assert!(list.body.contains(r#"href="/infrastructure/environments""#));
        assert!(!list.body.contains("No projects yet"));
        let unknown = b.get("/projects/Projects-999").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);

        let dup = create_project_form(&b, "Web", "typed text").await;
        assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
        let err = error_under(&dup, "project-name");
        assert!(err.contains("already exists"), "{err}");
        // What was typed comes back.
        assert!(dup.body.contains("typed text"));
        assert!(dup.body.contains(r#"aria-invalid="true""#));

        let empty = create_project_form(&b, "  ", "").await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
        assert!(error_under(&empty, "project-name").contains("Name is required"));

        let forged = b
            .post(
                "/projects",
                &[
                    ("Name", "Sneaky"),
                    ("ProjectGroupId", "ProjectGroups-1"),
                    ("LifecycleId", "Lifecycles-1"),
                ],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let wrong = b
            .post(
                "/projects",
                &[
                    ("csrf", "not-the-token"),
                    ("Name", "Sneaky"),
                    ("ProjectGroupId", "ProjectGroups-1"),
                    ("LifecycleId", "Lifecycles-1"),
                ],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN);
        assert_eq!(total(&s, "/api/projects").await, 1);
    })
    .await;
}

#[tokio::test]
async fn release_version_mistakes_are_shown_on_the_version() {
    on_both("portal-projects-versions", |s| async move {
        s.environment("Development").await;
        let id = s.project("Api", vec![script_step("Run", "true")]).await;
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Api", "ReleaseVersion": "1.0.0"}),
        )
        .await;
        let b = s.sign_in().await;
        let releases = format!("/api/projects/{id}/releases");
        assert_eq!(total(&s, &releases).await, 1);

        let dup = b
            .post(
                &format!("/projects/{id}/releases"),
                &[
                    ("csrf", b.csrf.as_str()),
                    ("Version", "1.0.0"),
                    ("ReleaseNotes", "kept notes"),
                ],
            )
            .await;
        assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
        assert!(error_under(&dup, "release-version").contains("already exists"));
        assert!(dup.body.contains("kept notes"));

        let bad = b
            .post(
                &format!("/projects/{id}/releases"),
                &[("csrf", b.csrf.as_str()), ("Version", "v1 beta")],
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert!(error_under(&bad, "release-version").contains("must start with a number"));
        assert!(bad.body.contains(r#"value="v1 beta""#));

        let forged = b
            .post(&format!("/projects/{id}/releases"), &[("Version", "2.0.0")])
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(total(&s, &releases).await, 1);
    })
    .await;
}

#[tokio::test]
async fn deploying_where_the_lifecycle_does_not_allow_queues_nothing() {
    on_both("portal-projects-refused", |s| async move {
        let dev = environment_id(&s, "Development").await;
        let prod = environment_id(&s, "Production").await;
        let id = s.project("Api", vec![script_step("Run", "true")]).await;
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Api", "ReleaseVersion": "1.0.0"}),
        )
        .await;
        let b = s.sign_in().await;
        let deploy = format!("/projects/{id}/releases/1.0.0/deploy");

        // Production before Development: refused, with the reason shown.
        let refused = b
            .post(
                &deploy,
                &[
                    ("csrf", b.csrf.as_str()),
                    ("EnvironmentId", prod.as_str()),
                    ("action", "deploy"),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        let err = error_under(&refused, "deploy-env");
        assert!(
            err.contains("cannot be deployed to Production yet"),
            "{err}"
        );

        // With an allowed one alongside, still nothing: all or none.
        let mixed = b
            .post(
                &deploy,
                &[
                    ("csrf", b.csrf.as_str()),
                    ("EnvironmentId", dev.as_str()),
                    ("EnvironmentId", prod.as_str()),
                    ("action", "deploy"),
                ],
            )
            .await;
        assert_eq!(mixed.status, StatusCode::BAD_REQUEST, "{}", mixed.body);

        let none = b
            .post(&deploy, &[("csrf", b.csrf.as_str()), ("action", "deploy")])
            .await;
        assert_eq!(none.status, StatusCode::BAD_REQUEST, "{}", none.body);
        assert!(error_under(&none, "deploy-env").contains("Choose at least one environment"));

        let forged = b
            .post(
                &deploy,
                &[("EnvironmentId", dev.as_str()), ("action", "deploy")],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(total(&s, "/api/deployments").await, 0);
    })
    .await;
}

#[tokio::test]
async fn names_and_notes_are_escaped() {
    on_both("portal-projects-escaping", |s| async move {
        s.environment("Development").await;
        let b = s.sign_in().await;
        let evil = "<script>alert(1)</script>";
        let created = create_project_form(&b, evil, "<img src=x onerror=alert(2)>").await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let id = created
            .location()
            .and_then(|l| l.strip_prefix("/projects/"))
            .and_then(|l| l.strip_suffix("/process"))
            .unwrap()
            .to_owned();
        set_process(&s, &id, vec![script_step("Run", "true")]).await;
        let made = b
            .post(
                &format!("/projects/{id}/releases"),
                &[
                    ("csrf", b.csrf.as_str()),
                    ("Version", "1.0.0"),
                    ("ReleaseNotes", "<script>alert(3)</script>"),
                ],
            )
            .await;
        assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);

        for path in [
            "/projects".to_owned(),
            format!("/projects/{id}"),
            format!("/projects/{id}/releases"),
            format!("/projects/{id}/releases/1.0.0"),
        ] {
            let page = b.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
            assert!(
                page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{path}: {}",
                page.body
            );
            assert!(!page.body.contains("<script>alert"), "{path}");
            assert!(!page.body.contains("<img src=x"), "{path}");
        }
        let release = b.get(&format!("/projects/{id}/releases/1.0.0")).await;
        assert!(release
            .body
            .contains("&lt;script&gt;alert(3)&lt;/script&gt;"));
    })
    .await;
}

#[tokio::test]
async fn prompted_variables_are_asked_for_on_the_deploy_page() {
    on_both("portal-projects-prompts", |s| async move {
        let dev = environment_id(&s, "Development").await;
        let id = s
            .project("Asks", vec![script_step("Ask", "echo \"approved by #{Approver}\"")])
            .await;
        let (_, project) = s
            .api(Method::GET, &format!("/api/projects/{id}"), None)
            .await;
        let set = project["VariableSetId"].as_str().unwrap().to_owned();
        let (status, vars) = s
            .api(
                Method::PUT,
                &format!("/api/variables/{set}"),
                Some(json!({"Version": 0, "Variables": [
                    {"Name": "Approver", "Value": "", "Prompt": {"Label": "Who approves?", "Required": true}},
                    {"Name": "Token", "Type": "Sensitive", "Value": "default-t0ken", "Prompt": {"Label": "Token"}},
                ]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{vars}");
        let id_of = |name: &str| {
            vars["Variables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["Name"] == name)
                .unwrap()["Id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (approver, token) = (id_of("Approver"), id_of("Token"));
        s.create(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Asks", "ReleaseVersion": "1.0.0"}),
        )
        .await;
        let b = s.sign_in().await;
        let deploy = format!("/projects/{id}/releases/1.0.0/deploy");

        let page = b.get(&deploy).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(&format!(r#"<label for="prompt-{approver}">Who approves?"#)));
        assert!(page.body.contains(&format!(
            r#"id="prompt-{approver}" type="text" name="Prompt:{approver}" value="""#
        )));
        // A secret's stored value never reaches the page.
        assert!(page.body.contains(&format!(
            r#"id="prompt-{token}" type="password" name="Prompt:{token}" value="""#
        )));
        assert!(!page.body.contains("t0ken"));

        let approver_field = format!("Prompt:{approver}");
        let token_field = format!("Prompt:{token}");
        let missing = b
            .post(
                &deploy,
                &[
                    ("csrf", b.csrf.as_str()),
                    ("EnvironmentId", dev.as_str()),
                    (approver_field.as_str(), ""),
                    (token_field.as_str(), ""),
                    ("action", "deploy"),
                ],
            )
            .await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
        assert!(error_under(&missing, "prompts").contains("Approver"));
        assert_eq!(total(&s, "/api/deployments").await, 0);

        let queued = b
            .post(
                &deploy,
                &[
                    ("csrf", b.csrf.as_str()),
                    ("EnvironmentId", dev.as_str()),
                    (approver_field.as_str(), "alice"),
                    (token_field.as_str(), ""),
                    ("action", "deploy"),
                ],
            )
            .await;
        assert_eq!(queued.status, StatusCode::SEE_OTHER, "{}", queued.body);
        let task = queued.location().unwrap().trim_start_matches("/tasks/").to_owned();
        assert_eq!(s.wait_done(&task).await["State"], "Success");
        let (_, deployments) = s.api(Method::GET, "/api/deployments", None).await;
        // The empty secret was left out, so its default stays in force.
        assert_eq!(
            deployments["Items"][0]["FormValues"],
            json!({ approver.as_str(): "alice" })
        );
    })
    .await;
}

const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

async fn push_package(s: &Server, file_name: &str) {
    let part = reqwest::multipart::Part::bytes(EMPTY_ZIP.to_vec()).file_name(file_name.to_owned());
    let resp = s
        .client
        .post(format!("{}/api/Spaces-1/packages/raw", s.url))
        .header("X-Octopus-ApiKey", common::ADMIN_KEY)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", s.backend);
}

#[tokio::test]
async fn a_release_chooses_its_package_versions() {
    on_both("portal-projects-packages", |s| async move {
        push_package(&s, "Acme.Web.1.0.0.zip").await;
        push_package(&s, "Acme.Web.1.2.0.zip").await;
        let step = json!({"Name": "Deploy web", "Actions": [{
            "Name": "Deploy web", "ActionType": "Octopus.TentaclePackage",
            "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin"}]}]});
        let id = s.project("Web", vec![step]).await;
        let b = s.sign_in().await;

        // The newest in the feed is chosen unless the person picks another.
        let form = b.get(&format!("/projects/{id}/releases/new")).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(
            form.body
                .contains(r#"<select id="release-package-0" name="Package:0">"#),
            "{}",
            form.body
        );
        assert!(form
            .body
            .contains(r#"<option value="1.2.0" selected>1.2.0</option>"#));
        assert!(form
            .body
            .contains(r#"<option value="1.0.0">1.0.0</option>"#));

        let releases = format!("/api/projects/{id}/releases");
        let missing = b
            .post(
                &format!("/projects/{id}/releases"),
                &[
                    ("csrf", b.csrf.as_str()),
                    ("Version", "1.0.0"),
                    ("Package:0", "9.9.9"),
                ],
            )
            .await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
        assert!(
            missing
                .body
                .contains("version 9.9.9 (for 'Deploy web') is not in the built-in feed"),
            "{}",
            missing.body
        );
        assert_eq!(total(&s, &releases).await, 0);

        let made = b
            .post(
                &format!("/projects/{id}/releases"),
                &[
                    ("csrf", b.csrf.as_str()),
                    ("Version", "1.0.0"),
                    ("Package:0", "1.0.0"),
                ],
            )
            .await;
        assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
        let (_, release) = s.api(Method::GET, &format!("{releases}/1.0.0"), None).await;
        assert_eq!(
            release["SelectedPackages"][0]["Version"], "1.0.0",
            "{release}"
        );
        let page = b.get(&format!("/projects/{id}/releases/1.0.0")).await;
        assert!(page.body.contains("<code>1.0.0</code>"), "{}", page.body);
    })
    .await;
}
