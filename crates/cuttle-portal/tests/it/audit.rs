//! The audit log end to end: changes made through the API and the portal
//! each leave one event saying who, from where and what changed (secrets
//! never shown), failed changes leave none, the log cannot be edited, and
//! `/api/events`' filters return exactly the matching events; on SQLite and
//! PostgreSQL.

use crate::common;

use common::{manual_step, on_both, script_step, Server, ADMIN_KEY, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const AGENT: &str = "audit-test/1.0";
const SECRET: &str = "hunter2-never-in-the-log";
const SECRET_TOO: &str = "second-secret-never-in-the-log";

/// An API call as a CI tool makes it: API key and user agent.
async fn call(s: &Server, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = s
        .client
        .request(method, format!("{}{path}", s.url))
        .header("X-Octopus-ApiKey", ADMIN_KEY)
        .header("User-Agent", AGENT);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn ok(s: &Server, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, reply) = call(s, method, path, body).await;
    assert!(
        status.is_success(),
        "{}: {path} → {status}: {reply}",
        s.backend
    );
    reply
}

/// Every event matching `query`, newest first.
async fn events(s: &Server, query: &str) -> Vec<Value> {
    let page = ok(
        s,
        Method::GET,
        &format!("/api/events?take=2147483647&{query}"),
        None,
    )
    .await;
    assert_eq!(
        page["TotalResults"].as_u64().unwrap() as usize,
        page["Items"].as_array().unwrap().len(),
        "{}: {query}",
        s.backend
    );
    page["Items"].as_array().unwrap().clone()
}

fn categories(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["Category"].as_str().unwrap())
        .collect()
}

fn regards(e: &Value, id: &str) -> bool {
    e["RelatedDocumentIds"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == id)
}

