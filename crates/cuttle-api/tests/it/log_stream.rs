//! The live task log: `GET /api/tasks/{id}/stream` as Server-Sent Events,
//! read over real HTTP while a script prints lines with pauses.

use crate::common;

use common::{on_both, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// One event as a client sees it.
#[derive(Clone, Debug)]
struct Ev {
    event: String,
    id: Option<String>,
    data: Value,
}

/// A minimal SSE reader, enough for the events this server sends.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> Events {
        let resp = request(server, path, headers).await;
        assert_eq!(resp.status(), StatusCode::OK, "{} {path}", server.backend);
        let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, or `None` once the server closed the stream.
    async fn next(&mut self) -> Option<Ev> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Ev {
                    event: "message".into(),
                    id: None,
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().into());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                ev.data = serde_json::from_str(&data).unwrap();
                return Some(ev);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk())
                .await
                .expect("no event within 30 s")
                .unwrap();
            match chunk {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => {
                    assert!(self.buf.trim().is_empty(), "cut short: {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// Every event up to and including `end`, then checks the stream closes.
    async fn until_end(&mut self) -> Vec<Ev> {
        let mut out = vec![];
        while let Some(ev) = self.next().await {
            let end = ev.event == "end";
            out.push(ev);
            if end {
                assert!(self.next().await.is_none(), "nothing follows end");
                return out;
            }
        }
        panic!("the stream closed without an end event: {out:?}");
    }
}

async fn request(server: &Server, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = server.http().get(format!("{}{path}", server.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// `(position, text)` of the log events among `events`.
fn lines(events: &[Ev]) -> Vec<(i64, String)> {
    events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| {
            let position = e.data["Position"].as_i64().unwrap();
            assert_eq!(e.id.as_deref(), Some(position.to_string().as_str()));
            (position, e.data["MessageText"].as_str().unwrap().to_owned())
        })
        .collect()
}

const SCRIPT: &str = "for i in 1 2 3; do echo line $i; sleep 0.3; done";

#[tokio::test]
async fn lines_stream_while_the_task_runs_and_resume_after_a_reconnect() {
    on_both("log_stream_live", |s| async move {
        s.project_with_script("Streamer", SCRIPT, json!({})).await;
        let task = s.release_and_deploy("Streamer", "1.0.0").await;
        let path = format!("/api/tasks/{task}/stream");
        let key = s.key.clone();
        let auth = [("X-Octopus-ApiKey", key.as_str())];

        // First connection: read until "line 1", which must arrive while the
        // task still runs, then drop the connection.
        let mut first = Events::open(&s, &path, &auth).await;
        let mut seen = vec![];
        loop {
            let ev = first.next().await.expect("stream ended before line 1");
            let is_line_1 = ev.event == "log" && ev.data["MessageText"] == "line 1";
            seen.push(ev);
            if is_line_1 {
                break;
            }
        }
        let state = s.get(&format!("/api/tasks/{task}")).await.body["State"].clone();
        assert_eq!(
            state, "Executing",
            "{}: line 1 came only once the task was {state}",
            s.backend
        );
        assert_eq!(seen[0].event, "task", "the task comes first");
        // Every line's activity was announced before it.
        let mut known = std::collections::HashSet::new();
        for ev in &seen {
            match ev.event.as_str() {
                "activity" => {
                    known.insert(ev.data["Id"].as_str().unwrap().to_owned());
                }
                "log" => assert!(
                    known.contains(ev.data["ActivityId"].as_str().unwrap()),
                    "{ev:?}"
                ),
                _ => {}
            }
        }
        drop(first);

        // Reconnect as an EventSource would, with the last id received.
        let last = lines(&seen).last().unwrap().0.to_string();
        let resume = [
            ("X-Octopus-ApiKey", key.as_str()),
            ("Last-Event-ID", last.as_str()),
        ];
        let rest = Events::open(&s, &path, &resume).await.until_end().await;
        let end = rest.last().unwrap();
        assert_eq!(end.data["State"], "Success", "{}: {end:?}", s.backend);
        assert_eq!(end.data["IsCompleted"], true);
        let final_task = rest.iter().rev().find(|e| e.event == "task").unwrap();
        assert_eq!(final_task.data["State"], "Success");

        // The complete log, streamed after the task ended, all at once.
        let started = std::time::Instant::now();
        let all = Events::open(&s, &path, &auth).await.until_end().await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a completed task's stream waits"
        );
        let all_lines = lines(&all);
        let mut joined = lines(&seen);
        joined.extend(lines(&rest));
        assert_eq!(
            joined, all_lines,
            "{}: the two connections lost or repeated a line",
            s.backend
        );
        let texts: Vec<&str> = all_lines.iter().map(|(_, t)| t.as_str()).collect();
        let script_lines: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| t.starts_with("line "))
            .collect();
        assert_eq!(script_lines, ["line 1", "line 2", "line 3"], "{texts:?}");
        assert!(
            all_lines.windows(2).all(|w| w[0].0 < w[1].0),
            "positions increase"
        );
        // The stream's lines are the details' lines, in the same order here.
        let details: Vec<String> = s
            .log_lines(&task)
            .await
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let mut streamed: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        streamed.sort();
        let mut expected = details.clone();
        expected.sort();
        assert_eq!(streamed, expected);

        // `since` resumes like Last-Event-ID; the header wins over it.
        let since = Events::open(&s, &format!("{path}?since={last}"), &auth)
            .await
            .until_end()
            .await;
        assert_eq!(lines(&since), lines(&rest));
        let both = [
            ("X-Octopus-ApiKey", key.as_str()),
            ("Last-Event-ID", last.as_str()),
        ];
        let header_wins = Events::open(&s, &format!("{path}?since=0"), &both)
            .await
            .until_end()
            .await;
        assert_eq!(lines(&header_wins), lines(&rest));
        // Activities and the task are sent in full on every connection.
        assert_eq!(
            since.iter().filter(|e| e.event == "activity").count(),
            all.iter().filter(|e| e.event == "activity").count()
        );

        // The space-scoped route is the same stream.
        let scoped = Events::open(&s, &format!("/api/Spaces-1/tasks/{task}/stream"), &auth)
            .await
            .until_end()
            .await;
        assert_eq!(lines(&scoped), all_lines);
        // Once nobody follows it, the task's signal is gone (the dropped first
        // connection is noticed at the server's next write to it).
        let mut followed = s.inst.runner.signals().followed_count();
        for _ in 0..100 {
            if followed == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            followed = s.inst.runner.signals().followed_count();
        }
        assert_eq!(followed, 0);
    })
    .await;
}

#[tokio::test]
async fn the_stream_is_authenticated_and_knows_its_tasks() {
    on_both("log_stream_auth", |s| async move {
        s.project_with_script("Quick", "echo quick", json!({}))
            .await;
        let task = s.release_and_deploy("Quick", "1.0.0").await;
        s.wait_for_task(&task).await;
        let path = format!("/api/tasks/{task}/stream");

        // An EventSource cannot set headers: the key goes in the query.
        let events = Events::open(&s, &format!("{path}?apikey={}", s.key), &[])
            .await
            .until_end()
            .await;
        assert!(
            lines(&events).iter().any(|(_, t)| t == "quick"),
            "{events:?}"
        );
        let bearer = format!("Bearer {}", s.key);
        Events::open(&s, &path, &[("Authorization", bearer.as_str())])
            .await
            .until_end()
            .await;

        let no_key = request(&s, &path, &[]).await;
        assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
        let body: Value = no_key.json().await.unwrap();
        assert!(body["ErrorMessage"].is_string(), "{body}");

        let auth = [("X-Octopus-ApiKey", s.key.as_str())];
        let unknown = request(&s, "/api/tasks/ServerTasks-999/stream", &auth).await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let body: Value = unknown.json().await.unwrap();
        assert!(
            body["ErrorMessage"]
                .as_str()
                .unwrap()
                .contains("ServerTasks-999"),
            "{body}"
        );
        assert!(body["Errors"].is_array());

        let bad = [
            ("X-Octopus-ApiKey", s.key.as_str()),
            ("Last-Event-ID", "soon"),
        ];
        assert_eq!(
            request(&s, &path, &bad).await.status(),
            StatusCode::BAD_REQUEST
        );
        let bad_since = request(&s, &format!("{path}?since=x"), &auth).await;
        assert_eq!(bad_since.status(), StatusCode::BAD_REQUEST);
        assert_eq!(s.inst.runner.signals().followed_count(), 0);
    })
    .await;
}

/// A task run by another server node sharing the database sends this node
/// no signal: its stream still follows, on the fallback timer.
#[tokio::test]
async fn a_task_written_without_signals_still_streams() {
    use cuttle_model::task::{Activity, ActivityStatus, LogCategory, LogLine};
    use cuttle_model::{TaskState, Timestamp};

    on_both("log_stream_other_node", |s| async move {
        // Queued for later, so this node's runner leaves it alone; the test
        // plays the other node, writing straight to the store.
        let mut tx = s.inst.store.begin().await.unwrap();
        let task = tx
            .insert_task(cuttle_store::NewTask {
                name: "Deploy".into(),
                queue_time: Some(Timestamp::now().add_millis(3_600_000)),
                ..Default::default()
            })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let store = s.inst.store.clone();
        let activity = Activity {
            id: format!("{}_1", task.id),
            parent_id: None,
            name: "Elsewhere".into(),
            status: ActivityStatus::Running,
            started: Some(Timestamp::now()),
            ended: None,
            show_at_summary_level: true,
            progress_percentage: None,
            progress_message: None,
        };
        let line = |seq: i64| LogLine {
            seq,
            activity_id: activity.id.clone(),
            category: LogCategory::Info,
            occurred_at: Timestamp::now(),
            message: format!("remote {seq}"),
            detail: None,
        };

        let path = format!("/api/tasks/{}/stream", task.id);
        let mut events = Events::open(&s, &path, &[("X-Octopus-ApiKey", s.key.as_str())]).await;
        let first = events.next().await.unwrap();
        assert_eq!(
            (first.event.as_str(), &first.data["State"]),
            ("task", &json!("Queued"))
        );

        store.put_activity(&task.id, &activity, 1).await.unwrap();
        store
            .append_log_lines(&task.id, &[line(1), line(2)])
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut got = vec![];
        while got.len() < 2 {
            let ev = events.next().await.unwrap();
            if ev.event == "log" {
                got.push(ev.data["MessageText"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(got, ["remote 1", "remote 2"]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        store.append_log_lines(&task.id, &[line(3)]).await.unwrap();
        store
            .complete_task(&task.id, TaskState::Failed, Some("gone"))
            .await
            .unwrap();
        let rest = events.until_end().await;
        assert_eq!(lines(&rest), [(3, "remote 3".to_owned())]);
        let end = rest.last().unwrap();
        assert_eq!(
            (&end.data["State"], &end.data["ErrorMessage"]),
            (&json!("Failed"), &json!("gone"))
        );
    })
    .await;
}

/// Shutting the server down ends open streams (without `end`: the task is
/// not over), so draining requests does not wait for the tasks they follow.
#[tokio::test]
async fn shutting_down_closes_open_streams() {
    use cuttle_model::Timestamp;

    on_both("log_stream_shutdown", |s| async move {
        let mut tx = s.inst.store.begin().await.unwrap();
        let task = tx
            .insert_task(cuttle_store::NewTask {
                name: "Deploy".into(),
                queue_time: Some(Timestamp::now().add_millis(3_600_000)),
                ..Default::default()
            })
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // A second server on the same installation, stopped by this test.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(cuttle_api::serve(listener, s.inst.clone(), async {
            let _ = stopped.await;
        }));
        let resp = reqwest::Client::new()
            .get(format!("{url}/api/tasks/{}/stream", task.id))
            .header("X-Octopus-ApiKey", &s.key)
            .send()
            .await
            .unwrap();
        let mut events = Events {
            resp,
            buf: String::new(),
        };
        assert_eq!(events.next().await.unwrap().event, "task");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("the server waited for an open stream")
            .unwrap()
            .unwrap();
        assert!(events.next().await.is_none(), "closed, with no end");
    })
    .await;
}
