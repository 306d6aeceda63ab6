//! The portal over HTTP, on both databases: signing in and out, sessions
//! that expire, CSRF on every form, escaping, the dashboard's cells, the
//! task page and answering an interruption from it, and what the API
//! accepts the session cookie for.

use crate::common;

use common::{manual_step, on_both, script_step, Page, ADMIN_PASSWORD};
use reqwest::header::COOKIE;
use reqwest::{Method, StatusCode};
use std::time::Duration;

#[tokio::test]
async fn signing_in_and_out() {
    on_both("portal-signin", |s| async move {
        // Signed out, pages send the browser to sign in and back.
        let home = s.get_page("/tasks?state=Failed", None).await;
        assert_eq!(home.status, StatusCode::SEE_OTHER);
        assert_eq!(
            home.location(),
            Some("/signin?next=%2Ftasks%3Fstate%3DFailed")
        );

        let form = s
            .get_page("/signin?next=%2Ftasks%3Fstate%3DFailed", None)
            .await;
        assert_eq!(form.status, StatusCode::OK);
        assert!(
            form.body
                .contains(r#"<label for="username">Username</label>"#),
            "{}",
            form.body
        );
        assert!(form
            .body
            .contains(r#"<label for="password">Password</label>"#));
        assert!(form
            .body
            .contains(r#"name="next" value="/tasks?state=Failed""#));
        let signin = form.cookie("cuttle_signin").unwrap();
        let signin_cookie = format!("cuttle_signin={signin}");
        let token = form.csrf();
        assert!(form
            .set_cookies()
            .iter()
            .any(|c| c.contains("HttpOnly") && c.contains("SameSite=Strict")));

        // A wrong password: the form again, with the reason, and no session.
        let wrong = s
            .post_form(
                "/signin",
                &[
                    ("csrf", &token),
                    ("next", "/tasks?state=Failed"),
                    ("username", "admin"),
                    ("password", "nope"),
                ],
                Some(&signin_cookie),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(
            wrong
                .body
                .contains("The username or password is not correct"),
            "{}",
            wrong.body
        );
        assert!(wrong.body.contains(r#"value="admin""#));
        assert_eq!(wrong.cookie("cuttle_session"), None);

        // A sign-in form from elsewhere (no matching cookie) is refused.
        let forged = s
            .post_form(
                "/signin",
                &[
                    ("csrf", "forged"),
                    ("username", "admin"),
                    ("password", ADMIN_PASSWORD),
                ],
                Some("cuttle_signin=other"),
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(forged.cookie("cuttle_session"), None);
        let no_cookie = s
            .post_form(
                "/signin",
                &[
                    ("csrf", &token),
                    ("username", "admin"),
                    ("password", ADMIN_PASSWORD),
                ],
                None,
            )
            .await;
        assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);

        // The right password: a session cookie, and back where the user was.
        let ok = s
            .post_form(
                "/signin",
                &[
                    ("csrf", &token),
                    ("next", "/tasks?state=Failed"),
                    ("username", "Admin"),
                    ("password", ADMIN_PASSWORD),
                ],
                Some(&signin_cookie),
            )
            .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
        assert_eq!(ok.location(), Some("/tasks?state=Failed"));
        let set = ok
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("cuttle_session="))
            .unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
            "{set}"
        );
        assert!(!set.contains("Secure"), "plain HTTP: {set}");
        let session = format!("cuttle_session={}", ok.cookie("cuttle_session").unwrap());
        // Only its hash is stored.
        let token_value = ok.cookie("cuttle_session").unwrap();
        assert_eq!(token_value.len(), 64);
        let stored = s
            .inst
            .store
            .portal_session(
                &cuttle_service::sessions::hash_token(&token_value),
                cuttle_model::Timestamp::now(),
            )
            .await
            .unwrap();
        assert!(stored.is_some());

        let tasks = s.get_page("/tasks?state=Failed", Some(&session)).await;
        assert_eq!(tasks.status, StatusCode::OK, "{}", tasks.body);
        assert!(tasks.body.contains("<h1>Tasks</h1>"));
        assert!(tasks.body.contains("Sign out"));
        let csp = tasks
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(tasks.headers.get("cache-control").unwrap(), "no-store");

        // Signed in, the sign-in page moves on; a foreign `next` goes home.
        let again = s
            .get_page("/signin?next=//evil.example/x", Some(&session))
            .await;
        assert_eq!(
            (again.status, again.location()),
            (StatusCode::SEE_OTHER, Some("/"))
        );

        // Behind a TLS proxy the cookie is Secure.
        let form = s.get_page("/signin", None).await;
        let resp = s
            .client
            .post(format!("{}/signin", s.url))
            .header(
                COOKIE,
                format!("cuttle_signin={}", form.cookie("cuttle_signin").unwrap()),
            )
            .header("X-Forwarded-Proto", "https")
            .form(&[
                ("csrf", form.csrf().as_str()),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        let set: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            set.iter()
                .any(|c| c.starts_with("cuttle_session=") && c.contains("; Secure")),
            "{set:?}"
        );

        // Signing out needs the CSRF token, then ends the session.
        let b = common::Browser {
            server: &s,
            cookie: session.clone(),
            csrf: tasks.csrf(),
        };
        let refused = b.post("/signout", &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(
            b.get("/").await.status,
            StatusCode::OK,
            "a refused sign-out changes nothing"
        );
        let out = b.post("/signout", &[("csrf", &b.csrf)]).await;
        assert_eq!(
            (out.status, out.location()),
            (StatusCode::SEE_OTHER, Some("/signin"))
        );
        assert!(out
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("cuttle_session=;") && c.contains("Max-Age=0")));
        let after = b.get("/").await;
        assert_eq!(
            (after.status, after.location()),
            (StatusCode::SEE_OTHER, Some("/signin"))
        );
    })
    .await;
}

#[tokio::test]
async fn an_expired_session_goes_to_sign_in_and_back() {
    on_both("portal-expiry", |s| async move {
        let admin = s.inst.store.users().await.unwrap().remove(0);
        let session = |lifetime| {
            let store = s.inst.store.clone();
            let actor = admin.clone().into();
            async move {
                cuttle_service::sessions::start(&store, &actor, lifetime)
                    .await
                    .unwrap()
            }
        };
        // A session in its lifetime opens the page; one past it (made to
        // last a millisecond, so no slow request can outlive it) does not.
        let fresh = session(Duration::from_secs(3600)).await;
        assert_eq!(
            s.get_page("/tasks", Some(&format!("cuttle_session={}", fresh.token)))
                .await
                .status,
            StatusCode::OK
        );
        let brief = session(Duration::from_millis(1)).await;
        let cookie = format!("cuttle_session={}", brief.token);
        tokio::time::sleep(Duration::from_millis(20)).await;

        let expired = s.get_page("/tasks?project=Projects-1", Some(&cookie)).await;
        assert_eq!(expired.status, StatusCode::SEE_OTHER);
        assert_eq!(
            expired.location(),
            Some("/signin?next=%2Ftasks%3Fproject%3DProjects-1")
        );
        assert!(
            expired
                .set_cookies()
                .iter()
                .any(|c| c.starts_with("cuttle_session=;") && c.contains("Max-Age=0")),
            "the stale cookie is cleared"
        );
        // A fragment the page script fetches gets a 401 instead, and the
        // API's stream too.
        assert_eq!(
            s.get_page("/fragments/dashboard", Some(&cookie))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            s.get_page("/api/tasks", Some(&cookie)).await.status,
            StatusCode::UNAUTHORIZED
        );
        // A form posted with it goes to sign in, then back to the form's page.
        let posted = s
            .client
            .post(format!("{}/tasks/ServerTasks-9/cancel", s.url))
            .header(COOKIE, &cookie)
            .header("Referer", format!("{}/tasks/ServerTasks-9", s.url))
            .form(&[("csrf", brief.session.csrf_token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            posted.headers().get("location").unwrap(),
            "/signin?next=%2Ftasks%2FServerTasks-9"
        );

        // Signing in with that `next` lands back there.
        let form = s
            .get_page("/signin?next=%2Ftasks%3Fproject%3DProjects-1", None)
            .await;
        let ok = s
            .post_form(
                "/signin",
                &[
                    ("csrf", &form.csrf()),
                    ("next", "/tasks?project=Projects-1"),
                    ("username", "admin"),
                    ("password", ADMIN_PASSWORD),
                ],
                Some(&format!(
                    "cuttle_signin={}",
                    form.cookie("cuttle_signin").unwrap()
                )),
            )
            .await;
        assert_eq!(
            (ok.status, ok.location()),
            (StatusCode::SEE_OTHER, Some("/tasks?project=Projects-1"))
        );
    })
    .await;
}

/// The `<tr>` of the dashboard row whose project is `name`.
fn board_row<'a>(page: &'a Page, name: &str) -> &'a str {
    let at = page
        .body
        .find(&format!(r#"<span class="project-name">{name}</span>"#))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{}", page.body));
    let start = page.body[..at].rfind("<tr>").unwrap();
    let end = at + page.body[at..].find("</tr>").unwrap();
    &page.body[start..end]
}

#[tokio::test]
async fn the_dashboard_shows_each_cells_state() {
    on_both("portal-dashboard", |s| async move {
        s.environment("Dev").await;
        s.environment("Test").await;
        s.project("Good", vec![script_step("Say", "echo fine")]).await;
        s.project("Bad", vec![script_step("Fail", "echo broken >&2; exit 3")]).await;
        s.project("Gate", vec![manual_step("Approve", "Check the window")]).await;
        s.project("Slow", vec![script_step("Wait", "sleep 30")]).await;
        s.project("Never", vec![script_step("Say", "echo never")]).await;

        let good = s.deploy("Good", "1.0.0", "Dev").await;
        // The default lifecycle takes environments in order: Dev first.
        s.wait_done(&good).await;
        let good_test = s.create(
            "/api/Spaces-1/deployments/create/untenanted/v1",
            serde_json::json!({"ProjectName": "Good", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"]}),
        ).await["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        let bad = s.deploy("Bad", "2.0.0", "Dev").await;
        let gate = s.deploy("Gate", "3.0.0", "Dev").await;
        let slow = s.deploy("Slow", "4.0.0", "Dev").await;
        s.wait_done(&good_test).await;
        s.wait_done(&bad).await;
        s.wait_pending(&gate).await;
        s.wait_task(&slow, "running", |t| t["State"] == "Executing").await;

        let b = s.sign_in().await;
        let page = b.get("/").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Default Project Group"), "{}", page.body);
        assert!(page.body.contains(r#"<th scope="col">Dev</th><th scope="col">Test</th>"#), "{}", page.body);
        assert!(page.body.contains(r#"data-live="true""#), "something runs");

        let good_row = board_row(&page, "Good");
        assert!(good_row.contains(&format!(r#"class="cell state-success" href="/tasks/{good}""#)), "{good_row}");
        assert!(good_row.contains(&format!(r#"href="/tasks/{good_test}""#)), "{good_row}");
        assert!(good_row.contains("1.0.0") && good_row.contains("Success"));
        let bad_row = board_row(&page, "Bad");
        assert!(bad_row.contains(&format!(r#"class="cell state-failed" href="/tasks/{bad}""#)), "{bad_row}");
        assert!(bad_row.contains("2.0.0") && bad_row.contains("Failed"));
        assert!(bad_row.contains("Not deployed to Test"), "{bad_row}");
        let gate_row = board_row(&page, "Gate");
        assert!(gate_row.contains(&format!(r#"class="cell state-waiting" href="/tasks/{gate}""#)), "{gate_row}");
        assert!(gate_row.contains("Waiting for intervention"));
        let slow_row = board_row(&page, "Slow");
        assert!(slow_row.contains(&format!(r#"class="cell state-running" href="/tasks/{slow}""#)), "{slow_row}");
        let never_row = board_row(&page, "Never");
        assert!(!never_row.contains("class=\"cell"), "{never_row}");
        assert_eq!(never_row.matches("Not deployed to").count(), 2);

        // A newer deployment replaces the cell.
        let good2 = s.create("/api/Spaces-1/releases/create/v1", serde_json::json!({"ProjectName": "Good", "ReleaseVersion": "1.0.1"})).await;
        assert!(good2["ReleaseId"].is_string(), "{good2}");
        let t = s.create(
            "/api/Spaces-1/deployments/create/untenanted/v1",
            serde_json::json!({"ProjectName": "Good", "ReleaseVersion": "1.0.1", "EnvironmentNames": ["Dev"]}),
        ).await["DeploymentServerTasks"][0]["ServerTaskId"].as_str().unwrap().to_owned();
        s.wait_done(&t).await;

        // The fragment the page script refreshes with.
        let fragment = b.get("/fragments/dashboard").await;
        assert_eq!(fragment.status, StatusCode::OK);
        assert!(fragment.body.starts_with(r#"<div id="dashboard" data-live="true""#), "{}", fragment.body);
        assert!(!fragment.body.contains("<html"));
        let row = board_row(&fragment, "Good");
        assert!(row.contains(&format!(r#"href="/tasks/{t}""#)) && row.contains("1.0.1"), "{row}");
        assert!(!row.contains(&format!(r#"href="/tasks/{good}""#)), "{row}");

        // Nothing live once the slow one is cancelled and the gate aborted.
        let (status, _) = s.api(Method::POST, &format!("/api/tasks/{slow}/cancel"), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = s.api(Method::POST, &format!("/api/tasks/{gate}/cancel"), None).await;
        assert_eq!(status, StatusCode::OK);
        s.wait_done(&slow).await;
        s.wait_done(&gate).await;
        let calm = b.get("/fragments/dashboard").await;
        assert!(calm.body.starts_with(r#"<div id="dashboard" data-live="false""#), "{}", calm.body);
        assert!(board_row(&calm, "Slow").contains("state-canceled"));
        // Signed out, the fragment is a bare 401 for the script to act on.
        assert_eq!(s.get_page("/fragments/dashboard", None).await.status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn names_and_log_lines_are_escaped() {
    on_both("portal-escaping", |s| async move {
        s.environment("Dev").await;
        let evil = r#"<script>alert("p")</script> & <b>Co</b>"#;
        s.project(
            evil,
            vec![script_step(
                "Say <i>hi</i>",
                r#"echo '<img src=x onerror=alert(1)> & "quoted"'"#,
            )],
        )
        .await;
        let task = s.deploy(evil, "1.0.0", "Dev").await;
        s.wait_done(&task).await;

        let b = s.sign_in().await;
        let home = b.get("/").await;
        assert!(!home.body.contains("<script>alert"), "{}", home.body);
        assert!(!home.body.contains("<b>Co</b>"));
        assert!(
            home.body.contains(
                "&lt;script&gt;alert(&quot;p&quot;)&lt;/script&gt; &amp; &lt;b&gt;Co&lt;/b&gt;"
            ),
            "{}",
            home.body
        );

        let page = b.get(&format!("/tasks/{task}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
        assert!(!page.body.contains("<script>alert"));
        assert!(!page.body.contains("<i>hi</i>"));
        assert!(
            page.body
                .contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot;"),
            "{}",
            page.body
        );
        assert!(page.body.contains("Say &lt;i&gt;hi&lt;/i&gt;"));
        // The only scripts are the portal's own file.
        assert_eq!(page.body.matches("<script").count(), 1);

        let list = b.get("/tasks").await;
        assert!(!list.body.contains("<script>alert"));
        assert!(list.body.contains("&lt;script&gt;"));
    })
    .await;
}

#[tokio::test]
async fn a_task_page_answers_an_intervention_and_forms_need_their_csrf_token() {
    on_both("portal-intervention", |s| async move {
        s.environment("Dev").await;
        s.project(
            "Gated",
            vec![
                script_step("Before", "echo before"),
                manual_step("Approve", "Check that <the> window is open"),
                script_step(
                    "After",
                    "echo \"after: #{Octopus.Action[Approve].Output.Manual.Notes}\"",
                ),
            ],
        )
        .await;
        let task = s.deploy("Gated", "1.0.0", "Dev").await;
        s.wait_pending(&task).await;
        let interruption = s.pending_interruptions(&task).await.remove(0);
        let iid = interruption["Id"].as_str().unwrap().to_owned();

        let b = s.sign_in().await;
        let page = b.get(&format!("/tasks/{task}")).await;
        assert_eq!(page.status, StatusCode::OK);
        let body = &page.body;
        assert!(body.contains(r#"data-completed="false""#), "{body}");
        assert!(body.contains("Waiting for intervention"));
        assert!(
            body.contains("Check that &lt;the&gt; window is open"),
            "{body}"
        );
        assert!(
            body.contains(&format!(r#"action="/tasks/{task}/interruptions/{iid}""#)),
            "{body}"
        );
        assert!(
            body.contains(&format!(r#"<label for="Notes-{iid}">Notes</label>"#)),
            "{body}"
        );
        assert!(body.contains(r#"name="Result" value="Proceed""#));
        assert!(body.contains(r#"name="Result" value="Abort""#));
        assert!(body.contains(&format!(r#"action="/tasks/{task}/cancel""#)));
        // The log so far, in its tree, with the position the stream resumes after.
        assert!(body.contains("<span class=\"msg\">before</span>"), "{body}");
        assert!(
            body.contains("<span class=\"name\">Step 1: Before</span>"),
            "{body}"
        );
        assert!(!body.contains(r#"data-position="0""#));

        // Without the token, or with another, nothing changes.
        for form in [
            vec![("Result", "Abort"), ("Notes", "forged")],
            vec![("Result", "Abort"), ("csrf", "0000")],
        ] {
            let refused = b
                .post(&format!("/tasks/{task}/interruptions/{iid}"), &form)
                .await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
            assert!(refused.body.contains("security token"), "{}", refused.body);
        }
        let refused = b.post(&format!("/tasks/{task}/cancel"), &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let t = s.task(&task).await;
        assert_eq!(
            (t["State"].as_str(), t["HasPendingInterruptions"].as_bool()),
            (Some("Executing"), Some(true)),
            "{t}"
        );
        assert_eq!(s.pending_interruptions(&task).await.len(), 1);

        // The API takes the session cookie for reads only.
        let details = b.get(&format!("/api/tasks/{task}/details")).await;
        assert_eq!(details.status, StatusCode::OK, "{}", details.body);
        let posted = s
            .client
            .post(format!("{}/api/tasks/{task}/cancel", s.url))
            .header(COOKIE, &b.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(s.task(&task).await["State"], "Executing");
        let stream = s
            .client
            .get(format!("{}/api/tasks/{task}/stream", s.url))
            .header(COOKIE, &b.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        assert!(stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        drop(stream);

        // Proceeding through the portal, as the page's button does.
        let done = b
            .post(
                &format!("/tasks/{task}/interruptions/{iid}"),
                &[
                    ("csrf", &b.csrf),
                    ("Notes", "window open"),
                    ("Result", "Proceed"),
                ],
            )
            .await;
        assert_eq!(
            (done.status, done.location()),
            (
                StatusCode::SEE_OTHER,
                Some(format!("/tasks/{task}").as_str())
            ),
            "{}",
            done.body
        );
        let t = s.wait_done(&task).await;
        assert_eq!(t["State"], "Success", "{t}");

        let page = b.get(&format!("/tasks/{task}")).await;
        assert!(page.body.contains(r#"data-completed="true""#));
        assert!(
            page.body.contains("Deployed release 1.0.0 to Dev"),
            "{}",
            page.body
        );
        assert!(page.body.contains("after: window open"), "{}", page.body);
        assert!(!page.body.contains("/cancel\""), "no Cancel once finished");
        assert!(
            !page.body.contains("interruptions/"),
            "no form once answered"
        );

        // A second answer is refused, with a way back.
        let late = b
            .post(
                &format!("/tasks/{task}/interruptions/{iid}"),
                &[("csrf", &b.csrf), ("Result", "Abort")],
            )
            .await;
        assert_eq!(late.status, StatusCode::CONFLICT);
        assert!(
            late.body.contains("already submitted Proceed"),
            "{}",
            late.body
        );
        assert!(late.body.contains(&format!(r#"href="/tasks/{task}""#)));

        // The header fragment, and unknown tasks.
        let header = b.get(&format!("/tasks/{task}/header")).await;
        assert_eq!(header.status, StatusCode::OK);
        assert!(
            header.body.contains("Deployed release 1.0.0 to Dev") && !header.body.contains("<html")
        );
        assert_eq!(
            b.get("/tasks/ServerTasks-999").await.status,
            StatusCode::NOT_FOUND
        );
    })
    .await;
}

#[tokio::test]
async fn cancel_from_the_task_page_and_the_task_list_filters() {
    on_both("portal-cancel", |s| async move {
        s.environment("Dev").await;
        s.project("Slow", vec![script_step("Wait", "echo waiting; sleep 30")])
            .await;
        s.project("Quick", vec![script_step("Say", "echo quick")])
            .await;
        let slow = s.deploy("Slow", "1.0.0", "Dev").await;
        let quick = s.deploy("Quick", "1.0.0", "Dev").await;
        s.wait_done(&quick).await;
        s.wait_task(&slow, "running", |t| t["State"] == "Executing")
            .await;

        let b = s.sign_in().await;
        let cancel = b
            .post(&format!("/tasks/{slow}/cancel"), &[("csrf", &b.csrf)])
            .await;
        assert_eq!(
            (cancel.status, cancel.location()),
            (
                StatusCode::SEE_OTHER,
                Some(format!("/tasks/{slow}").as_str())
            )
        );
        let t = s.wait_done(&slow).await;
        assert_eq!(t["State"], "Canceled");

        let all = b.get("/tasks").await;
        assert!(
            all.body.contains(&format!("/tasks/{slow}"))
                && all.body.contains(&format!("/tasks/{quick}"))
        );
        let canceled = b.get("/tasks?state=Canceled").await;
        assert!(
            canceled.body.contains(&format!("/tasks/{slow}\"")),
            "{}",
            canceled.body
        );
        assert!(!canceled.body.contains(&format!("/tasks/{quick}\"")));
        assert!(
            canceled
                .body
                .contains(r#"<option value="Canceled" selected>"#),
            "{}",
            canceled.body
        );
        let (_, quick_project) = s.api(Method::GET, "/api/projects?name=Quick", None).await;
        let pid = quick_project["Items"][0]["Id"].as_str().unwrap();
        let by_project = b.get(&format!("/tasks?project={pid}")).await;
        assert!(by_project.body.contains(&format!("/tasks/{quick}\"")));
        assert!(!by_project.body.contains(&format!("/tasks/{slow}\"")));
        let bad = b.get("/tasks?state=Sleeping").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);

        // Cancelling what has finished says so.
        let again = b
            .post(&format!("/tasks/{slow}/cancel"), &[("csrf", &b.csrf)])
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
    })
    .await;
}

#[tokio::test]
async fn assets_are_served_for_long_caching() {
    on_both("portal-assets", |s| async move {
        let b = s.sign_in().await;
        let home = b.get("/").await;
        for ext in ["css", "js"] {
            let at = home.body.find(&format!(".{ext}\"")).unwrap();
            let start = home.body[..at].rfind("\"/assets/").unwrap() + 1;
            let path = &home.body[start..at + ext.len() + 1];
            let asset = s.get_page(path, None).await;
            assert_eq!(asset.status, StatusCode::OK, "{path}");
            assert_eq!(
                asset.headers["cache-control"],
                "public, max-age=31536000, immutable"
            );
            assert!(!asset.body.is_empty());
        }
        assert_eq!(
            s.get_page("/assets/portal.0000000000000000.css", None)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        // The API is unchanged beside the portal.
        let (status, root) = s.api(Method::GET, "/api", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(root["Application"], "Cuttle");
        assert_eq!(
            s.get_page("/api/nothing-here", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            s.get_page("/no-such-page", None).await.status,
            StatusCode::NOT_FOUND
        );
    })
    .await;
}

#[tokio::test]
async fn guided_failure_offers_its_own_buttons() {
    on_both("portal-guided", |s| async move {
        s.environment("Dev").await;
        s.project("Flaky", vec![script_step("Try", "echo trying; exit 4")])
            .await;
        s.create(
            "/api/Spaces-1/releases/create/v1",
            serde_json::json!({"ProjectName": "Flaky", "ReleaseVersion": "1.0.0"}),
        )
        .await;
        let d = s
            .create(
                "/api/Spaces-1/deployments/create/untenanted/v1",
                serde_json::json!({"ProjectName": "Flaky", "ReleaseVersion": "1.0.0",
                    "EnvironmentNames": ["Dev"], "UseGuidedFailure": true}),
            )
            .await;
        let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .unwrap()
            .to_owned();
        s.wait_pending(&task).await;
        let iid = s.pending_interruptions(&task).await[0]["Id"]
            .as_str()
            .unwrap()
            .to_owned();

        let b = s.sign_in().await;
        let page = b.get(&format!("/tasks/{task}")).await;
        for value in ["Retry", "Ignore", "Fail"] {
            assert!(
                page.body
                    .contains(&format!(r#"name="Guidance" value="{value}""#)),
                "{value}: {}",
                page.body
            );
        }
        assert!(!page.body.contains(r#"name="Result""#));
        // A manual intervention's answer is refused here, and changes nothing.
        let wrong = b
            .post(
                &format!("/tasks/{task}/interruptions/{iid}"),
                &[("csrf", &b.csrf), ("Result", "Proceed")],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
        assert!(
            wrong.body.contains("Guidance is required"),
            "{}",
            wrong.body
        );
        assert_eq!(s.pending_interruptions(&task).await.len(), 1);

        let ignored = b
            .post(
                &format!("/tasks/{task}/interruptions/{iid}"),
                &[
                    ("csrf", &b.csrf),
                    ("Notes", "known flake"),
                    ("Guidance", "Ignore"),
                ],
            )
            .await;
        assert_eq!(ignored.status, StatusCode::SEE_OTHER, "{}", ignored.body);
        let t = s.wait_done(&task).await;
        assert_eq!(t["State"], "Success", "{t}");
    })
    .await;
}
