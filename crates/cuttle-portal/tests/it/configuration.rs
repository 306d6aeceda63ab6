//! Configuration pages on both databases: users listed and created through
//! the users service (bad input refused beside its field, nothing stored),
//! and API keys: made with the secret shown once, working against the API,
//! revoked; every form refused without its CSRF token.

use crate::common;

use common::{on_both, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn usernames(s: &Server) -> Vec<String> {
    let (status, users) = s.api(Method::GET, "/api/users", None).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    users["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["Username"].as_str().unwrap().to_owned())
        .collect()
}

async fn my_keys(s: &Server) -> Vec<Value> {
    let (_, me) = s.api(Method::GET, "/api/users/me", None).await;
    let id = me["Id"].as_str().unwrap();
    let (status, keys) = s
        .api(Method::GET, &format!("/api/users/{id}/apikeys"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    keys["Items"].as_array().unwrap().clone()
}

/// The one new API key on a page (`API-` and 32 letters and digits).
fn key_on(body: &str) -> Option<String> {
    body.match_indices("API-").find_map(|(at, _)| {
        let key = body.get(at..at + 36)?;
        key[4..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            .then(|| key.to_owned())
    })
}

async fn status_with_key(s: &Server, key: &str) -> StatusCode {
    s.client
        .get(format!("{}/api/users/me", s.url))
        .header("X-Octopus-ApiKey", key)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn users_are_listed_and_added() {
    on_both("portal-config-users", |s| async move {
        let b = s.sign_in().await;
        let home = b.get("/configuration").await;
        assert_eq!(home.status, StatusCode::SEE_OTHER);
        assert_eq!(home.location(), Some("/configuration/users"));

        let page = b.get("/configuration/users").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        // In the list, not only in the header's signed-in name.
        assert!(
            page.body.contains("<td>Administrator</td>"),
            "{}",
            page.body
        );
        for id in [
            "user-username",
            "user-display-name",
            "user-email",
            "user-password",
        ] {
            assert!(
                page.body.contains(&format!(r#"<label for="{id}">"#)),
                "{id} has no label"
            );
        }
        assert!(page.body.contains(r#"id="create-user""#));

        let done = b
            .post(
                "/configuration/users",
                &[
                    ("csrf", &b.csrf),
                    ("username", "alice"),
                    ("display_name", "<script>alert(1)</script>"),
                    ("email", "alice@example.com"),
                    ("password", "correct horse battery"),
                    ("is_active", "on"),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location(), Some("/configuration/users"));
        assert_eq!(usernames(&s).await, ["admin", "alice"]);

        let page = b.get("/configuration/users").await;
        assert!(page.body.contains("alice@example.com"));
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.body.contains("<script>alert(1)"));

        // The new user signs in with the password given.
        let user = cuttle_service::auth::sign_in(
            &s.inst,
            "alice",
            "correct horse battery",
            &Default::default(),
        )
        .await
        .expect("alice signs in");
        assert_eq!(user.display_name, "<script>alert(1)</script>");
        assert!(user.is_active && !user.is_service);

        // A service account: no password.
        let robot = b
            .post(
                "/configuration/users",
                &[
                    ("csrf", &b.csrf),
                    ("username", "deployer"),
                    ("is_service", "on"),
                    ("is_active", "on"),
                ],
            )
            .await;
        assert_eq!(robot.status, StatusCode::SEE_OTHER, "{}", robot.body);
        assert_eq!(usernames(&s).await, ["admin", "alice", "deployer"]);
        // The row's kind, not the form's checkbox label.
        let page = b.get("/configuration/users").await;
        assert!(
            page.body.contains("<td>Service account</td>"),
            "{}",
            page.body
        );
    })
    .await;
}

#[tokio::test]
async fn bad_users_are_refused_beside_the_field() {
    on_both("portal-config-bad-users", |s| async move {
        let b = s.sign_in().await;
        let add = |username: &'static str, password: &'static str| {
            let csrf = b.csrf.clone();
            let b = &b;
            async move {
                b.post(
                    "/configuration/users",
                    &[
                        ("csrf", csrf.as_str()),
                        ("username", username),
                        ("display_name", "Someone"),
                        ("email", "someone@example.com"),
                        ("password", password),
                        ("is_active", "on"),
                    ],
                )
                .await
            }
        };
        assert_eq!(
            add("alice", "correct horse battery").await.status,
            StatusCode::SEE_OTHER
        );

        // The same name in another case.
        let dup = add("ALICE", "another good one").await;
        assert_eq!(dup.status, StatusCode::BAD_REQUEST, "{}", dup.body);
        assert_eq!(
            dup.error_under("user-username"),
            "A user with the username 'ALICE' already exists"
        );
        // What was typed comes back, except the password.
        assert!(dup.body.contains(r#"value="ALICE""#));
        assert!(dup.body.contains(r#"value="someone@example.com""#));
        assert!(!dup.body.contains("another good one"));

        let empty = add("", "correct horse battery").await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
        assert_eq!(empty.error_under("user-username"), "Username is required");

        let short = add("bob", "abc12").await;
        assert_eq!(short.status, StatusCode::BAD_REQUEST);
        assert!(short
            .error_under("user-password")
            .contains("at least 8 characters"));

        let weak = add("bob", "aaaaaaaaaaaa").await;
        assert_eq!(weak.status, StatusCode::BAD_REQUEST);
        assert!(weak
            .error_under("user-password")
            .contains("too easy to guess"));

        assert_eq!(usernames(&s).await, ["admin", "alice"]);
    })
    .await;
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    on_both("portal-config-csrf", |s| async move {
        let b = s.sign_in().await;
        let user = b
            .post(
                "/configuration/users",
                &[
                    ("username", "mallory"),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(user.status, StatusCode::FORBIDDEN);
        let forged = b
            .post(
                "/configuration/users",
                &[
                    ("csrf", "forged"),
                    ("username", "mallory"),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(usernames(&s).await, ["admin"]);

        let before = my_keys(&s).await.len();
        let key = b
            .post("/configuration/api-keys", &[("purpose", "Sneaky")])
            .await;
        assert_eq!(key.status, StatusCode::FORBIDDEN);
        assert_eq!(key_on(&key.body), None);
        assert_eq!(my_keys(&s).await.len(), before);

        // A real key, then a revoke without the token: it still works.
        let made = b
            .post(
                "/configuration/api-keys",
                &[("csrf", &b.csrf), ("purpose", "Build server")],
            )
            .await;
        let secret = key_on(&made.body).expect("the new key");
        let id = my_keys(&s)
            .await
            .iter()
            .find(|k| k["Purpose"] == "Build server")
            .unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let revoke = b
            .post(&format!("/configuration/api-keys/{id}/revoke"), &[])
            .await;
        assert_eq!(revoke.status, StatusCode::FORBIDDEN);
        assert_eq!(status_with_key(&s, &secret).await, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn an_api_key_is_shown_once_works_and_is_revoked() {
    on_both("portal-config-keys", |s| async move {
        let b = s.sign_in().await;
        let page = b.get("/configuration/api-keys").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(r#"<label for="api-key-purpose">"#));
        assert!(page.body.contains(r#"id="create-api-key""#));

        // No purpose: the reason beside the field, and no key.
        let before = my_keys(&s).await.len();
        let empty = b
            .post(
                "/configuration/api-keys",
                &[("csrf", &b.csrf), ("purpose", "  ")],
            )
            .await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
        assert!(empty
            .error_under("api-key-purpose")
            .contains("Purpose is required"));
        assert_eq!(key_on(&empty.body), None);
        assert_eq!(my_keys(&s).await.len(), before);

        let made = b
            .post(
                "/configuration/api-keys",
                &[("csrf", &b.csrf), ("purpose", "CI <script>x</script>")],
            )
            .await;
        assert_eq!(made.status, StatusCode::OK, "{}", made.body);
        assert_eq!(
            made.headers
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        assert!(made.location().is_none());
        let secret = key_on(&made.body).expect("the new key on the page");
        assert!(made.body.contains(r#"id="copy-api-key""#));
        assert!(made.body.contains("CI &lt;script&gt;x&lt;/script&gt;"));
        assert!(!made.body.contains("<script>x"));

        // It works against the API, as the signed-in user.
        let me = s
            .client
            .get(format!("{}/api/users/me", s.url))
            .header("X-Octopus-ApiKey", &secret)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), StatusCode::OK);
        let me: Value = me.json().await.unwrap();
        assert_eq!(me["Username"], "admin");

        // Shown once: the list has the key's id and purpose, not the secret.
        let id = my_keys(&s)
            .await
            .iter()
            .find(|k| k["Purpose"] == "CI <script>x</script>")
            .unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let list = b.get("/configuration/api-keys").await;
        assert!(!list.body.contains(&secret));
        assert_eq!(key_on(&list.body), None);
        assert!(list.body.contains(&id));
        assert!(list.body.contains("CI &lt;script&gt;x&lt;/script&gt;"));
        assert!(list
            .body
            .contains(&format!(r#"action="/configuration/api-keys/{id}/revoke""#)));

        let revoked = b
            .post(
                &format!("/configuration/api-keys/{id}/revoke"),
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
        assert_eq!(revoked.location(), Some("/configuration/api-keys"));
        assert_eq!(status_with_key(&s, &secret).await, StatusCode::UNAUTHORIZED);
        assert!(my_keys(&s).await.iter().all(|k| k["Id"] != id.as_str()));
        let list = b.get("/configuration/api-keys").await;
        assert!(!list.body.contains(&id));

        // Revoking it again: not found, shown as a page.
        let again = b
            .post(
                &format!("/configuration/api-keys/{id}/revoke"),
                &[("csrf", &b.csrf)],
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn the_api_creates_users_through_the_same_rules() {
    on_both("portal-config-api-users", |s| async move {
        let (status, user) = s
            .api(
                Method::POST,
                "/api/users",
                Some(serde_json::json!({
                    "Username": "carol", "DisplayName": "Carol", "EmailAddress": "carol@example.com",
                    "Password": "correct horse battery", "IsService": false, "IsActive": true
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        assert_eq!(user["Username"], "carol");
        assert!(user.get("Password").is_none());

        let (status, dup) = s
            .api(
                Method::POST,
                "/api/users",
                Some(serde_json::json!({"Username": "Carol", "Password": "another good one"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{dup}");
        assert!(dup.to_string().contains("already exists"), "{dup}");
        let (status, weak) = s
            .api(
                Method::POST,
                "/api/users",
                Some(serde_json::json!({"Username": "dave", "Password": "short"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{weak}");
        assert_eq!(usernames(&s).await, ["admin", "carol"]);
    })
    .await;
}

#[tokio::test]
async fn the_nodes_page_shows_this_node_as_leader_to_those_who_configure_the_server() {
    on_both("portal-config-nodes", |s| async move {
        let b = s.sign_in().await;
        let page = b.get("/configuration/nodes").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let name = &s.inst.config.node_name;
        assert!(
            page.body.contains(&format!("<td>{name}</td>")),
            "{}",
            page.body
        );
        assert!(page.body.contains("Leader"), "{}", page.body);
        assert!(page.body.contains("Online"), "{}", page.body);

        // A person without ConfigureServer is refused the page.
        s.create(
            "/api/users",
            serde_json::json!({"Username": "viewer", "Password": "correct-horse-42"}),
        )
        .await;
        let viewer = s.sign_in_as("viewer", "correct-horse-42").await;
        let refused = viewer.get("/configuration/nodes").await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    })
    .await;
}
