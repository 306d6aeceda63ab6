//! Running the server as an operator does: `/metrics` behind an API key on
//! the main listener and without one on `--metrics-listen`, `/healthz` and
//! `/readyz` (503 while draining or when the database is gone), JSON logs
//! that name each request and task.

use crate::support;

use reqwest::StatusCode;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::observe::{api, deploy, get, metrics_url, sample, try_call, wait_state, wait_task};
use support::{scratch_postgres, TestServer, BIN, KEY};

#[test]
fn metrics_need_a_key_on_the_main_listener_and_none_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None, &["--metrics-listen", "127.0.0.1:0"]);
    let main = format!("{}/metrics", server.url);

    let (status, body) = get(&main, &[]);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let wrong = "API-WRONGWRONGWRONGWRONGWRONGWRONG0001";
    let (status, body) = get(&main, &[("X-Octopus-ApiKey", wrong)]);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = get(&main, &[("Authorization", &format!("Bearer {wrong}"))]);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.contains("cuttle_"), "{body}");

    let (status, body) = get(&main, &[("X-Octopus-ApiKey", KEY)]);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("cuttle_build_info{version=\""), "{body}");
    let (status, body) = get(&main, &[("Authorization", &format!("Bearer {KEY}"))]);
    assert_eq!(status, StatusCode::OK, "{body}");

    let open = metrics_url(&server);
    let (status, body) = get(&format!("{open}/metrics"), &[]);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    // The free space of a real file system, and the server's certificate
    // expiry, a date after now.
    let free = sample(&body, "cuttle_data_dir_free_bytes").expect("disk free");
    assert!(free > 0.0, "{body}");
    let expiry = sample(
        &body,
        "cuttle_certificate_expiry_timestamp_seconds{owner=\"server\"}",
    )
    .expect("certificate expiry");
    assert!(expiry > 1.7e9, "{body}");
    // Only the three operations' routes are on the metrics listener.
    let (status, _) = get(&format!("{open}/api/projects"), &[]);
    assert_eq!(status, StatusCode::NOT_FOUND);

    for base in [server.url.as_str(), open.as_str()] {
        let (status, body) = get(&format!("{base}/healthz"), &[]);
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
        let (status, body) = get(&format!("{base}/readyz"), &[]);
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    }
}

#[test]
fn a_deployment_moves_the_task_deployment_and_http_counters() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None, &["--metrics-listen", "127.0.0.1:0"]);
    let open = format!("{}/metrics", metrics_url(&server));
    let task = deploy(&server.url, "Shop Web", "echo hello");
    wait_task(&server.url, &task);
    // Another request of the same template, with other ids in its path.
    let (status, _) = get(
        &format!("{}/api/Spaces-1/projects/Projects-999", server.url),
        &[("X-Octopus-ApiKey", KEY)],
    );
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, text) = get(&open, &[]);
    let deployed =
        "cuttle_deployments_total{project=\"Shop Web\",environment=\"Dev\",outcome=\"Success\"}";
    assert_eq!(sample(&text, deployed), Some(1.0), "{text}");
    let finished = "cuttle_tasks_finished_total{task_type=\"Deploy\",outcome=\"Success\"}";
    assert_eq!(sample(&text, finished), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "cuttle_task_duration_seconds_count{task_type=\"Deploy\",outcome=\"Success\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // By template, never by raw path.
    let by_template = "cuttle_http_requests_total{method=\"GET\",route=\"/api/{space}/projects/{id}\",status=\"404\"}";
    assert_eq!(sample(&text, by_template), Some(1.0), "{text}");
    assert!(!text.contains("Projects-999"), "{text}");
    assert!(!text.contains(&task), "a task id in a label: {text}");
    // Nothing is queued or running any more.
    assert_eq!(
        sample(&text, "cuttle_oldest_running_task_seconds"),
        Some(0.0)
    );
    let running = "cuttle_tasks_running{task_type=\"Deploy\"}";
    assert_eq!(sample(&text, running), Some(0.0), "{text}");
}

