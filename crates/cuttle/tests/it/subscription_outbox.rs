//! A subscription's receiver is down while events happen, and the server is
//! killed (SIGKILL) with deliveries still owed: after a restart, once the
//! receiver is back, it gets every event, in order, on SQLite and
//! PostgreSQL.

use crate::support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::agents::api;
use support::{on_both, TestServer};

const EVENTS: usize = 12;

/// A minimal HTTP receiver: records each request's body, answers 200.
fn receive(listener: TcpListener, bodies: Arc<Mutex<Vec<Value>>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    bodies.lock().unwrap().push(v);
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
}

#[test]
fn fault_owed_deliveries_survive_a_kill_and_a_receiver_that_was_down() {
    on_both("subs_outbox_kill", |dir, database| {
        // A port with nothing listening: the receiver is down.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = TestServer::start(
            &dir,
            database.as_deref(),
            &["--subscription-retry-max", "1"],
        );
        let sub = api(
            &server,
            "POST",
            "/api/Spaces-1/subscriptions",
            Some(json!({
                "Name": "Down for now",
                "EventNotificationSubscription": {
                    "Filter": {"EventCategories": ["Created"], "DocumentTypes": ["Environments"]},
                    "WebhookURI": format!("http://127.0.0.1:{port}/hook"),
                }
            })),
        );
        let id = sub["Id"].as_str().unwrap().to_owned();
        let names: Vec<String> = (0..EVENTS).map(|i| format!("Owed {i:02}")).collect();
        for name in &names {
            api(
                &server,
                "POST",
                "/api/Spaces-1/environments",
                Some(json!({"Name": name})),
            );
        }
        // Wait until the first delivery has failed at least twice.
        let deliveries = format!("/api/Spaces-1/subscriptions/{id}/deliveries?take=100");
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let h = api(&server, "GET", &deliveries, None);
            let oldest = h["Items"].as_array().and_then(|i| i.last()).cloned();
            if oldest.is_some_and(|d| d["Attempts"].as_u64().unwrap_or(0) >= 2) {
                assert_eq!(h["TotalResults"], EVENTS, "{h}");
                break;
            }
            assert!(
                Instant::now() < until,
                "no failed attempts were recorded: {h}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.signal("-KILL");
        drop(server);

        // The receiver comes back, then the server.
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        receive(
            TcpListener::bind(("127.0.0.1", port)).unwrap(),
            bodies.clone(),
        );
        let server = TestServer::start(
            &dir,
            database.as_deref(),
            &["--subscription-retry-max", "1"],
        );
        let until = Instant::now() + Duration::from_secs(60);
        while bodies.lock().unwrap().len() < EVENTS {
            assert!(
                Instant::now() < until,
                "only {} of {EVENTS} deliveries arrived after the restart",
                bodies.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let got: Vec<String> = bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                b["Payload"]["Event"]["Message"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        // At least once, in order: the first arrival of each is in order.
        let mut first_seen: Vec<&str> = vec![];
        for m in &got {
            if let Some(name) = names.iter().find(|n| m.contains(n.as_str())) {
                if !first_seen.contains(&name.as_str()) {
                    first_seen.push(name);
                }
            }
        }
        let expected: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(first_seen, expected, "arrivals: {got:?}");
        let h = api(&server, "GET", &deliveries, None);
        for d in h["Items"].as_array().unwrap() {
            assert_eq!(d["State"], "Delivered", "{d}");
        }
        eprintln!(
            "{}: {EVENTS} owed deliveries arrived after a kill, {} requests in all",
            if database.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            got.len()
        );
    });
}
