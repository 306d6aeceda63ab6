//! Signing in under attack: password hashing never stalls the rest of the
//! server, failed sign-ins are throttled per user and per address with a
//! clear message, and an unknown username costs what a known one does.

use crate::common;

use common::{on_both, Server, ADMIN_PASSWORD};
use reqwest::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A sign-in form's token and cookie, as a browser holds them.
async fn form(s: &Server) -> (String, String) {
    let page = s.get_page("/signin", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let cookie = format!(
        "cuttle_signin={}",
        page.cookie("cuttle_signin").expect("a sign-in cookie")
    );
    (page.csrf(), cookie)
}

async fn attempt(s: &Server, csrf: &str, cookie: &str, user: &str, password: &str) -> common::Page {
    s.post_form(
        "/signin",
        &[
            ("csrf", csrf),
            ("next", "/"),
            ("username", user),
            ("password", password),
        ],
        Some(cookie),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_a_flood_of_wrong_passwords_does_not_stall_the_api() {
    on_both("sign-in-flood", |s| async move {
        let s = Arc::new(s);
        let (csrf, cookie) = form(&s).await;
        const FLOOD: usize = 40;
        let done = Arc::new(AtomicUsize::new(0));
        let mut flood = vec![];
        for i in 0..FLOOD {
            let (s, csrf, cookie, done) = (s.clone(), csrf.clone(), cookie.clone(), done.clone());
            flood.push(tokio::spawn(async move {
                let page = attempt(&s, &csrf, &cookie, "admin", &format!("wrong {i}")).await;
                done.fetch_add(1, Ordering::SeqCst);
                page.status
            }));
        }
        // Give the flood time to reach the server first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, me) = s.api(reqwest::Method::GET, "/api/users/me", None).await;
        let finished_meanwhile = done.load(Ordering::SeqCst);
        assert_eq!(status, StatusCode::OK, "{me}");
        assert!(
            finished_meanwhile < FLOOD / 2,
            "{}: the API answered only after {finished_meanwhile} of {FLOOD} sign-ins were done",
            s.backend
        );
        for f in flood {
            let status = f.await.unwrap();
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
                "{status}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn fault_failed_sign_ins_are_throttled_per_user_and_per_address() {
    on_both("sign-in-throttle", |s| async move {
        let (csrf, cookie) = form(&s).await;
        let mut refused_at = None;
        for i in 1..=30 {
            let page = attempt(&s, &csrf, &cookie, "admin", "not the password").await;
            if page.status == StatusCode::TOO_MANY_REQUESTS {
                refused_at = Some((i, page));
                break;
            }
            assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
        }
        let (i, page) = refused_at.expect("wrong passwords for one user were never throttled");
        assert!(
            i > 3,
            "{}: throttled after only {} failures",
            s.backend,
            i - 1
        );
        let wait: u64 = page
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!(wait > 0, "{wait}");
        assert!(
            page.body.contains("Too many failed sign-ins for this user"),
            "{}",
            page.body
        );
        // While throttled, even the right password waits.
        let right = attempt(&s, &csrf, &cookie, "admin", ADMIN_PASSWORD).await;
        assert_eq!(
            right.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            right.body
        );
        assert!(right.cookie("cuttle_session").is_none());

        // Other usernames from the same address run into the address's limit.
        let mut address_refused = None;
        for i in 0..100 {
            let page = attempt(&s, &csrf, &cookie, &format!("guess{i}"), "x").await;
            if page.status == StatusCode::TOO_MANY_REQUESTS {
                address_refused = Some(page);
                break;
            }
        }
        let page = address_refused.expect("guesses from one address were never throttled");
        assert!(
            page.body
                .contains("Too many failed sign-ins from this address"),
            "{}",
            page.body
        );
        // The API, which signs no one in, is not throttled.
        let (status, _) = s.api(reqwest::Method::GET, "/api/users/me", None).await;
        assert_eq!(status, StatusCode::OK);
    })
    .await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn fault_an_unknown_user_costs_a_password_hash() {
    on_both("sign-in-timing", |s| async move {
        let (csrf, cookie) = form(&s).await;
        let mut known = vec![];
        let mut unknown = vec![];
        for i in 0..5 {
            let started = Instant::now();
            let page = attempt(&s, &csrf, &cookie, "admin", "wrong password").await;
            known.push(started.elapsed());
            assert_eq!(page.status, StatusCode::UNAUTHORIZED);
            let started = Instant::now();
            let page = attempt(&s, &csrf, &cookie, &format!("nobody{i}"), "wrong password").await;
            unknown.push(started.elapsed());
            assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        }
        // Structurally: every attempt, for a user or for no one, checked a hash.
        let before = s.inst.passwords.checks();
        let page = attempt(&s, &csrf, &cookie, "no-such-user", "wrong password").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert_eq!(s.inst.passwords.checks(), before + 1, "{}", s.backend);
        let (known, unknown) = (median(known), median(unknown));
        assert!(
            unknown * 4 >= known,
            "{}: an unknown user took {unknown:?}, a known one {known:?}",
            s.backend
        );
    })
    .await;
}

#[tokio::test]
async fn fault_a_nul_in_a_username_is_a_400_on_both_databases() {
    on_both("sign-in-nul", |s| async move {
        let (csrf, cookie) = form(&s).await;
        let page = attempt(&s, &csrf, &cookie, "ad\u{0}min", "wrong password").await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{}: {}",
            s.backend,
            page.body
        );
        assert!(
            page.body.to_lowercase().contains("username contains a nul"),
            "{}",
            page.body
        );
    })
    .await;
}

#[tokio::test]
async fn fault_a_nul_in_a_new_username_is_a_400_on_both_databases() {
    on_both("new-user-nul", |s| async move {
        let b = s.sign_in().await;
        let page = b
            .post(
                "/configuration/users",
                &[
                    ("csrf", &b.csrf),
                    ("username", "al\u{0}ice"),
                    ("display_name", "Alice"),
                    ("email", ""),
                    ("password", "correct horse battery"),
                    ("is_active", "on"),
                ],
            )
            .await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{}: {}",
            s.backend,
            page.body
        );
        let (_, users) = s.api(reqwest::Method::GET, "/api/users", None).await;
        assert_eq!(users["TotalResults"], 1, "{}: {users}", s.backend);
    })
    .await;
}

/// Any portal form: a NUL in a field that is only looked up (an id from a
/// select) was a 500 on PostgreSQL.
#[tokio::test]
async fn fault_a_nul_in_any_form_field_is_a_400_on_both_databases() {
    on_both("form-nul", |s| async move {
        let b = s.sign_in().await;
        let page = b
            .post(
                "/projects",
                &[
                    ("csrf", &b.csrf),
                    ("Name", "Web"),
                    ("Description", ""),
                    ("ProjectGroupId", "ProjectGroups-1\u{0}"),
                    ("LifecycleId", "Lifecycles-1"),
                ],
            )
            .await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{}: {}",
            s.backend,
            page.body
        );
        assert!(
            page.body.contains("ProjectGroupId contains a NUL"),
            "{}",
            page.body
        );
        let (_, projects) = s.api(reqwest::Method::GET, "/api/projects", None).await;
        assert_eq!(projects["TotalResults"], 0, "{}: {projects}", s.backend);
    })
    .await;
}