#[test]
fn readyz_answers_503_while_the_server_drains() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None, &["--metrics-listen", "127.0.0.1:0"]);
    let open = metrics_url(&server);
    let task = deploy(&server.url, "Slow", "sleep 3");
    wait_state(&server.url, &task, "Executing");
    let (_, text) = get(&format!("{open}/metrics"), &[]);
    assert_eq!(
        sample(&text, "cuttle_tasks_running{task_type=\"Deploy\"}"),
        Some(1.0),
        "{text}"
    );

    server.signal("-TERM");
    // The step runs on for up to 3 s, and the metrics listener with it.
    let until = Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    while Instant::now() < until {
        if let Some((status, _, text)) = try_call("GET", &format!("{open}/readyz"), &[], None) {
            if status == StatusCode::SERVICE_UNAVAILABLE {
                seen = Some(serde_json::from_str::<Value>(&text).unwrap());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = seen.expect("/readyz never answered 503 while draining");
    assert!(
        body["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{body}"
    );
    // Alive all the same.
    let (status, _) = get(&format!("{open}/healthz"), &[]);
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn readyz_answers_503_when_the_database_is_unreachable() {
    let Some(db) = scratch_postgres("readyz_database") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        Some(&db.url),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let open = metrics_url(&server);
    let (status, _) = get(&format!("{open}/readyz"), &[]);
    assert_eq!(status, StatusCode::OK);

    // The database refuses connections and drops the server's.
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let admin = std::env::var("CUTTLE_TEST_DATABASE_URL").unwrap();
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([admin.as_str(), "-Atc", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "{sql}: {out:?}");
    };
    psql(&format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
    ));
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    let (status, text) = get(&format!("{open}/readyz"), &[]);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(
        body["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("database is not reachable"),
        "{body}"
    );
    // An API request that needs the database fails with a 500 that says
    // nothing of the database's own words, and counts as a database error.
    let (status, text) = get(
        &format!("{}/api/Spaces-1/projects", server.url),
        &[("X-Octopus-ApiKey", KEY)],
    );
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains("internal error"), "{text}");
    assert!(!text.to_lowercase().contains("connection"), "{text}");
    // Alive, though not ready; and ready again once the database is back.
    let (status, _) = get(&format!("{open}/healthz"), &[]);
    assert_eq!(status, StatusCode::OK);
    psql(&format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
    ));
    let until = Instant::now() + Duration::from_secs(20);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    while status != StatusCode::OK && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        status = get(&format!("{open}/readyz"), &[]).0;
    }
    assert_eq!(status, StatusCode::OK);
    let (_, text) = get(&format!("{open}/metrics"), &[]);
    // On PostgreSQL every series names its node.
    for source in ["readiness", "http"] {
        let counted =
            format!("cuttle_database_errors_total{{node=\"test-node\",source=\"{source}\"}}");
        assert!(
            sample(&text, &counted).unwrap_or(0.0) >= 1.0,
            "{counted}: {text}"
        );
    }
}

#[test]
fn json_logs_carry_request_and_task_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut cmd = Command::new(BIN);
    if std::env::var_os("CUTTLE_TEST_REQUIRE_ISOLATION").is_none() {
        cmd.env("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true");
    }
    let mut child = cmd
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--polling-listen",
            "off",
        ])
        .args(["--log-format", "json", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("CUTTLE_ADMIN_API_KEY", KEY)
        .env("CUTTLE_ADMIN_PASSWORD", "cuttle-test-password")
        .env("RUST_LOG", "info,sqlx=warn,cuttle_api::request_id=debug")
        .env_remove("CUTTLE_DATABASE_URL")
        .env_remove("CUTTLE_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split_once("listening on ")
                .map(|(_, u)| u.trim().to_owned())
        })
        .expect("the server's address");
    std::thread::spawn(move || lines.for_each(drop));

    let (_, headers, _) = try_call(
        "GET",
        &format!("{url}/api/projects"),
        &[("X-Octopus-ApiKey", KEY)],
        None,
    )
    .unwrap();
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 32, "{request_id}");
    let task = deploy(&url, "Logged", "echo logged");
    wait_task(&url, &task);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log_path).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.len() > 3, "{text}");
    let in_span = |e: &Value, field: &str, value: &str| {
        e["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s[field] == value))
    };
    assert!(
        events.iter().any(|e| in_span(e, "request_id", &request_id)),
        "no line names request {request_id}:\n{text}"
    );
    let finished = events
        .iter()
        .find(|e| in_span(e, "task_id", &task))
        .unwrap_or_else(|| panic!("no line names task {task}:\n{text}"));
    assert!(finished["level"].is_string() && finished["timestamp"].is_string());
}

#[test]
fn an_agent_is_counted_by_health_with_its_certificate_and_round_trips() {
    use support::agents::{health, machine_named, register, Agent, Mode};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None, &["--metrics-listen", "127.0.0.1:0"]);
    let open = format!("{}/metrics", metrics_url(&server));
    let (_, before) = get(&open, &[]);
    assert_eq!(
        sample(&before, "cuttle_agents{status=\"Healthy\"}"),
        Some(0.0)
    );
    assert!(!before.contains("owner=\"agents\""), "{before}");

    api(
        &server.url,
        "POST",
        "/api/environments",
        Some(serde_json::json!({"Name": "Dev"})),
    );
    let agent_dir = tempfile::tempdir().unwrap();
    let out = register(&server, agent_dir.path(), "web01", Mode::Polling(&["web"]));
    assert!(out.status.success(), "{out:?}");
    let _agent = Agent::start(agent_dir.path());
    let machine = machine_named(&server, "web01");
    let task = health(&server, &[machine["Id"].as_str().unwrap()]);
    assert_eq!(task["State"], "Success", "{task}");

    let (_, text) = get(&open, &[]);
    assert_eq!(
        sample(&text, "cuttle_agents{status=\"Healthy\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "cuttle_agents{status=\"Unknown\"}"),
        Some(0.0),
        "{text}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let expiry = sample(
        &text,
        "cuttle_certificate_expiry_timestamp_seconds{owner=\"agents\"}",
    )
    .expect("the agent's certificate expiry");
    assert!(expiry > now, "{text}");
    let hellos = sample(
        &text,
        "cuttle_agent_command_duration_seconds_count{command=\"hello\"}",
    );
    assert!(hellos.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "cuttle_agent_command_errors_total{command=\"hello\"}"
        ),
        Some(0.0),
        "{text}"
    );
}
