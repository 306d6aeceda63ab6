//! The server is killed (SIGKILL) while several clients write: every write it
//! acknowledged is there after a restart, on SQLite and on PostgreSQL.

use crate::support;

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{on_both, TestServer, KEY};

const WRITERS: usize = 4;

/// Creates environments until told to stop or the server goes away; the
/// names the server acknowledged.
fn writer(url: String, id: usize, stop: Arc<AtomicBool>, acknowledged: Arc<Mutex<Vec<String>>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        for n in 0.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let name = format!("w{id}-{n}");
            let sent = client
                .post(format!("{url}/api/Spaces-1/environments"))
                .header("X-Octopus-ApiKey", KEY)
                .json(&json!({"Name": name}))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().as_u16() == 201 => {
                    acknowledged.lock().unwrap().push(name);
                }
                Ok(r) => panic!("{name}: unexpected {}", r.status()),
                // The server was killed mid-request: not acknowledged.
                Err(_) => break,
            }
        }
    });
}

#[test]
fn fault_kill_9_under_concurrent_writers_loses_no_acknowledged_write() {
    on_both("kill_9_writers", |dir, database| {
        let server = TestServer::start(&dir, database.as_deref(), &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                let (url, stop, acked) = (server.url.clone(), stop.clone(), acknowledged.clone());
                std::thread::spawn(move || writer(url, id, stop, acked))
            })
            .collect();
        // Let the writers get going, then kill the server under them.
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while acknowledged.lock().unwrap().len() < 200 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        server.signal("-KILL");
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("a writer panicked");
        }
        drop(server);
        let acknowledged = acknowledged.lock().unwrap().clone();
        assert!(
            acknowledged.len() >= 200,
            "the writers got only {} writes in",
            acknowledged.len()
        );

        let server = TestServer::start(&dir, database.as_deref(), &[]);
        let all = support::agents::api(&server, "GET", "/api/Spaces-1/environments/all", None);
        let listed: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["Name"].as_str())
            .collect();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|n| !listed.contains(&n.as_str()))
            .collect();
        eprintln!(
            "{}: {} acknowledged before the kill, {} lost",
            if database.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            acknowledged.len(),
            lost.len()
        );
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    });
}
