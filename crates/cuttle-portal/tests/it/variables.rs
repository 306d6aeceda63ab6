//! The variables editor over HTTP, on both databases: adding a scoped
//! variable and deploying with it, a save based on a stale version, rows
//! the service refuses, CSRF, sensitive values that never reach the page
//! yet survive a save, escaping, and library variable sets.

use crate::common;

use common::{on_both, script_step, Browser, Page, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The id of the project's variable set.
async fn set_id(s: &Server, project: &str) -> String {
    let (_, p) = s
        .api(Method::GET, &format!("/api/projects/{project}"), None)
        .await;
    p["VariableSetId"].as_str().unwrap().to_owned()
}

/// The project's variable set as the API returns it.
async fn variables(s: &Server, project: &str) -> Value {
    let set = set_id(s, project).await;
    let (status, v) = s
        .api(Method::GET, &format!("/api/variables/{set}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// Saves a project's variables through the API, as another user would.
async fn put_variables(s: &Server, project: &str, version: i64, vars: Value) {
    let set = set_id(s, project).await;
    let (status, reply) = s
        .api(
            Method::PUT,
            &format!("/api/variables/{set}"),
            Some(json!({"Version": version, "Variables": vars})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

async fn environment_id(s: &Server, name: &str) -> String {
    s.environment(name).await;
    let (_, found) = s
        .api(Method::GET, &format!("/api/environments?name={name}"), None)
        .await;
    found["Items"][0]["Id"].as_str().unwrap().to_owned()
}

async fn raw_log(s: &Server, task: &str) -> String {
    let (_, log) = s
        .api(Method::GET, &format!("/api/tasks/{task}/raw"), None)
        .await;
    log.as_str().map(str::to_owned).unwrap_or(log.to_string())
}

/// The `Version` the page's form was loaded at.
fn version(page: &Page) -> String {
    let marker = r#"name="Version" value=""#;
    let at = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no Version in:\n{}", page.body));
    let rest = &page.body[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Posts the grid: `rows` as `(index, field, value)`.
async fn post_grid(
    b: &Browser<'_>,
    path: &str,
    version: &str,
    action: &str,
    rows: &[(usize, &str, &str)],
) -> Page {
    let keys: Vec<(String, &str)> = rows
        .iter()
        .map(|(i, f, v)| (format!("v[{i}].{f}"), *v))
        .collect();
    let mut form: Vec<(&str, &str)> = vec![
        ("csrf", b.csrf.as_str()),
        ("Version", version),
        ("action", action),
    ];
    form.extend(keys.iter().map(|(k, v)| (k.as_str(), *v)));
    b.post(path, &form).await
}

#[tokio::test]
async fn a_variable_scoped_to_dev_is_added_and_used_by_a_deployment() {
    on_both("portal-vars-happy", |s| async move {
        let dev = environment_id(&s, "Dev").await;
        environment_id(&s, "Test").await;
        let project = s
            .project(
                "Greeter",
                vec![script_step("Greet", "echo \"greeting=#{Greeting}\"")],
            )
            .await;
        let b = s.sign_in().await;
        let path = format!("/projects/{project}/variables");

        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for id in [
            r#"id="var-name-new""#,
            r#"id="var-value-new""#,
            r#"id="var-env-new""#,
            r#"id="save-variables""#,
        ] {
            assert!(page.body.contains(id), "{id} missing:\n{}", page.body);
        }
        assert!(page
            .body
            .contains(&format!(r#"<option value="{dev}">Dev</option>"#)));
        assert_eq!(version(&page), "0");

        let saved = post_grid(
            &b,
            &path,
            "0",
            "save",
            &[
                (0, "Id", ""),
                (0, "Name", "Greeting"),
                (0, "Value", "hello from dev"),
                (0, "Environment", &dev),
                (0, "Role", ""),
            ],
        )
        .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        assert_eq!(saved.location(), Some(format!("{path}?saved=1").as_str()));

        let set = variables(&s, &project).await;
        assert_eq!(set["Version"], 1);
        let vars = set["Variables"].as_array().unwrap();
        assert_eq!(vars.len(), 1, "{set}");
        assert_eq!(vars[0]["Name"], "Greeting");
        assert_eq!(vars[0]["Value"], "hello from dev");
        assert_eq!(vars[0]["Scope"]["Environment"], json!([dev]));
        assert_eq!(vars[0]["IsSensitive"], false);

        // The page shows the notice, the scope by name, and a fresh blank row.
        let after = b.get(&format!("{path}?saved=1")).await;
        assert!(
            after.body.contains(r#"role="status">Saved."#),
            "{}",
            after.body
        );
        assert!(
            after.body.contains(r#"title="environment">Dev</span>"#),
            "{}",
            after.body
        );
        assert!(after.body.contains(r#"id="var-name-new""#));
        assert!(!after.body.contains(&format!(">{dev}<")), "no raw ids");
        assert_eq!(version(&after), "1");

        let task = s.deploy("Greeter", "1.0.0", "Dev").await;
        let done = s.wait_done(&task).await;
        assert_eq!(done["State"], "Success", "{done}");
        let log = raw_log(&s, &task).await;
        assert!(log.contains("greeting=hello from dev"), "{log}");
    })
    .await;
}

#[tokio::test]
async fn a_save_based_on_an_old_version_is_refused_and_keeps_the_other_edit() {
    on_both("portal-vars-conflict", |s| async move {
        let project = s.project("Racy", vec![]).await;
        put_variables(&s, &project, 0, json!([{"Name": "Mode", "Value": "first"}])).await;
        let b = s.sign_in().await;
        let path = format!("/projects/{project}/variables");
        let page = b.get(&path).await;
        assert_eq!(version(&page), "1");
        let id = variables(&s, &project).await["Variables"][0]["Id"]
            .as_str()
            .unwrap()
            .to_owned();

        // Someone else saves in between.
        put_variables(
            &s,
            &project,
            1,
            json!([{"Id": id, "Name": "Mode", "Value": "theirs"}]),
        )
        .await;

        let stale = post_grid(
            &b,
            &path,
            "1",
            "save",
            &[
                (0, "Id", &id),
                (0, "Name", "Mode"),
                (0, "Value", "mine"),
                (1, "Name", "Extra"),
                (1, "Value", "typed"),
            ],
        )
        .await;
        assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
        assert!(
            stale.body.contains("Someone else changed these variables"),
            "{}",
            stale.body
        );
        // What was typed is still there, and the form still names the old
        // version, so saving again cannot overwrite their edit either.
        assert!(stale.body.contains(">mine</textarea>"), "{}", stale.body);
        assert!(stale.body.contains(r#"value="Extra""#));
        assert_eq!(version(&stale), "1");

        let set = variables(&s, &project).await;
        assert_eq!(set["Version"], 2);
        let vars = set["Variables"].as_array().unwrap();
        assert_eq!(vars.len(), 1, "{set}");
        assert_eq!(vars[0]["Value"], "theirs");
    })
    .await;
}

#[tokio::test]
async fn a_variable_without_a_name_is_shown_on_its_row_and_nothing_is_saved() {
    on_both("portal-vars-noname", |s| async move {
        let project = s.project("Named", vec![]).await;
        put_variables(&s, &project, 0, json!([{"Name": "Keep", "Value": "1"}])).await;
        let id = variables(&s, &project).await["Variables"][0]["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let b = s.sign_in().await;
        let path = format!("/projects/{project}/variables");

        let bad = post_grid(
            &b,
            &path,
            "1",
            "save",
            &[
                (0, "Id", &id),
                (0, "Name", "Keep"),
                (0, "Value", "changed"),
                (1, "Id", ""),
                (1, "Name", "  "),
                (1, "Value", "orphan value"),
            ],
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert!(bad.body.contains(r#"role="alert""#), "{}", bad.body);
        // The message sits under the nameless row's name input, which
        // points at it; the other row has no error.
        assert!(bad
            .body
            .contains(r#"aria-describedby="var-name-new-error""#));
        let under = bad
            .body
            .split(r#"id="var-name-new-error">"#)
            .nth(1)
            .unwrap_or_else(|| panic!("no row error in:\n{}", bad.body));
        assert!(under.starts_with("Name is required"), "{under}");
        assert!(!bad.body.contains(r#"id="var-name-0-error""#));
        // Typed values are kept.
        assert!(bad.body.contains(">orphan value</textarea>"));
        assert!(bad.body.contains(">changed</textarea>"));

        let set = variables(&s, &project).await;
        assert_eq!(set["Version"], 1);
        assert_eq!(set["Variables"].as_array().unwrap().len(), 1);
        assert_eq!(set["Variables"][0]["Value"], "1");
    })
    .await;
}

#[tokio::test]
async fn a_save_without_the_csrf_token_is_refused() {
    on_both("portal-vars-csrf", |s| async move {
        let project = s.project("Guarded", vec![]).await;
        let b = s.sign_in().await;
        let path = format!("/projects/{project}/variables");
        for csrf in [None, Some("forged")] {
            let mut form = vec![
                ("Version", "0"),
                ("action", "save"),
                ("v[0].Name", "Sneaky"),
                ("v[0].Value", "x"),
            ];
            if let Some(c) = csrf {
                form.push(("csrf", c));
            }
            let refused = b.post(&path, &form).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        }
        let set = variables(&s, &project).await;
        assert_eq!(set["Version"], 0);
        assert_eq!(set["Variables"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn sensitive_values_never_reach_the_page_and_survive_a_save() {
    on_both("portal-vars-sensitive", |s| async move {
        environment_id(&s, "Dev").await;
        let project = s
            .project(
                "Secretive",
                vec![script_step(
                    "Use",
                    "echo \"upper=$(printf %s '#{Secret}' | tr a-z A-Z) plain=#{Plain}\"",
                )],
            )
            .await;
        put_variables(
            &s,
            &project,
            0,
            json!([
                {"Name": "Secret", "Value": "hunter-two", "IsSensitive": true},
                {"Name": "Plain", "Value": "one"}
            ]),
        )
        .await;
        let before = variables(&s, &project).await;
        let secret_id = before["Variables"][0]["Id"].as_str().unwrap().to_owned();
        let plain_id = before["Variables"][1]["Id"].as_str().unwrap().to_owned();

        let b = s.sign_in().await;
        let path = format!("/projects/{project}/variables");
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("hunter-two"), "{}", page.body);
        assert!(
            page.body.contains(r#"id="var-value-0" type="password""#),
            "{}",
            page.body
        );
        assert!(page.body.contains("<span>set</span>"));

        // A new sensitive value typed into a form that comes back with a
        // problem is not sent back either.
        let bad = post_grid(
            &b,
            &path,
            "1",
            "save",
            &[
                (0, "Id", &secret_id),
                (0, "Name", "Secret"),
                (0, "Value", "typed-secret-9"),
                (0, "Sensitive", "on"),
                (1, "Name", ""),
                (1, "Value", "no name"),
            ],
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert!(!bad.body.contains("typed-secret-9"), "{}", bad.body);
        assert!(bad.body.contains("Type the new value again"));

        // Left blank, the stored value is kept while the rest changes.
        let saved = post_grid(
            &b,
            &path,
            "1",
            "save",
            &[
                (0, "Id", &secret_id),
                (0, "Name", "Secret"),
                (0, "Value", ""),
                (0, "Sensitive", "on"),
                (1, "Id", &plain_id),
                (1, "Name", "Plain"),
                (1, "Value", "two"),
            ],
        )
        .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let after = variables(&s, &project).await;
        assert_eq!(after["Version"], 2);
        assert_eq!(after["Variables"][0]["IsSensitive"], true);
        assert_eq!(after["Variables"][0]["Value"], Value::Null);
        assert_eq!(after["Variables"][1]["Value"], "two");

        let task = s.deploy("Secretive", "1.0.0", "Dev").await;
        let done = s.wait_done(&task).await;
        assert_eq!(done["State"], "Success", "{done}");
        let log = raw_log(&s, &task).await;
        assert!(log.contains("upper=HUNTER-TWO plain=two"), "{log}");
    })
    .await;
}

#[tokio::test]
async fn names_and_values_are_escaped() {
    on_both("portal-vars-escaping", |s| async move {
        let project = s.project("Escaped", vec![]).await;
        put_variables(
            &s,
            &project,
            0,
            json!([{"Name": "<script>alert(1)</script>", "Value": "</textarea><script>alert(2)</script>", "Scope": {"Role": ["<b>web</b>"]}}]),
        )
        .await;
        let b = s.sign_in().await;
        let path = format!("/projects/{project}/variables");
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<b>web</b>"));
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page
            .body
            .contains("&lt;/textarea&gt;&lt;script&gt;alert(2)&lt;/script&gt;"));
        assert!(page.body.contains("&lt;b&gt;web&lt;/b&gt;"));

        // Typed markup coming back with an error is escaped too.
        let bad = post_grid(
            &b,
            &path,
            "1",
            "save",
            &[(0, "Name", ""), (0, "Value", "<img src=x onerror=alert(3)>")],
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(!bad.body.contains("<img src=x"), "{}", bad.body);
        assert!(bad.body.contains("&lt;img src=x onerror=alert(3)&gt;"));
    })
    .await;
}

#[tokio::test]
async fn add_variable_without_the_script_adds_a_row_and_saves_nothing() {
    on_both("portal-vars-add", |s| async move {
        let project = s.project("Growing", vec![]).await;
        let b = s.sign_in().await;
        let path = format!("/projects/{project}/variables");
        let more = post_grid(
            &b,
            &path,
            "0",
            "add",
            &[(0, "Name", "Typed"), (0, "Value", "so far")],
        )
        .await;
        assert_eq!(more.status, StatusCode::OK, "{}", more.body);
        assert!(
            more.body
                .contains(r#"id="var-name-new" type="text" name="v[0].Name" value="Typed""#),
            "{}",
            more.body
        );
        assert!(
            more.body.contains(r#"name="v[1].Name" value="""#),
            "{}",
            more.body
        );
        assert!(!more.body.contains(r#"name="v[2].Name""#));
        let set = variables(&s, &project).await;
        assert_eq!(set["Version"], 0);
        assert_eq!(set["Variables"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn library_variable_sets_are_created_edited_and_linked_from_projects() {
    on_both("portal-vars-library", |s| async move {
        let b = s.sign_in().await;
        let list = b.get("/library/variable-sets").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        assert!(list.body.contains(r#"id="create-variable-set""#));

        // A set without a name: the form again with the reason; nothing made.
        let bad = b
            .post(
                "/library/variable-sets",
                &[
                    ("csrf", &b.csrf),
                    ("Name", " "),
                    ("Description", "kept text"),
                ],
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert!(bad.body.contains(r#"id="lvs-name-error""#), "{}", bad.body);
        assert!(bad.body.contains("kept text</textarea>"));
        let (_, sets) = s.api(Method::GET, "/api/libraryvariablesets", None).await;
        assert_eq!(sets["TotalResults"], 0, "{sets}");

        let made = b
            .post(
                "/library/variable-sets",
                &[
                    ("csrf", &b.csrf),
                    ("Name", "Shared"),
                    ("Description", "Common settings"),
                ],
            )
            .await;
        assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
        let (_, sets) = s.api(Method::GET, "/api/libraryvariablesets", None).await;
        let lib = sets["Items"][0]["Id"].as_str().unwrap().to_owned();
        let path = format!("/library/variable-sets/{lib}");
        assert_eq!(made.location(), Some(path.as_str()));

        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Common settings"));
        assert!(page.body.contains(r#"id="var-name-new""#));
        let saved = post_grid(
            &b,
            &path,
            &version(&page),
            "save",
            &[
                (0, "Name", "Region"),
                (0, "Value", "eu"),
                (0, "Role", "web, db"),
            ],
        )
        .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let (_, set) = s
            .api(
                Method::GET,
                &format!("/api/variables/variableset-{lib}"),
                None,
            )
            .await;
        assert_eq!(set["Variables"][0]["Name"], "Region", "{set}");
        assert_eq!(set["Variables"][0]["Scope"]["Role"], json!(["web", "db"]));

        // A project including it links to it.
        let project = s.project("Includer", vec![]).await;
        let (_, mut p) = s
            .api(Method::GET, &format!("/api/projects/{project}"), None)
            .await;
        p["IncludedLibraryVariableSetIds"] = json!([lib]);
        let (status, reply) = s
            .api(Method::PUT, &format!("/api/projects/{project}"), Some(p))
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let vars = b.get(&format!("/projects/{project}/variables")).await;
        assert!(
            vars.body
                .contains(&format!(r#"<a href="{path}">Shared</a>"#)),
            "{}",
            vars.body
        );

        // Settings: a blank name is refused beside the field, unchanged.
        let lib_api = format!("/api/libraryvariablesets/{lib}");
        let settings = format!("{path}/settings");
        let blank = b
            .post(
                &settings,
                &[("csrf", &b.csrf), ("Name", ""), ("Description", "d")],
            )
            .await;
        assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{}", blank.body);
        assert!(
            blank.body.contains(r#"id="lvs-edit-name-error""#),
            "{}",
            blank.body
        );
        assert_eq!(s.api(Method::GET, &lib_api, None).await.1["Name"], "Shared");
        let renamed = b
            .post(
                &settings,
                &[
                    ("csrf", &b.csrf),
                    ("Name", "Shared config"),
                    ("Description", "d"),
                ],
            )
            .await;
        assert_eq!(renamed.status, StatusCode::SEE_OTHER, "{}", renamed.body);
        let (_, now) = s.api(Method::GET, &lib_api, None).await;
        assert_eq!(now["Name"], "Shared config");
        assert_eq!(now["Description"], "d");

        // Deleting: refused without the token, and while a project includes it.
        let delete = format!("{path}/delete");
        let forged = b.post(&delete, &[("csrf", "forged")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let used = b.post(&delete, &[("csrf", &b.csrf)]).await;
        assert_eq!(used.status, StatusCode::BAD_REQUEST, "{}", used.body);
        assert!(used.body.contains("Includer"), "{}", used.body);
        assert_eq!(s.api(Method::GET, &lib_api, None).await.0, StatusCode::OK);

        let (_, mut p) = s
            .api(Method::GET, &format!("/api/projects/{project}"), None)
            .await;
        p["IncludedLibraryVariableSetIds"] = json!([]);
        let (status, reply) = s
            .api(Method::PUT, &format!("/api/projects/{project}"), Some(p))
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let gone = b.post(&delete, &[("csrf", &b.csrf)]).await;
        assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
        assert_eq!(gone.location(), Some("/library/variable-sets"));
        assert_eq!(
            s.api(Method::GET, &lib_api, None).await.0,
            StatusCode::NOT_FOUND
        );
    })
    .await;
}

#[tokio::test]
async fn a_scope_naming_nothing_is_shown_on_its_row() {
    on_both("portal-vars-badscope", |s| async move {
        environment_id(&s, "Dev").await;
        let project = s.project("Scoped", vec![]).await;
        let b = s.sign_in().await;
        let path = format!("/projects/{project}/variables");
        let bad = post_grid(
            &b,
            &path,
            "0",
            "save",
            &[
                (0, "Name", "Fine"),
                (0, "Value", "1"),
                (1, "Name", "Odd"),
                (1, "Value", "2"),
                (1, "Environment", "Environments-999"),
            ],
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        // The first row is fine; the second carries the message, and its
        // unknown environment stays chosen rather than silently dropped.
        assert!(
            !bad.body.contains(r#"id="var-name-new-error""#),
            "{}",
            bad.body
        );
        let under = bad
            .body
            .split(r#"id="var-name-1-error">"#)
            .nth(1)
            .unwrap_or_else(|| panic!("no row error in:\n{}", bad.body));
        assert!(
            under.starts_with("The variable 'Odd' is scoped to the environment"),
            "{under}"
        );
        assert!(bad
            .body
            .contains(r#"<option value="Environments-999" selected>(deleted)</option>"#));
        let set = variables(&s, &project).await;
        assert_eq!(set["Version"], 0);
        assert_eq!(set["Variables"], json!([]));
    })
    .await;
}
