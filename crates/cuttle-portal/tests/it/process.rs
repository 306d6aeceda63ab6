//! The deployment process editor over HTTP, on both databases: adding,
//! moving, disabling and deleting steps through the portal's forms, each
//! checked through the REST API; bad input and stale versions refused
//! with nothing changed; and a process built in the portal deployed.

use crate::common;

use common::{on_both, script_step, Browser, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn process(s: &Server, project: &str) -> Value {
    let (status, p) = s
        .api(
            Method::GET,
            &format!("/api/projects/{project}/deploymentprocesses"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    p
}

fn names(process: &Value) -> Vec<String> {
    process["Steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_owned())
        .collect()
}

fn step_id(process: &Value, name: &str) -> String {
    process["Steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {process}"))["Id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn version(process: &Value) -> String {
    process["Version"].as_i64().unwrap().to_string()
}

/// Posts the new-step form for a script step, as a browser fills it in.
async fn add_script(
    b: &Browser<'_>,
    project: &str,
    version: &str,
    name: &str,
    body: &str,
) -> common::Page {
    b.post(
        &format!("/projects/{project}/process/steps"),
        &[
            ("csrf", &b.csrf),
            ("Version", version),
            ("Kind", "script"),
            ("Name", name),
            ("ScriptBody", body),
            ("Syntax", "Bash"),
            ("RunOn", "server"),
            ("TargetRoles", ""),
            ("Condition", "Success"),
            ("ConditionExpression", ""),
        ],
    )
    .await
}

#[tokio::test]
async fn building_a_process_in_the_portal_and_deploying_it() {
    on_both("portal-process-happy", |s| async move {
        s.environment("Dev").await;
        let project = s
            .project("Shop", vec![script_step("Prepare", "echo preparing")])
            .await;
        let b = s.sign_in().await;

        // The new-step form: its fields, labelled, with the process version.
        let form = b
            .get(&format!(
                "/projects/{project}/process/steps/new?kind=script"
            ))
            .await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        for needle in [
            r#"<label for="step-name">"#,
            r#"id="script-body""#,
            r#"spellcheck="false""#,
            r#"id="run-on-targets""#,
            r#"id="run-on-server""#,
            r#"id="target-roles""#,
            r#"id="step-condition""#,
            r#"id="start-with-previous""#,
            r#"id="save-step""#,
            r#"name="Version" value="1""#,
        ] {
            assert!(
                form.body.contains(needle),
                "{needle} missing:\n{}",
                form.body
            );
        }

        // Add a script step through the form (CRLF as browsers send it).
        let added = add_script(
            &b,
            &project,
            "1",
            "Say hello",
            "echo \"hello from the portal\"\r\necho done",
        )
        .await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
        assert_eq!(
            added.location(),
            Some(format!("/projects/{project}/process").as_str())
        );
        let p = process(&s, &project).await;
        assert_eq!(names(&p), ["Prepare", "Say hello"]);
        let action = &p["Steps"][1]["Actions"][0];
        assert_eq!(action["ActionType"], "Octopus.Script");
        assert_eq!(action["Name"], "Say hello");
        assert_eq!(
            action["Properties"]["Octopus.Action.Script.ScriptBody"],
            "echo \"hello from the portal\"\necho done"
        );
        assert_eq!(action["Properties"]["Octopus.Action.Script.Syntax"], "Bash");
        assert_eq!(action["Properties"]["Octopus.Action.RunOnServer"], "True");

        // The list shows both, in order, with the new version on its forms.
        let list = b.get(&format!("/projects/{project}/process")).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        let (prepare_at, hello_at) = (
            list.body.find("Prepare").unwrap(),
            list.body.find("Say hello").unwrap(),
        );
        assert!(prepare_at < hello_at);
        assert!(list.body.contains(r#"name="Version" value="2""#));
        assert!(list.body.contains("data-confirm="));

        // Move the new step up.
        let hello = step_id(&p, "Say hello");
        let moved = b
            .post(
                &format!("/projects/{project}/process/steps/{hello}/move"),
                &[("csrf", &b.csrf), ("Version", "2"), ("Direction", "up")],
            )
            .await;
        assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
        let p = process(&s, &project).await;
        assert_eq!(names(&p), ["Say hello", "Prepare"]);

        // Disable, then delete, the other one.
        let prepare = step_id(&p, "Prepare");
        let disabled = b
            .post(
                &format!("/projects/{project}/process/steps/{prepare}/disable"),
                &[("csrf", &b.csrf), ("Version", &version(&p))],
            )
            .await;
        assert_eq!(disabled.status, StatusCode::SEE_OTHER, "{}", disabled.body);
        let p = process(&s, &project).await;
        assert_eq!(p["Steps"][1]["Actions"][0]["IsDisabled"], true);
        assert_eq!(p["Steps"][0]["Actions"][0]["IsDisabled"], false);
        let list = b.get(&format!("/projects/{project}/process")).await;
        assert!(list.body.contains("Disabled"), "{}", list.body);
        assert!(list.body.contains("/enable"), "{}", list.body);

        let deleted = b
            .post(
                &format!("/projects/{project}/process/steps/{prepare}/delete"),
                &[("csrf", &b.csrf), ("Version", &version(&p))],
            )
            .await;
        assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
        let p = process(&s, &project).await;
        assert_eq!(names(&p), ["Say hello"]);

        // The process as built runs: the script's line is in the task log.
        let task = s.deploy("Shop", "1.0.0", "Dev").await;
        let done = s.wait_done(&task).await;
        assert_eq!(done["State"], "Success", "{}: {done}", s.backend);
        let (_, raw) = s
            .api(Method::GET, &format!("/api/tasks/{task}/raw"), None)
            .await;
        let raw = raw.as_str().unwrap_or_default().to_owned();
        assert!(raw.contains("hello from the portal"), "{raw}");
    })
    .await;
}

#[tokio::test]
async fn editing_a_step_keeps_what_the_form_does_not_show() {
    on_both("portal-process-edit", |s| async move {
        let mut step = script_step("Build", "echo build");
        step["Actions"][0]["Environments"] = serde_json::json!(["Environments-9"]);
        step["Actions"][0]["Properties"]["Custom.Thing"] = "kept".into();
        let project = s.project("Edit", vec![step]).await;
        let p = process(&s, &project).await;
        let id = step_id(&p, "Build");
        let b = s.sign_in().await;

        let form = b
            .get(&format!("/projects/{project}/process/steps/{id}"))
            .await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(form.body.contains("echo build"), "{}", form.body);
        assert!(form.body.contains(r#"value="Build""#));

        let saved = b
            .post(
                &format!("/projects/{project}/process/steps/{id}"),
                &[
                    ("csrf", &b.csrf),
                    ("Version", &version(&p)),
                    ("Name", "Build it"),
                    ("ScriptBody", "echo built"),
                    ("Syntax", "Python"),
                    ("RunOn", "targets"),
                    ("TargetRoles", "web, api"),
                    ("Condition", "Always"),
                ],
            )
            .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let p = process(&s, &project).await;
        let step = &p["Steps"][0];
        assert_eq!(step["Name"], "Build it");
        assert_eq!(step["Id"], id.as_str());
        assert_eq!(step["Condition"], "Always");
        assert_eq!(step["Properties"]["Octopus.Action.TargetRoles"], "web,api");
        let action = &step["Actions"][0];
        assert_eq!(
            action["Properties"]["Octopus.Action.Script.ScriptBody"],
            "echo built"
        );
        assert_eq!(
            action["Properties"]["Octopus.Action.Script.Syntax"],
            "Python"
        );
        assert_eq!(action["Properties"]["Custom.Thing"], "kept");
        assert_eq!(
            action["Environments"],
            serde_json::json!(["Environments-9"])
        );

        // The list shows the roles as chips.
        let list = b.get(&format!("/projects/{project}/process")).await;
        assert!(
            list.body.contains(r#"<span class="chip">web</span>"#),
            "{}",
            list.body
        );
    })
    .await;
}

#[tokio::test]
async fn a_step_without_a_name_is_refused_and_nothing_changes() {
    on_both("portal-process-noname", |s| async move {
        let project = s
            .project("Nameless", vec![script_step("One", "echo 1")])
            .await;
        let before = process(&s, &project).await;
        let b = s.sign_in().await;

        let refused = add_script(&b, &project, &version(&before), "  ", "echo typed").await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        // The reason is beside the Name field, and what was typed is kept.
        assert!(
            refused.body.contains(r#"id="step-name-error""#),
            "{}",
            refused.body
        );
        assert!(refused.body.contains("needs a name"), "{}", refused.body);
        assert!(refused.body.contains("echo typed"), "{}", refused.body);
        assert_eq!(process(&s, &project).await, before);

        // An empty script is refused beside the script, too.
        let empty = add_script(&b, &project, &version(&before), "Two", "  ").await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
        assert!(
            empty.body.contains(r#"id="script-body-error""#),
            "{}",
            empty.body
        );
        assert!(empty.body.contains(r#"value="Two""#), "{}", empty.body);

        // A duplicate name is the service's rule, shown on the field.
        let twice = add_script(&b, &project, &version(&before), "one", "echo x").await;
        assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.body);
        assert!(twice.body.contains("used twice"), "{}", twice.body);
        assert!(
            twice.body.contains(r#"id="step-name-error""#),
            "{}",
            twice.body
        );

        assert_eq!(process(&s, &project).await, before);
    })
    .await;
}

#[tokio::test]
async fn a_save_based_on_an_old_version_is_a_conflict() {
    on_both("portal-process-stale", |s| async move {
        let project = s
            .project(
                "Stale",
                vec![script_step("One", "echo 1"), script_step("Two", "echo 2")],
            )
            .await;
        let old = process(&s, &project).await;
        let b = s.sign_in().await;
        let two = step_id(&old, "Two");
        // Someone else saves first, through the API.
        let mut changed = old.clone();
        changed["Steps"][0]["Name"] = "One (renamed)".into();
        let (status, reply) = s
            .api(
                Method::PUT,
                &format!("/api/projects/{project}/deploymentprocesses"),
                Some(changed),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let now = process(&s, &project).await;

        // The step form, posted from the old version: refused, told, kept.
        let stale = b
            .post(
                &format!("/projects/{project}/process/steps/{two}"),
                &[
                    ("csrf", &b.csrf),
                    ("Version", &version(&old)),
                    ("Name", "Two edited"),
                    ("ScriptBody", "echo mine"),
                    ("Syntax", "Bash"),
                    ("RunOn", "server"),
                    ("Condition", "Success"),
                ],
            )
            .await;
        assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
        assert!(
            stale.body.contains("changed by someone else"),
            "{}",
            stale.body
        );
        assert!(stale.body.contains(r#"role="alert""#), "{}", stale.body);
        assert!(stale.body.contains("echo mine"), "{}", stale.body);
        assert_eq!(process(&s, &project).await, now);

        // So are the list's small forms.
        for action in ["move", "disable", "delete"] {
            let page = b
                .post(
                    &format!("/projects/{project}/process/steps/{two}/{action}"),
                    &[
                        ("csrf", &b.csrf),
                        ("Version", &version(&old)),
                        ("Direction", "up"),
                    ],
                )
                .await;
            assert_eq!(page.status, StatusCode::CONFLICT, "{action}: {}", page.body);
            assert!(
                page.body.contains("changed by someone else"),
                "{}",
                page.body
            );
            // The list as it now stands, with the new version to act on.
            assert!(page.body.contains("One (renamed)"), "{}", page.body);
            assert!(page
                .body
                .contains(&format!(r#"name="Version" value="{}""#, version(&now))));
            assert_eq!(process(&s, &project).await, now);
        }
    })
    .await;
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    on_both("portal-process-csrf", |s| async move {
        let project = s
            .project(
                "Guarded",
                vec![script_step("One", "echo 1"), script_step("Two", "echo 2")],
            )
            .await;
        let before = process(&s, &project).await;
        let two = step_id(&before, "Two");
        let b = s.sign_in().await;
        let v = version(&before);
        let posts = [
            (
                format!("/projects/{project}/process/steps"),
                vec![
                    ("Version", v.as_str()),
                    ("Kind", "script"),
                    ("Name", "Three"),
                    ("ScriptBody", "echo 3"),
                ],
            ),
            (
                format!("/projects/{project}/process/steps/{two}"),
                vec![
                    ("Version", v.as_str()),
                    ("Name", "Renamed"),
                    ("ScriptBody", "echo 3"),
                ],
            ),
            (
                format!("/projects/{project}/process/steps/{two}/move"),
                vec![("Version", v.as_str()), ("Direction", "up")],
            ),
            (
                format!("/projects/{project}/process/steps/{two}/disable"),
                vec![("Version", v.as_str())],
            ),
            (
                format!("/projects/{project}/process/steps/{two}/delete"),
                vec![("Version", v.as_str())],
            ),
        ];
        for (path, fields) in &posts {
            let page = b.post(path, fields).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
            let mut forged = fields.clone();
            forged.push(("csrf", "forged"));
            let page = b.post(path, &forged).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        }
        assert_eq!(process(&s, &project).await, before);
    })
    .await;
}

#[tokio::test]
async fn step_names_are_escaped_in_the_list() {
    on_both("portal-process-escape", |s| async move {
        let project = s
            .project(
                "Escapes",
                vec![script_step("<script>alert(1)</script>", "echo 1")],
            )
            .await;
        let b = s.sign_in().await;
        let list = b.get(&format!("/projects/{project}/process")).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        assert!(!list.body.contains("<script>alert(1)"), "{}", list.body);
        assert!(
            list.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{}",
            list.body
        );
    })
    .await;
}

#[tokio::test]
async fn package_and_manual_steps_through_their_forms() {
    on_both("portal-process-kinds", |s| async move {
        let project = s.project("Kinds", vec![]).await;
        let b = s.sign_in().await;
        let steps = format!("/projects/{project}/process/steps");

        let form = b.get(&format!("{steps}/new?kind=package")).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(form.body.contains(r#"id="package-id""#), "{}", form.body);
        assert!(
            form.body.contains(r#"value="feeds-builtin""#),
            "{}",
            form.body
        );

        // Without a package or roles: both named beside their fields.
        let package = |id: &'static str, roles: &'static str| {
            vec![
                ("Kind", "package"),
                ("Name", "Deploy web"),
                ("PackageId", id),
                ("FeedId", "feeds-builtin"),
                ("TargetRoles", roles),
                ("Condition", "Success"),
            ]
        };
        let mut fields = package("", "");
        fields.extend([("csrf", b.csrf.as_str()), ("Version", "1")]);
        let refused = b.post(&steps, &fields).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert!(
            refused.body.contains(r#"id="package-id-error""#),
            "{}",
            refused.body
        );
        assert!(
            refused.body.contains(r#"id="target-roles-error""#),
            "{}",
            refused.body
        );
        assert_eq!(process(&s, &project).await["Steps"], serde_json::json!([]));

        let mut fields = package("Acme.Web", "web");
        fields.extend([("csrf", b.csrf.as_str()), ("Version", "1")]);
        let saved = b.post(&steps, &fields).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let p = process(&s, &project).await;
        let action = &p["Steps"][0]["Actions"][0];
        assert_eq!(action["ActionType"], "Octopus.TentaclePackage");
        assert_eq!(action["Packages"][0]["PackageId"], "Acme.Web");
        assert_eq!(action["Packages"][0]["FeedId"], "feeds-builtin");
        assert_eq!(
            p["Steps"][0]["Properties"]["Octopus.Action.TargetRoles"],
            "web"
        );

        let manual = b
            .post(
                &steps,
                &[
                    ("csrf", &b.csrf),
                    ("Version", &version(&p)),
                    ("Kind", "manual"),
                    ("Name", "Sign off"),
                    ("Instructions", "Check the shop\r\nthen proceed"),
                    ("Condition", "Variable"),
                    ("ConditionExpression", "#{NeedsSignOff}"),
                ],
            )
            .await;
        assert_eq!(manual.status, StatusCode::SEE_OTHER, "{}", manual.body);
        let p = process(&s, &project).await;
        let step = &p["Steps"][1];
        assert_eq!(step["Condition"], "Variable");
        assert_eq!(
            step["Properties"]["Octopus.Step.ConditionVariableExpression"],
            "#{NeedsSignOff}"
        );
        assert_eq!(step["Actions"][0]["ActionType"], "Octopus.Manual");
        assert_eq!(
            step["Actions"][0]["Properties"]["Octopus.Action.Manual.Instructions"],
            "Check the shop\nthen proceed"
        );

        // The list says what each does and where (the add-step buttons carry
        // the same words, so look for them as the steps' facts).
        let list = b.get(&format!("/projects/{project}/process")).await;
        for needle in [
            "<dd>Deploy a package</dd>",
            "<dd>Manual intervention</dd>",
            "#{NeedsSignOff}",
        ] {
            assert!(list.body.contains(needle), "{needle}: {}", list.body);
        }
    })
    .await;
}
