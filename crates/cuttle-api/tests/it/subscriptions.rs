//! Subscriptions over HTTP, on both databases, delivering to real receivers
//! on loopback: signed webhooks in order, retried through failures, hangs
//! and redirects without holding up deployments; email through a real SMTP
//! server; and every kind of bad subscription refused with nothing changed.

use crate::common;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Response};
use common::{on_both_configured, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the receiver answers one request.
#[derive(Clone, Debug)]
enum Answer {
    Ok,
    Fail,
    /// Never answers (until the test ends).
    Hang,
    RedirectTo(String),
}

#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    raw: Bytes,
    body: Value,
}

/// A webhook receiver on loopback that records what it is sent and answers
/// from a script (then 200 once the script runs out).
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    async fn start(script: Vec<Answer>) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (g, s) = (got.clone(), script.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (g, s) = (g.clone(), s.clone());
            async move {
                let answer = s.lock().unwrap().pop_front().unwrap_or(Answer::Ok);
                g.lock().unwrap().push(Received {
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    raw: body,
                });
                let r: Response = match answer {
                    Answer::Ok => AxStatus::OK.into_response(),
                    Answer::Fail => AxStatus::INTERNAL_SERVER_ERROR.into_response(),
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        AxStatus::OK.into_response()
                    }
                    Answer::RedirectTo(to) => (AxStatus::FOUND, [("Location", to)]).into_response(),
                };
                r
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got, script }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests have come in; returns them.
    async fn wait_for(&self, n: usize, backend: &str) -> Vec<Received> {
        for _ in 0..1500 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{backend}: the receiver got {} requests, not {n}, within 30 s",
            self.received().len()
        );
    }
}

/// Retries quickly, so failures heal within the test.
fn fast_retries(c: &mut cuttle_service::InstanceConfig) {
    c.subscriptions.retry_first = Duration::from_millis(50);
    c.subscriptions.retry_most = Duration::from_millis(200);
}

fn environment_subscription(name: &str, url: &str) -> Value {
    json!({
        "Name": name,
        "EventNotificationSubscription": {
            "Filter": {"EventCategories": ["Created"], "DocumentTypes": ["Environments"]},
            "WebhookURI": url,
            "WebhookTimeout": "00:00:01",
        }
    })
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    cuttle_service::subscriptions::webhook::signature(secret, body)
}

async fn make_environments(s: &Server, prefix: &str, n: usize) -> Vec<String> {
    let mut names = vec![];
    for i in 0..n {
        let name = format!("{prefix}{i}");
        s.create("/api/environments", json!({"Name": name})).await;
        names.push(name);
    }
    names
}