async fn sign_in_with(s: &Server, password: &str) -> StatusCode {
    let form = s.get_page("/signin", None).await;
    let signin = form.cookie("cuttle_signin").expect("a sign-in cookie");
    let token = form.csrf();
    let page = s
        .client
        .post(format!("{}/signin", s.url))
        .header("User-Agent", AGENT)
        .header("Cookie", format!("cuttle_signin={signin}"))
        .form(&[
            ("csrf", token.as_str()),
            ("next", "/"),
            ("username", "admin"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    page.status()
}

#[tokio::test]
async fn every_change_is_one_event_saying_who_where_and_what() {
    on_both("audit_walk", |s| async move {
        let env = ok(
            &s,
            Method::POST,
            "/api/environments",
            Some(json!({"Name": "Staging"})),
        )
        .await;
        let env_id = env["Id"].as_str().unwrap().to_owned();
        let project_id = s
            .project("Audited", vec![script_step("Say", "echo hi")])
            .await;

        // Who, when, from where, on the first event made with the key.
        let created = events(&s, &format!("regarding={env_id}")).await;
        assert_eq!(categories(&created), ["Created"], "{}", s.backend);
        let e = &created[0];
        assert_eq!(e["Username"], "admin");
        assert_eq!(e["UserId"], "Users-1");
        assert_eq!(e["IpAddress"], "127.0.0.1");
        assert_eq!(e["UserAgent"], AGENT);
        assert_eq!(e["IdentityEstablishedWith"], "API key");
        assert_eq!(e["SpaceId"], "Spaces-1");
        assert!(e["Occurred"].as_str().unwrap().starts_with("20"));
        assert_eq!(e["ChangeDetails"]["DocumentContext"]["Name"], "Staging");
        assert_eq!(
            e["Links"]["Self"],
            format!("/api/events/{}", e["Id"].as_str().unwrap())
        );
        let one = ok(&s, Method::GET, e["Links"]["Self"].as_str().unwrap(), None).await;
        assert_eq!(one["Id"], e["Id"]);

        // A modification: the difference, before and after.
        let mut project = ok(
            &s,
            Method::GET,
            &format!("/api/projects/{project_id}"),
            None,
        )
        .await;
        project["Description"] = json!("audited now");
        ok(
            &s,
            Method::PUT,
            &format!("/api/projects/{project_id}"),
            Some(project),
        )
        .await;
        let modified = events(
            &s,
            &format!("regarding={project_id}&eventCategories=Modified"),
        )
        .await;
        let project_change = modified
            .iter()
            .find(|e| e["Message"].as_str().unwrap().starts_with("project "))
            .expect("the project's modification");
        let diffs = project_change["ChangeDetails"]["Differences"]
            .as_array()
            .unwrap();
        assert!(
            diffs.contains(&json!({"Path": "/Description", "Before": "", "After": "audited now"}))
                || diffs.contains(
                    &json!({"Path": "/Description", "Before": null, "After": "audited now"})
                ),
            "{}: {diffs:?}",
            s.backend
        );

        // Variables: the sensitive value never shows, its change does.
        let set_path = format!("/api/variables/variableset-{project_id}");
        let mut set = ok(&s, Method::GET, &set_path, None).await;
        set["Variables"] = json!([
            {"Name": "DbPassword", "Value": SECRET, "IsSensitive": true, "Type": "Sensitive"},
            {"Name": "Greeting", "Value": "hello"}
        ]);
        let mut set = ok(&s, Method::PUT, &set_path, Some(set)).await;
        set["Variables"][0]["Value"] = json!(SECRET_TOO);
        ok(&s, Method::PUT, &set_path, Some(set)).await;
        let variable_events = events(&s, &format!("regarding=variableset-{project_id}")).await;
        assert_eq!(
            categories(&variable_events),
            ["Modified", "Modified"],
            "{}",
            s.backend
        );
        let latest = &variable_events[0];
        let diffs = latest["ChangeDetails"]["Differences"].as_array().unwrap();
        assert!(
            diffs
                .iter()
                .any(|d| d["Path"].as_str().unwrap().ends_with("/Value")
                    && d["Before"] == "********"
                    && d["After"] == "********"),
            "{}: the sensitive value's change shows, hidden: {diffs:?}",
            s.backend
        );
        let whole_log = serde_json::to_string(&events(&s, "").await).unwrap();
        assert!(
            !whole_log.contains(SECRET) && !whole_log.contains(SECRET_TOO),
            "{}",
            s.backend
        );

        // A deployment's lifecycle, filterable by project and environment.
        let task = s.deploy("Audited", "1.0.0", "Staging").await;
        assert_eq!(s.wait_done(&task).await["State"], "Success");
        let deploy_events = events(
            &s,
            &format!("projects={project_id}&environments={env_id}&eventGroups=Deployment"),
        )
        .await;
        assert_eq!(
            categories(&deploy_events),
            [
                "DeploymentSucceeded",
                "DeploymentStarted",
                "DeploymentQueued"
            ],
            "{}",
            s.backend
        );
        assert!(deploy_events.iter().all(|e| regards(e, &task)));

        // Octopus's event groups: a failed deployment is a critical one.
        s.project("Failing", vec![script_step("Fail", "exit 1")])
            .await;
        let failed_task = s.deploy("Failing", "1.0.0", "Staging").await;
        assert_eq!(s.wait_done(&failed_task).await["State"], "Failed");
        let critical = events(&s, "eventGroups=DeploymentCritical").await;
        assert_eq!(categories(&critical), ["DeploymentFailed"], "{}", s.backend);
        assert!(regards(&critical[0], &failed_task));
        assert_eq!(
            events(&s, "eventGroups=deploymentcritical").await,
            critical,
            "ids in any case"
        );
        // With categories too, both must hold.
        assert!(events(
            &s,
            "eventGroups=DeploymentCritical&eventCategories=DeploymentSucceeded"
        )
        .await
        .is_empty());
        let queued = events(
            &s,
            "eventGroups=Deployment,User&eventCategories=DeploymentQueued",
        )
        .await;
        assert_eq!(
            categories(&queued),
            ["DeploymentQueued", "DeploymentQueued"],
            "{}",
            s.backend
        );
        let groups = ok(&s, Method::GET, "/api/events/groups", None).await;
        let critical_group = groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["Id"] == "DeploymentCritical")
            .expect("the DeploymentCritical group");
        assert_eq!(critical_group["Name"], "Deployment critical events");
        assert!(critical_group["EventCategories"]
            .as_array()
            .unwrap()
            .contains(&json!("DeploymentFailed")));

        // Sign-ins: a wrong password and the right one, then signing out.
        assert_eq!(
            sign_in_with(&s, "not the password").await,
            StatusCode::UNAUTHORIZED
        );
        let failed = events(&s, "eventCategories=LoginFailed").await;
        assert_eq!(failed.len(), 1, "{}", s.backend);
        assert_eq!(failed[0]["Username"], "admin");
        assert_eq!(failed[0]["IpAddress"], "127.0.0.1");
        assert_eq!(failed[0]["UserAgent"], AGENT);
        assert!(!serde_json::to_string(&failed)
            .unwrap()
            .contains("not the password"));
        assert_eq!(
            sign_in_with(&s, ADMIN_PASSWORD).await,
            StatusCode::SEE_OTHER
        );
        let signed_in = events(&s, "eventCategories=LoginSucceeded").await;
        assert_eq!(
            signed_in[0]["IdentityEstablishedWith"],
            "Username and password"
        );

        // The key was used all along: one event, not one per request.
        let used = events(&s, "eventCategories=ApiKeyUsed").await;
        assert_eq!(used.len(), 1, "{}: {used:?}", s.backend);

        // A change that fails records nothing.
        let before = events(&s, "").await.len();
        let (status, _) = call(
            &s,
            Method::PUT,
            &format!("/api/environments/{env_id}"),
            Some(json!({"Name": ""})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(
            &s,
            Method::DELETE,
            "/api/projectgroups/ProjectGroups-1",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "the group holds a project");
        assert_eq!(events(&s, "").await.len(), before, "{}", s.backend);

        // Deleting: the document as it was.
        ok(
            &s,
            Method::DELETE,
            &format!("/api/projects/{project_id}"),
            None,
        )
        .await;
        let deleted = events(
            &s,
            &format!("regarding={project_id}&eventCategories=Deleted"),
        )
        .await;
        assert_eq!(deleted.len(), 1);
        assert_eq!(
            deleted[0]["ChangeDetails"]["DocumentContext"]["Name"],
            "Audited"
        );
    })
    .await;
}

#[tokio::test]
async fn the_log_cannot_be_edited_and_bad_filters_are_refused() {
    on_both("audit_read_only", |s| async move {
        ok(
            &s,
            Method::POST,
            "/api/environments",
            Some(json!({"Name": "One"})),
        )
        .await;
        let id = events(&s, "").await[0]["Id"].as_str().unwrap().to_owned();
        for (method, path) in [
            (Method::PUT, format!("/api/events/{id}")),
            (Method::DELETE, format!("/api/events/{id}")),
            (Method::DELETE, format!("/api/Spaces-1/events/{id}")),
            (Method::POST, "/api/events".to_owned()),
            (Method::PUT, "/api/events".to_owned()),
        ] {
            let (status, body) = call(
                &s,
                method.clone(),
                &path,
                Some(json!({"Message": "forged"})),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {body}"
            );
            assert!(body["ErrorMessage"]
                .as_str()
                .unwrap()
                .contains("cannot be changed"));
        }
        let one = ok(&s, Method::GET, &format!("/api/events/{id}"), None).await;
        assert_ne!(one["Message"], "forged");

        for (query, says) in [
            ("from=yesterday", "'yesterday' is not a date"),
            ("to=2026-13-45", "'2026-13-45' is not a date"),
            ("take=-1", "take must be 0 or more"),
            ("skip=-5", "skip must be 0 or more"),
            ("fromAutoId=abc", "'abc' is not an event number"),
            (
                "eventGroups=Nonsense",
                "'Nonsense' is not a group of events",
            ),
            // Octopus's, but Cuttle records none of its events.
            (
                "eventGroups=AutoDeploy",
                "'AutoDeploy' is not a group of events",
            ),
            ("take=lots", "The query string is not valid"),
        ] {
            let (status, body) = call(&s, Method::GET, &format!("/api/events?{query}"), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            let text = format!("{} {}", body["ErrorMessage"], body["Errors"]);
            assert!(text.contains(says), "{query}: {text}");
        }
        let unknown = call(&s, Method::GET, "/api/events/Events-999999", None).await;
        assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn filters_return_exactly_the_matching_events() {
    on_both("audit_filters", |s| async move {
        let mut envs = vec![];
        for name in ["A", "B", "C"] {
            let e = ok(
                &s,
                Method::POST,
                "/api/environments",
                Some(json!({"Name": name})),
            )
            .await;
            envs.push(e["Id"].as_str().unwrap().to_owned());
        }
        let group = ok(
            &s,
            Method::POST,
            "/api/projectgroups",
            Some(json!({"Name": "Grouped"})),
        )
        .await;
        let group_id = group["Id"].as_str().unwrap().to_owned();
        let project = ok(
            &s,
            Method::POST,
            "/api/projects",
            Some(json!({"Name": "P", "ProjectGroupId": group_id, "LifecycleId": "Lifecycles-1"})),
        )
        .await;
        let project_id = project["Id"].as_str().unwrap().to_owned();
        let bob_key = s_create_user(&s, "bob").await;
        let (status, bobs) = s
            .client
            .post(format!("{}/api/environments", s.url))
            .header("X-Octopus-ApiKey", &bob_key)
            .json(&json!({"Name": "Bob's"}))
            .send()
            .await
            .map(|r| (r.status(), r))
            .unwrap();
        assert_eq!(status, StatusCode::CREATED);
        let bobs_env: Value = bobs.json().await.unwrap();

        let all = events(&s, "").await;
        let by = |f: &dyn Fn(&Value) -> bool| -> Vec<String> {
            all.iter()
                .filter(|e| f(e))
                .map(|e| e["Id"].as_str().unwrap().to_owned())
                .collect()
        };
        let ids = |list: Vec<Value>| -> Vec<String> {
            list.iter()
                .map(|e| e["Id"].as_str().unwrap().to_owned())
                .collect()
        };
        // Newest first.
        let autos: Vec<i64> = all.iter().map(|e| e["AutoId"].as_i64().unwrap()).collect();
        assert!(autos.windows(2).all(|w| w[0] > w[1]), "{autos:?}");

        let env_a = &envs[0];
        assert_eq!(
            ids(events(&s, &format!("environments={env_a}")).await),
            by(&|e| regards(e, env_a))
        );
        assert_eq!(by(&|e| regards(e, env_a)).len(), 1);
        let two = format!("{},{}", envs[0], envs[1]);
        assert_eq!(
            ids(events(&s, &format!("regardingAny={two}")).await),
            by(&|e| regards(e, &envs[0]) || regards(e, &envs[1]))
        );
        assert!(events(&s, &format!("regarding={two}")).await.is_empty());
        assert_eq!(
            ids(events(&s, &format!("projectGroups={group_id}")).await),
            by(&|e| regards(e, &group_id) || regards(e, &project_id))
        );
        assert_eq!(
            by(&|e| regards(e, &group_id) || regards(e, &project_id)).len(),
            2
        );
        assert_eq!(
            ids(events(&s, "users=Users-1&eventCategories=Created").await),
            by(&|e| e["UserId"] == "Users-1" && e["Category"] == "Created")
        );
        let bob = events(&s, &format!("users={}", all[0]["UserId"].as_str().unwrap())).await;
        assert!(bob.iter().all(|e| e["Username"] == "bob"));
        assert!(bob
            .iter()
            .any(|e| regards(e, bobs_env["Id"].as_str().unwrap())));
        assert_eq!(
            ids(events(&s, "documentTypes=Environments").await),
            by(&|e| e["RelatedDocumentIds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d.as_str().unwrap().starts_with("Environments-")))
        );
        // Event numbers and dates bound a window.
        let (lo, hi) = (autos[autos.len() - 2], autos[1]);
        assert_eq!(
            ids(events(&s, &format!("fromAutoId={lo}&toAutoId={hi}")).await),
            by(&|e| (lo..=hi).contains(&e["AutoId"].as_i64().unwrap()))
        );
        let newest = all[0]["Occurred"].as_str().unwrap();
        let at = |e: &Value| e["Occurred"].as_str().unwrap().to_owned();
        assert_eq!(
            ids(events(&s, &format!("from={}", urlencode(newest))).await),
            by(&|e| at(e).as_str() >= newest)
        );
        assert!(events(&s, "to=2000-01-01").await.is_empty());
        assert_eq!(
            events(&s, "from=2000-01-01&to=2999-12-31").await.len(),
            all.len()
        );
        // Paging: pages in order, and the envelope other lists use.
        let page = ok(&s, Method::GET, "/api/events?skip=1&take=2", None).await;
        assert_eq!(page["ItemType"], "Event");
        assert_eq!(page["TotalResults"].as_u64().unwrap() as usize, all.len());
        assert_eq!(
            ids(page["Items"].as_array().unwrap().clone()),
            by(&|_| true)[1..3]
        );
        // A space's log holds that space's events only; sign-ins have none.
        let spaced = ok(
            &s,
            Method::GET,
            "/api/Spaces-1/events?take=2147483647",
            None,
        )
        .await;
        let spaced = spaced["Items"].as_array().unwrap().clone();
        assert!(spaced.iter().all(|e| e["SpaceId"] == "Spaces-1"));
        assert_eq!(ids(spaced), by(&|e| e["SpaceId"] == "Spaces-1"));
        // The lists to filter by.
        let cats = ok(&s, Method::GET, "/api/events/categories", None).await;
        assert!(cats
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Id"] == "DeploymentSucceeded"));
        let types = ok(&s, Method::GET, "/api/events/documenttypes", None).await;
        assert!(types
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Id"] == "Projects"));
        let groups = ok(&s, Method::GET, "/api/events/groups", None).await;
        assert!(groups
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Id"] == "Machine"));
    })
    .await;
}

#[tokio::test]
async fn a_paused_deployment_and_its_cancellation_are_events() {
    on_both("audit_interventions", |s| async move {
        s.environment("Dev").await;
        let project = s
            .project("Gated", vec![manual_step("Approve", "Look first")])
            .await;
        let task = s.deploy("Gated", "1.0.0", "Dev").await;
        s.wait_pending(&task).await;
        let raised = events(
            &s,
            &format!("regarding={task}&eventCategories=ManualInterventionInterruptionRaised"),
        )
        .await;
        assert_eq!(raised.len(), 1, "{}", s.backend);
        assert!(
            regards(&raised[0], &project),
            "{}: {:?}",
            s.backend,
            raised[0]
        );

        ok(&s, Method::POST, &format!("/api/tasks/{task}/cancel"), None).await;
        let done = s.wait_done(&task).await;
        assert_eq!(done["State"], "Canceled");
        let canceled = events(
            &s,
            &format!("regarding={task}&eventCategories=TaskCanceled"),
        )
        .await;
        assert_eq!(canceled.len(), 1);
        assert_eq!(canceled[0]["Username"], "admin");
        assert_eq!(canceled[0]["UserAgent"], AGENT);
        let ended = events(
            &s,
            &format!("regarding={task}&eventCategories=DeploymentFailed"),
        )
        .await;
        assert_eq!(ended.len(), 1, "{}", s.backend);
        assert!(
            ended[0]["Message"].as_str().unwrap().contains("Canceled"),
            "{:?}",
            ended[0]
        );
    })
    .await;
}

/// A second user with an API key, managing Spaces-1's environments
/// (through a team written straight to the store, so that no event of its
/// own joins the log); returns the key.
async fn s_create_user(s: &Server, username: &str) -> String {
    use cuttle_model::ids::Collection;
    let key = cuttle_service::auth::generate_api_key();
    let mut tx = s.inst.store.begin().await.unwrap();
    let user = cuttle_model::User {
        id: tx.next_id(Collection::Users).await.unwrap(),
        username: username.into(),
        display_name: username.into(),
        is_active: true,
        ..Default::default()
    };
    tx.insert_user(&user, None).await.unwrap();
    let record = cuttle_model::ApiKey {
        id: tx.next_id(Collection::ApiKeys).await.unwrap(),
        user_id: user.id.clone(),
        purpose: "tests".into(),
        created: Some(cuttle_model::Timestamp::now()),
        ..Default::default()
    };
    tx.insert_api_key(&record, &cuttle_service::auth::hash_api_key(&key))
        .await
        .unwrap();
    let team = cuttle_model::Team {
        id: tx.next_id(Collection::Teams).await.unwrap(),
        name: format!("{username}'s team"),
        space_id: Some("Spaces-1".into()),
        member_user_ids: vec![user.id.clone()],
        version: 1,
        ..Default::default()
    };
    tx.insert(&team).await.unwrap();
    let role = cuttle_model::ScopedUserRole {
        id: tx.next_id(Collection::ScopedUserRoles).await.unwrap(),
        team_id: team.id.clone(),
        user_role_id: "userroles-environmentmanager".into(),
        space_id: Some("Spaces-1".into()),
        ..Default::default()
    };
    tx.insert(&role).await.unwrap();
    tx.commit().await.unwrap();
    key
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn the_audit_page_lists_events_with_filters() {
    on_both("audit_page", |s| async move {
        ok(
            &s,
            Method::POST,
            "/api/environments",
            Some(json!({"Name": "Shown <here>"})),
        )
        .await;
        let browser = s.sign_in().await;
        let page = browser.get("/audit").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body
                .contains("environment Shown &lt;here&gt; was created"),
            "{}",
            page.body
        );
        assert!(page.body.contains("LoginSucceeded"));
        let filtered = browser.get("/audit?eventCategories=LoginSucceeded").await;
        assert_eq!(filtered.status, StatusCode::OK);
        assert!(
            !filtered.body.contains("Shown &lt;here&gt; was created"),
            "{}",
            filtered.body
        );
        assert!(filtered.body.contains("signed in"));
        let bad = browser.get("/audit?from=someday").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("'someday' is not a date"), "{}", bad.body);
    })
    .await;
}