/// The environment names in what a receiver got, in order of arrival,
/// counting only requests it answered with success.
fn messages(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| {
            r.body["Payload"]["Event"]["Message"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_webhook_receives_matching_events_signed_and_in_order() {
    on_both_configured("subs_signed", fast_retries, |s| async move {
        let hook = Receiver::start(vec![]).await;
        let created = s
            .create("/api/Spaces-1/subscriptions", environment_subscription("Envs", &hook.url))
            .await;
        let secret = created["EventNotificationSubscription"]["WebhookSigningSecret"]["NewValue"]
            .as_str()
            .expect("a new subscription's generated secret is answered once")
            .to_owned();
        let id = created["Id"].as_str().unwrap().to_owned();
        let read = s.get(&format!("/api/Spaces-1/subscriptions/{id}")).await.body;
        assert_eq!(
            read["EventNotificationSubscription"]["WebhookSigningSecret"],
            json!({"HasValue": true, "NewValue": null}),
            "{}",
            s.backend
        );
        assert!(!read.to_string().contains(&secret), "{}: the secret leaked", s.backend);

        // A project is not an environment: filtered out.
        s.create(
            "/api/projects",
            json!({"Name": "Not an environment", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        )
        .await;
        let names = make_environments(&s, "Env ", 5).await;
        let got = hook.wait_for(5, s.backend).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got_now = hook.received();
        assert_eq!(got_now.len(), 5, "{}: only matching events: {:?}", s.backend, messages(&got_now));
        for (r, name) in got.iter().zip(&names) {
            let message = r.body["Payload"]["Event"]["Message"].as_str().unwrap();
            assert!(message.contains(name.as_str()), "{}: order: {message} vs {name}", s.backend);
            assert_eq!(r.body["EventType"], "SubscriptionPayload");
            assert_eq!(r.body["Payload"]["Event"]["Category"], "Created");
            assert_eq!(r.body["Payload"]["Subscription"]["Id"], json!(id));
            let delivery = r.headers["x-cuttle-delivery"].to_str().unwrap();
            assert_eq!(r.body["Payload"]["DeliveryId"], json!(delivery));
            assert_eq!(r.headers["x-cuttle-event"], "Created");
            // The signature covers the exact bytes sent.
            assert_eq!(
                r.headers["x-cuttle-signature-256"].to_str().unwrap(),
                hmac_hex(&secret, &r.raw),
                "{}",
                s.backend
            );
        }
        let history = s
            .get(&format!("/api/Spaces-1/subscriptions/{id}/deliveries?take=100"))
            .await
            .body;
        assert_eq!(history["TotalResults"], 5, "{}: {history}", s.backend);
        for d in history["Items"].as_array().unwrap() {
            assert_eq!(d["State"], "Delivered", "{}: {d}", s.backend);
            assert_eq!(d["Attempts"], 1);
            assert_eq!(d["AttemptHistory"][0]["Outcome"], "HTTP 200");
        }
        let ids: Vec<&str> = got
            .iter()
            .map(|r| r.headers["x-cuttle-delivery"].to_str().unwrap())
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{}: one id per delivery", s.backend);
    })
    .await;
}

#[tokio::test]
async fn the_signature_verifies_against_the_bytes_received() {
    // A raw receiver, to check the signature on the exact bytes.
    on_both_configured("subs_sig_bytes", fast_retries, |s| async move {
        let raw: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let r2 = raw.clone();
        let app = axum::Router::new().fallback(move |h: HeaderMap, b: Bytes| {
            let r2 = r2.clone();
            async move {
                r2.lock().unwrap().push((h, b));
                AxStatus::NO_CONTENT
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut body = environment_subscription("Signed", &url);
        body["EventNotificationSubscription"]["WebhookSigningSecret"] =
            json!({"HasValue": true, "NewValue": "a secret of our own choosing"});
        body["EventNotificationSubscription"]["WebhookHeaderKey"] = json!("X-Receiver-Token");
        body["EventNotificationSubscription"]["WebhookHeaderValue"] = json!("token-123");
        let created = s.create("/api/Spaces-1/subscriptions", body).await;
        assert_eq!(
            created["EventNotificationSubscription"]["WebhookSigningSecret"]["NewValue"],
            Value::Null,
            "{}: a secret the caller gave is not echoed",
            s.backend
        );
        make_environments(&s, "Signed ", 1).await;
        for _ in 0..1500 {
            if !raw.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (headers, bytes) = raw.lock().unwrap()[0].clone();
        assert_eq!(
            headers["x-cuttle-signature-256"].to_str().unwrap(),
            hmac_hex("a secret of our own choosing", &bytes),
            "{}",
            s.backend
        );
        assert_ne!(
            headers["x-cuttle-signature-256"].to_str().unwrap(),
            hmac_hex("another secret entirely!", &bytes)
        );
        assert_eq!(headers["x-receiver-token"], "token-123");
        assert_eq!(headers["content-type"], "application/json");
    })
    .await;
}

#[tokio::test]
async fn fault_failures_hangs_and_redirects_are_retried_in_order_and_never_followed() {
    on_both_configured("subs_faults", fast_retries, |s| async move {
        // Where a redirect points: it must never be called.
        let elsewhere = Receiver::start(vec![]).await;
        let hook = Receiver::start(vec![
            Answer::Fail,
            Answer::Fail,
            Answer::Hang,
            Answer::RedirectTo(elsewhere.url.clone()),
            Answer::Fail,
        ])
        .await;
        let created = s
            .create(
                "/api/Spaces-1/subscriptions",
                environment_subscription("Flaky", &hook.url),
            )
            .await;
        let id = created["Id"].as_str().unwrap().to_owned();
        let names = make_environments(&s, "Flaky ", 3).await;
        // Five failed attempts at the first event, then three successes.
        let got = hook.wait_for(8, s.backend).await;
        let delivered: Vec<String> = messages(&got[5..]);
        for (m, name) in delivered.iter().zip(&names) {
            assert!(
                m.contains(name.as_str()),
                "{}: order {delivered:?}",
                s.backend
            );
        }
        // The first event's five failed attempts were all the first event:
        // nothing overtook it.
        for r in &got[..5] {
            assert!(
                messages(std::slice::from_ref(r))[0].contains(&names[0]),
                "{}",
                s.backend
            );
        }
        assert!(
            elsewhere.received().is_empty(),
            "{}: a redirect was followed",
            s.backend
        );
        let history = s
            .get(&format!("/api/Spaces-1/subscriptions/{id}/deliveries"))
            .await
            .body;
        let items = history["Items"].as_array().unwrap();
        let first = items.last().unwrap();
        assert_eq!(first["State"], "Delivered", "{}: {first}", s.backend);
        assert_eq!(first["Attempts"], 6);
        let outcomes: Vec<&str> = first["AttemptHistory"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["Outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes[0], "HTTP 500", "{}: {outcomes:?}", s.backend);
        assert!(
            outcomes[2].contains("no answer within 1 s"),
            "{}: {outcomes:?}",
            s.backend
        );
        assert!(
            outcomes[3].contains("never follow"),
            "{}: {outcomes:?}",
            s.backend
        );
        assert_eq!(outcomes[5], "HTTP 200");
        assert_eq!(first["LastError"], Value::Null);
    })
    .await;
}

#[tokio::test]
async fn fault_a_receiver_that_hangs_does_not_hold_up_deployments() {
    on_both_configured("subs_hang", fast_retries, |s| async move {
        let hook = Receiver::start(vec![Answer::Hang; 50]).await;
        s.create(
            "/api/Spaces-1/subscriptions",
            json!({
                "Name": "Every event, slowly",
                "EventNotificationSubscription": {"WebhookURI": hook.url, "WebhookTimeout": "00:05:00"}
            }),
        )
        .await;
        s.project_with_script("Hung hook", "echo deployed", json!({}))
            .await;
        let task = s.release_and_deploy("Hung hook", "1.0.0").await;
        let done = s.wait_for_task(&task).await;
        assert_eq!(done["State"], "Success", "{}: {done}", s.backend);
        // The receiver holds the first request open the whole time, and
        // the others wait behind it (events are gathered for a moment
        // first, so the first may come after the deployment's end).
        hook.wait_for(1, s.backend).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(hook.received().len(), 1, "{}: one request at a time per subscription", s.backend);
    })
    .await;
}

#[tokio::test]
async fn bad_subscriptions_are_refused_and_change_nothing() {
    on_both_configured("subs_bad", |_| {}, |s| async move {
        let project = s
            .create(
                "/api/projects",
                json!({"Name": "Real", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            )
            .await;
        let n = |extra: Value| {
            let mut body = json!({"Name": "Bad", "EventNotificationSubscription": {"WebhookURI": "http://127.0.0.1:9/hook"}});
            for (k, v) in extra.as_object().unwrap() {
                if k == "Name" || k == "Type" {
                    body[k] = v.clone();
                } else {
                    body["EventNotificationSubscription"][k] = v.clone();
                }
            }
            body
        };
        let cases = [
            (n(json!({"WebhookURI": "http://169.254.169.254/latest/meta-data"})), "link-local"),
            (n(json!({"WebhookURI": "http://[fe80::1]/x"})), "link-local"),
            (n(json!({"WebhookURI": "ftp://example.com/x"})), "http://"),
            (n(json!({"WebhookURI": "not a url"})), "not a URL"),
            (n(json!({"WebhookURI": ""})), "somewhere to send"),
            (n(json!({"WebhookTimeout": "forever"})), "WebhookTimeout"),
            (n(json!({"WebhookTimeout": "01:00:00"})), "WebhookTimeout"),
            (n(json!({"WebhookHeaderKey": "Content-Type", "WebhookHeaderValue": "x"})), "set by the server"),
            (n(json!({"WebhookHeaderValue": "orphan"})), "WebhookHeaderKey is empty"),
            (n(json!({"WebhookSigningSecret": {"HasValue": true, "NewValue": "short"}})), "at least 16"),
            (n(json!({"EmailAddresses": ["ops@example.com"]})), "no SMTP server"),
            (n(json!({"EmailAddresses": ["not an address"]})), "not an email address"),
            (n(json!({"EmailTeams": ["Teams-999"]})), "Teams-999"),
            (n(json!({"EmailTeams": ["teams-everyone"]})), "no SMTP server"),
            (n(json!({"Filter": {"Projects": ["Projects-999"]}})), "Projects-999"),
            (n(json!({"Filter": {"Environments": ["Environments-999"]}})), "Environments-999"),
            (n(json!({"Filter": {"EventGroups": ["Nonsense"]}})), "not a group of events"),
            (n(json!({"Filter": {"EventAgents": ["Octopus.Cli"]}})), "user agent as the caller sent it"),
            (n(json!({"Filter": {"Tags": ["Region/East"]}})), "no tenants"),
            (n(json!({"Filter": {"EventGroups": ["AutoDeploy"]}})), "not a group of events"),
            (n(json!({"Filter": {"EventCategories": ["Bad category!"]}})), "not an event category"),
            (n(json!({"Filter": {"EventCategories": ["DeploymentExploded"]}})), "not an event category"),
            (n(json!({"Filter": {"DocumentTypes": ["Spaceships"]}})), "not a document type"),
            (n(json!({"Filter": {"Tenants": ["Tenants-1"]}})), "Tenants-1"),
            (n(json!({"Filter": {"Users": ["Users-999"]}})), "Users-999"),
            (n(json!({"Name": ""})), "Name"),
            (n(json!({"Type": "Digest"})), "Type"),
        ];
        for (body, expected) in cases {
            let r = s.post("/api/Spaces-1/subscriptions", body.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}: {body} → {}", s.backend, r.body);
            assert!(
                r.error_text().contains(expected),
                "{}: {body}: expected '{expected}' in {}",
                s.backend,
                r.error_text()
            );
        }
        let list = s.get("/api/Spaces-1/subscriptions").await.body;
        assert_eq!(list["TotalResults"], 0, "{}: nothing was created", s.backend);

        // A good one, then a bad modification of it: refused, unchanged.
        let good = s
            .create(
                "/api/Spaces-1/subscriptions",
                n(json!({"Name": "Good", "Filter": {"Projects": [project["Id"]]}})),
            )
            .await;
        let id = good["Id"].as_str().unwrap();
        let mut changed = good.clone();
        changed["EventNotificationSubscription"]["WebhookURI"] = json!("http://169.254.169.254/");
        let r = s
            .send(Method::PUT, &format!("/api/Spaces-1/subscriptions/{id}"), &changed)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", s.backend);
        let after = s.get(&format!("/api/Spaces-1/subscriptions/{id}")).await.body;
        assert_eq!(
            after["EventNotificationSubscription"]["WebhookURI"],
            "http://127.0.0.1:9/hook",
            "{}",
            s.backend
        );
        // Unknown ids answer 404; another space's id reads as missing.
        let r = s.get("/api/Spaces-1/subscriptions/Subscriptions-999").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = s
            .get("/api/Spaces-1/subscriptions/Subscriptions-999/deliveries")
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        // Deleting it removes it.
        let r = s
            .call_with(Method::DELETE, &format!("/api/Spaces-1/subscriptions/{id}"), None, Some(&s.key))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", s.backend);
        assert_eq!(s.get("/api/Spaces-1/subscriptions").await.body["TotalResults"], 0);
    })
    .await;
}

#[tokio::test]
async fn link_local_webhooks_are_allowed_only_by_configuration() {
    on_both_configured(
        "subs_link_local",
        |c| c.subscriptions.allow_link_local = true,
        |s| async move {
            let r = s
                .post(
                    "/api/Spaces-1/subscriptions",
                    json!({"Name": "Metadata", "EventNotificationSubscription": {"WebhookURI": "http://169.254.169.254/x"}}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}: {}", s.backend, r.body);
        },
    )
    .await;
}

/// A real SMTP server on loopback (Python's aiosmtpd), printing what it
/// receives.
struct SmtpSink {
    child: tokio::process::Child,
    port: u16,
    out: Arc<Mutex<String>>,
}

impl SmtpSink {
    async fn start() -> Option<SmtpSink> {
        let probe = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: Python's aiosmtpd is not installed (pip install aiosmtpd)");
            return None;
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new("python3")
            // Its default handler prints each message to stdout.
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out: Arc<Mutex<String>> = Arc::default();
        let mut stdout = child.stdout.take().unwrap();
        let o = out.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                o.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(SmtpSink { child, port, out });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("aiosmtpd did not start listening");
    }
}

#[tokio::test]
async fn email_is_sent_through_a_real_smtp_server() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let port = sink.port;
    on_both_configured(
        "subs_email",
        move |c| {
            fast_retries(c);
            c.subscriptions.smtp = Some(cuttle_service::subscriptions::email::SmtpConfig {
                url: format!("smtp://127.0.0.1:{port}"),
                from: "cuttle@example.com".into(),
            })
        },
        |s| {
            let out = sink.out.clone();
            async move {
                let created = s
                    .create(
                        "/api/Spaces-1/subscriptions",
                        json!({
                            "Name": "Mail",
                            "EventNotificationSubscription": {
                                "Filter": {"EventCategories": ["Created"], "DocumentTypes": ["Environments"]},
                                "EmailAddresses": ["ops@example.com"],
                            }
                        }),
                    )
                    .await;
                let name = format!("Mailed {}", s.backend);
                s.create("/api/environments", json!({"Name": name})).await;
                for _ in 0..1500 {
                    if out.lock().unwrap().contains(&name) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let text = out.lock().unwrap().clone();
                assert!(text.contains(&name), "{}: the mail did not arrive: {text}", s.backend);
                assert!(text.contains("ops@example.com"), "{text}");
                assert!(text.contains("[Cuttle]"), "{text}");
                let id = created["Id"].as_str().unwrap();
                // The server records the attempt once the SMTP server has
                // answered, a moment after it printed the message.
                let mut history = Value::Null;
                for _ in 0..500 {
                    history = s
                        .get(&format!("/api/Spaces-1/subscriptions/{id}/deliveries"))
                        .await
                        .body;
                    let state = &history["Items"][0]["State"];
                    if state == "Delivered" || state == "Abandoned" {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert_eq!(history["Items"][0]["Channel"], "Email", "{}: {history}", s.backend);
                assert_eq!(history["Items"][0]["State"], "Delivered");
                assert!(history["Items"][0]["AttemptHistory"][0]["Outcome"]
                    .as_str()
                    .unwrap()
                    .starts_with("SMTP 250"));
            }
        },
    )
    .await;
    drop(sink.child);
}

/// A subscription mailing a team reaches its members' addresses as they
/// are when the event is sent: enabled members with an address, each once,
/// and not a member who was disabled.
#[tokio::test]
async fn email_teams_reach_the_members_addresses() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let port = sink.port;
    on_both_configured(
        "subs_email_teams",
        move |c| {
            fast_retries(c);
            c.subscriptions.smtp = Some(cuttle_service::subscriptions::email::SmtpConfig {
                url: format!("smtp://127.0.0.1:{port}"),
                from: "cuttle@example.com".into(),
            })
        },
        |s| {
            let out = sink.out.clone();
            async move {
                let tag = s.backend.to_lowercase();
                let mut ids = vec![];
                for name in ["ann", "bob", "cid"] {
                    let user = s
                        .create(
                            "/api/users",
                            json!({"Username": format!("{name}-{tag}"), "Password": "a long enough password 1234",
                                "IsActive": true, "EmailAddress": format!("{name}-{tag}@example.com")}),
                        )
                        .await;
                    ids.push(user["Id"].as_str().unwrap().to_owned());
                }
                let team = s
                    .create(
                        "/api/teams",
                        json!({"Name": "Night shift", "SpaceId": "Spaces-1", "MemberUserIds": ids}),
                    )
                    .await;
                let created = s
                    .create(
                        "/api/Spaces-1/subscriptions",
                        json!({
                            "Name": "Team mail",
                            "EventNotificationSubscription": {
                                "Filter": {"EventCategories": ["Created"], "DocumentTypes": ["Environments"]},
                                "EmailTeams": [team["Id"]],
                                // Also a member's: mailed once.
                                "EmailAddresses": [format!("ann-{tag}@example.com")],
                            }
                        }),
                    )
                    .await;
                assert_eq!(created["EventNotificationSubscription"]["EmailTeams"], json!([team["Id"]]));
                // cid leaves before the event.
                let cid = format!("/api/users/{}", ids[2]);
                let mut disabled = s.get(&cid).await.body;
                disabled["IsActive"] = json!(false);
                let r = s.send(Method::PUT, &cid, &disabled).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);

                let name = format!("Team mailed {}", s.backend);
                s.create("/api/environments", json!({"Name": name})).await;
                let mut message = String::new();
                for _ in 0..1500 {
                    let text = out.lock().unwrap().clone();
                    if let Some(m) = text
                        .split("---------- MESSAGE FOLLOWS ----------")
                        .find(|m| m.contains(&name))
                    {
                        message = m.to_owned();
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert!(message.contains(&name), "{}: the mail did not arrive", s.backend);
                // The To header, unfolded.
                let mut header = String::new();
                for line in message.lines().skip_while(|l| !l.starts_with("To:")) {
                    match header.is_empty() || line.starts_with([' ', '\t']) {
                        true => header.push_str(line.trim_start_matches("To:")),
                        false => break,
                    }
                }
                let mut to: Vec<&str> = header.split(',').map(str::trim).collect();
                to.sort();
                assert_eq!(
                    to,
                    [format!("ann-{tag}@example.com"), format!("bob-{tag}@example.com")],
                    "{}: {message}",
                    s.backend
                );
            }
        },
    )
    .await;
    drop(sink.child);
}

#[tokio::test]
async fn deleting_a_space_takes_its_subscriptions_and_their_queues() {
    on_both_configured("subs_space_delete", fast_retries, |s| async move {
        let hook = Receiver::start(vec![]).await;
        let space = s
            .create(
                "/api/spaces",
                json!({"Name": "Short-lived", "SpaceManagersTeams": ["teams-administrators"]}),
            )
            .await;
        let sid = space["Id"].as_str().unwrap().to_owned();
        let sub = s
            .create(
                &format!("/api/{sid}/subscriptions"),
                json!({"Name": "All", "EventNotificationSubscription": {"WebhookURI": hook.url}}),
            )
            .await;
        s.create(&format!("/api/{sid}/environments"), json!({"Name": "Here"}))
            .await;
        hook.wait_for(1, s.backend).await;
        let sub_id = sub["Id"].as_str().unwrap();
        let (_, queued) = s
            .inst
            .store
            .subscription_deliveries(sub_id, 0, 10)
            .await
            .unwrap();
        assert!(queued > 0, "{}: the subscription has deliveries", s.backend);
        // Another space cannot see it.
        let r = s
            .get(&format!(
                "/api/Spaces-1/subscriptions/{}",
                sub["Id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", s.backend);
        let mut stopped = s.get(&format!("/api/spaces/{sid}")).await.body;
        stopped["TaskQueueStopped"] = json!(true);
        let r = s
            .send(Method::PUT, &format!("/api/spaces/{sid}"), &stopped)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", s.backend, r.body);
        let r = s
            .call_with(
                Method::DELETE,
                &format!("/api/spaces/{sid}"),
                None,
                Some(&s.key),
            )
            .await;
        assert!(
            r.status.is_success(),
            "{}: {} {}",
            s.backend,
            r.status,
            r.body
        );
        let r = s
            .get(&format!("/api/{sid}/subscriptions/{sub_id}/deliveries"))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}: {}", s.backend, r.body);
        // Its queue and its signing key went with it.
        let (_, left) = s
            .inst
            .store
            .subscription_deliveries(sub_id, 0, 10)
            .await
            .unwrap();
        assert_eq!(left, 0, "{}: deliveries outlived their space", s.backend);
        let key = s.inst.store.subscription_secret(sub_id).await.unwrap();
        assert!(
            key.is_none(),
            "{}: the signing key outlived its space",
            s.backend
        );
    })
    .await;
}

#[tokio::test]
async fn fault_a_delivery_never_received_is_abandoned_after_the_retry_period_and_the_queue_moves_on(
) {
    on_both_configured(
        "subs_abandon",
        |c| {
            fast_retries(c);
            c.subscriptions.keep_trying_for = Duration::from_millis(600);
        },
        |s| async move {
            let hook = Receiver::start(vec![Answer::Fail; 10_000]).await;
            let sub = s
                .create(
                    "/api/Spaces-1/subscriptions",
                    environment_subscription("Give up", &hook.url),
                )
                .await;
            let id = sub["Id"].as_str().unwrap().to_owned();
            let names = make_environments(&s, "Abandoned ", 1).await;
            // Past the retry period the first is given up.
            let mut first = Value::Null;
            for _ in 0..1500 {
                let history = s
                    .get(&format!("/api/Spaces-1/subscriptions/{id}/deliveries"))
                    .await
                    .body;
                first = history["Items"][0].clone();
                if first["State"] == "Abandoned" || first["State"] == "Delivered" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(first["State"], "Abandoned", "{}: {first}", s.backend);
            assert_eq!(first["LastError"], "HTTP 500");
            assert!(first["Attempts"].as_u64().unwrap() >= 2, "{first}");
            // The receiver recovers; the queue moves on to the next event.
            hook.script.lock().unwrap().clear();
            let failed = hook.received().len();
            let later = make_environments(&s, "Received ", 1).await;
            let got = hook.wait_for(failed + 1, s.backend).await;
            let last = messages(&got).pop().unwrap();
            assert!(last.contains(&later[0]), "{}: {last}", s.backend);
            assert!(messages(&got[..1])[0].contains(&names[0]));
        },
    )
    .await;
}

#[tokio::test]
async fn a_deployment_is_heard_from_queued_to_succeeded() {
    on_both_configured("subs_deploy", fast_retries, |s| async move {
        let hook = Receiver::start(vec![]).await;
        let project = s
            .project_with_script("Heard", "echo deployed", json!({}))
            .await;
        s.create(
            "/api/Spaces-1/subscriptions",
            json!({
                "Name": "Deployments of Heard",
                "EventNotificationSubscription": {
                    "Filter": {
                        "EventCategories": ["DeploymentQueued", "DeploymentStarted", "DeploymentSucceeded", "DeploymentFailed"],
                        "Projects": [project["Id"]],
                    },
                    "WebhookURI": hook.url,
                }
            }),
        )
        .await;
        let task = s.release_and_deploy("Heard", "1.0.0").await;
        s.wait_for_task(&task).await;
        let got = hook.wait_for(3, s.backend).await;
        let categories: Vec<&str> = got
            .iter()
            .map(|r| r.body["Payload"]["Event"]["Category"].as_str().unwrap())
            .collect();
        assert_eq!(
            categories,
            ["DeploymentQueued", "DeploymentStarted", "DeploymentSucceeded"],
            "{}",
            s.backend
        );
        let related = &got[2].body["Payload"]["Event"]["RelatedDocumentIds"];
        assert!(
            related.as_array().unwrap().contains(&project["Id"]),
            "{}: {related}",
            s.backend
        );
        assert!(related.to_string().contains(&task), "{}: {related}", s.backend);
    })
    .await;
}

/// Runs `sql` on the server's own database from outside it.
async fn run_sql(s: &Server, statements: &[&str]) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = s.inst.config.database_url.clone().unwrap_or_else(|| {
        cuttle_store::Store::sqlite_url(&s.inst.config.data_dir.join("cuttle.db"))
    });
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    if s.backend == "sqlite" {
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for sql in statements {
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn fault_a_fan_out_whose_commit_fails_loses_nothing_and_blocks_nothing() {
    on_both_configured("subs_fan_out_fails", fast_retries, |s| async move {
        let hook = Receiver::start(vec![]).await;
        let created = s
            .create(
                "/api/Spaces-1/subscriptions",
                environment_subscription("Envs", &hook.url),
            )
            .await;
        let id = created["Id"].as_str().unwrap().to_owned();
        s.create("/api/environments", json!({"Name": "Dev"})).await;
        hook.wait_for(1, s.backend).await;
        // Every delivery the fan-out writes now fails, and its transaction
        // with it.
        let (refuse, allow): (&[&str], &[&str]) = if s.backend == "sqlite" {
            (
                &[
                    "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON subscription_deliveries \
                   BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                ],
                &["DROP TRIGGER refuse_deliveries"],
            )
        } else {
            (
                &[
                    "CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
                    "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON subscription_deliveries \
                     FOR EACH ROW EXECUTE FUNCTION refuse_deliveries()",
                ],
                &[
                    "DROP TRIGGER refuse_deliveries ON subscription_deliveries",
                    "DROP FUNCTION refuse_deliveries()",
                ],
            )
        };
        run_sql(&s, refuse).await;

        // The changes themselves go on, and so do deployments.
        let names = make_environments(&s, "Failing ", 3).await;
        s.project_with_script("Unhindered", "echo on", json!({}))
            .await;
        let task = s.release_and_deploy("Unhindered", "1.0.0").await;
        let done = s.wait_for_task(&task).await;
        assert_eq!(done["State"], "Success", "{}: {done}", s.backend);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            hook.received().len(),
            1,
            "{}: nothing more was fanned out",
            s.backend
        );
        let history = s
            .get(&format!("/api/Spaces-1/subscriptions/{id}/deliveries"))
            .await
            .body;
        assert_eq!(history["TotalResults"], 1, "{}: {history}", s.backend);

        // Once the database takes deliveries again, each event arrives once,
        // in order.
        run_sql(&s, allow).await;
        let names = [vec!["Dev".to_owned()], names, vec!["After".to_owned()]].concat();
        s.create("/api/environments", json!({"Name": "After"}))
            .await;
        hook.wait_for(names.len(), s.backend).await;
        // A little longer, so a duplicate would have arrived too.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = hook.received().len();
        assert_eq!(
            got,
            names.len(),
            "{}: {:?}",
            s.backend,
            messages(&hook.received())
        );
        for (message, name) in messages(&hook.received()).iter().zip(&names) {
            assert!(
                message.contains(name.as_str()),
                "{}: order: {message} vs {name}",
                s.backend
            );
        }
    })
    .await;
}
