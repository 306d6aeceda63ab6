//! A compromised or broken agent: it holds a registered identity, so the
//! pinned TLS handshake succeeds, and then answers with bodies no honest
//! agent sends. The server must read a bounded amount of each answer in a
//! bounded time, and say clearly what the agent did. Runs the hostile peer
//! on 127.0.0.1 against the protocol client in-process, and against a real
//! `cuttle server` process whose memory is read from /proc.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use cuttle_protocol::client::{dial, hello};
use cuttle_protocol::{Identity, ProtocolError};
use serde_json::json;
use support::agents::{api, health, machine_named, raw_log, register, Mode};
use support::hostile::{Answer, Behaviour, HostileAgent};
use support::{on_both, ServerProcess};

const MIB: u64 = 1024 * 1024;
/// What each hostile answer offers: far more than any honest answer.
const OFFERED: u64 = 256 * MIB;
/// What the server may take of it: its caps plus HTTP/2's flow-control
/// windows, with room to spare, and still far below what was offered.
const READ_AT_MOST: u64 = 40 * MIB;
/// How long a flood runs before the server's memory is read: long enough
/// for several times `READ_AT_MOST` to arrive.
const SOAK: Duration = Duration::from_secs(10);

struct Pair {
    server: Identity,
    agent: Identity,
}

fn pair() -> Pair {
    Pair {
        server: Identity::generate("server").unwrap(),
        agent: Identity::generate("agent").unwrap(),
    }
}

fn hostile(pair: &Pair, hello: Answer, other: Answer) -> HostileAgent {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    HostileAgent::serve(
        listener,
        &pair.agent,
        pair.server.thumbprint().clone(),
        Behaviour {
            hello,
            other,
            chunks: None,
        },
    )
}

/// Runs `asking` and insists that it ends by itself well within `limit`.
async fn ends_within<T>(limit: Duration, asking: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, asking)
        .await
        .unwrap_or_else(|_| panic!("the request was still waiting after {limit:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_an_endless_hello_is_cut_off_after_a_bounded_read() {
    let pair = pair();
    let agent = hostile(&pair, Answer::Huge(OFFERED), Answer::Honest);
    let started = Instant::now();
    let err = ends_within(
        Duration::from_secs(60),
        hello(
            &agent.uri,
            pair.agent.thumbprint(),
            &pair.server,
            Duration::from_secs(60),
        ),
    )
    .await
    .expect_err("an endless hello is not an answer");
    assert!(
        matches!(err, ProtocolError::TooLarge { .. }),
        "{err} after {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(
        agent.sent() < READ_AT_MOST,
        "the server read {} MiB of the endless hello",
        agent.sent() / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_a_dripping_agent_is_given_up_on() {
    let pair = pair();
    // A hello that never ends: the dial's own limit applies.
    let agent = hostile(
        &pair,
        Answer::Drip(Duration::from_millis(200)),
        Answer::Honest,
    );
    let err = ends_within(
        Duration::from_secs(20),
        hello(
            &agent.uri,
            pair.agent.thumbprint(),
            &pair.server,
            Duration::from_secs(2),
        ),
    )
    .await
    .expect_err("a dripping hello is not an answer");
    assert!(matches!(err, ProtocolError::Timeout { .. }), "{err}");

    // A good hello, then answers that never end: each request has its own
    // deadline, past any long-poll wait it asked for.
    let agent = hostile(
        &pair,
        Answer::Honest,
        Answer::Drip(Duration::from_millis(200)),
    );
    let (connection, _) = dial(
        &agent.uri,
        pair.agent.thumbprint(),
        &pair.server,
        Duration::from_secs(10),
    )
    .await
    .expect("the hello is honest");
    let connection = connection.answering_within(Duration::from_secs(2));
    let started = Instant::now();
    let err = ends_within(
        Duration::from_secs(30),
        connection.script_status("s", 0, Duration::from_secs(1)),
    )
    .await
    .expect_err("a dripping status is not an answer");
    assert!(matches!(err, ProtocolError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the long poll's wait is granted: {:?}",
        started.elapsed()
    );
    let err = ends_within(Duration::from_secs(30), connection.list_files())
        .await
        .expect_err("a dripping file list is not an answer");
    assert!(matches!(err, ProtocolError::Timeout { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_lying_and_garbage_answers_are_clear_errors() {
    let pair = pair();
    let server = &pair.server;
    let agent_thumbprint = pair.agent.thumbprint();
    let limit = Duration::from_secs(60);

    // Not JSON at all.
    let agent = hostile(&pair, Answer::Text("{\"Protocol"), Answer::Honest);
    let err = hello(&agent.uri, agent_thumbprint, server, limit)
        .await
        .expect_err("garbage is not a hello");
    assert!(matches!(err, ProtocolError::Malformed { .. }), "{err}");

    // A length far past the cap is refused before the body is read.
    let agent = hostile(
        &pair,
        Answer::Claiming {
            claimed: 10 * 1024 * MIB,
            sent: OFFERED,
        },
        Answer::Honest,
    );
    let err = hello(&agent.uri, agent_thumbprint, server, limit)
        .await
        .expect_err("a 10 GiB hello is not an answer");
    assert!(matches!(err, ProtocolError::TooLarge { .. }), "{err}");
    assert!(agent.sent() < READ_AT_MOST, "{} MiB", agent.sent() / MIB);

    // A length shorter than the body: the stream is broken, not trusted.
    let agent = hostile(
        &pair,
        Answer::Claiming {
            claimed: 10,
            sent: MIB,
        },
        Answer::Honest,
    );
    let err = hello(&agent.uri, agent_thumbprint, server, limit)
        .await
        .expect_err("a body longer than its length is not an answer");
    assert!(
        !matches!(err, ProtocolError::Timeout { .. }),
        "a lie is found out, not waited on: {err}"
    );

    // Oversized answers to every other request, error or not.
    for other in [Answer::Huge(OFFERED), Answer::HugeError(OFFERED)] {
        let agent = hostile(&pair, Answer::Honest, other.clone());
        let (connection, _) = dial(&agent.uri, agent_thumbprint, server, limit)
            .await
            .expect("the hello is honest");
        let hash = "ab".repeat(32);
        for _ in 0..3 {
            let err = ends_within(limit, connection.file_status(&hash, None))
                .await
                .expect_err("an endless file status is not an answer");
            assert!(
                matches!(err, ProtocolError::TooLarge { .. }),
                "{other:?}: {err}"
            );
        }
        let err = ends_within(limit, connection.script_status("s", 0, Duration::ZERO))
            .await
            .expect_err("an endless status is not an answer");
        assert!(
            matches!(err, ProtocolError::TooLarge { .. }),
            "{other:?}: {err}"
        );
        let err = ends_within(limit, connection.file_signature(&hash))
            .await
            .expect_err("an endless signature is not an answer");
        assert!(
            matches!(err, ProtocolError::TooLarge { .. }),
            "{other:?}: {err}"
        );
        assert!(
            agent.sent() < 5 * READ_AT_MOST,
            "{other:?}: the server read {} MiB over five requests",
            agent.sent() / MIB
        );
    }
}

/// The largest resident size the process has had, in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("/proc/<pid>/status has VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM is a number of kB");
    kib * 1024
}

/// A server with a Dev environment, and what it says about itself to agents
/// (`/api/agents/server-thumbprint`).
fn server_with_dev(data_dir: &Path, db: Option<&str>) -> (ServerProcess, serde_json::Value) {
    let server = ServerProcess::start(data_dir, db, &[]);
    api(
        &server,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    let about = api(&server, "GET", "/api/agents/server-thumbprint", None);
    (server, about)
}

fn thumbprint_of(about: &serde_json::Value) -> cuttle_protocol::Thumbprint {
    about["Thumbprint"]
        .as_str()
        .expect("the server's thumbprint")
        .parse()
        .expect("a thumbprint")
}

#[test]
fn fault_a_hostile_agent_fails_its_health_check_without_growing_the_server() {
    on_both("agent_hostile", |data_dir, db| {
        let (server, about) = server_with_dev(&data_dir, db.as_deref());
        let server_thumbprint = thumbprint_of(&about);
        let mut policy = api(&server, "GET", "/api/machinepolicies", None)["Items"][0].clone();
        policy["ConnectionConnectTimeout"] = json!("00:00:05");
        let policy_id = policy["Id"].as_str().unwrap().to_owned();
        api(
            &server,
            "PUT",
            &format!("/api/machinepolicies/{policy_id}"),
            Some(policy),
        );
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let tmp = tempfile::tempdir().unwrap();

        for (name, answer) in [
            ("endless", Answer::Huge(OFFERED)),
            ("dripping", Answer::Drip(Duration::from_millis(200))),
        ] {
            // A registered identity whose private key the hostile peer holds.
            let dir = tmp.path().join(name);
            let registered = register(&server, &dir, name, Mode::Listening(&["web"]));
            assert!(registered.status.success(), "{registered:?}");
            let machine = machine_named(&server, name);
            let id = machine["Id"].as_str().unwrap().to_owned();
            let uri = machine["Uri"].as_str().unwrap();
            let address = uri.trim_start_matches("https://").trim_end_matches('/');
            let listener = std::net::TcpListener::bind(address).unwrap();
            let identity = Identity::load(&dir).unwrap();
            let agent = runtime.block_on(async {
                HostileAgent::serve(
                    listener,
                    &identity,
                    server_thumbprint.clone(),
                    Behaviour {
                        hello: answer.clone(),
                        other: Answer::Honest,
                        chunks: None,
                    },
                )
            });

            let before = peak_memory(server.child.id());
            let started = Instant::now();
            let task = health(&server, &[&id]);
            let took = started.elapsed();
            let after = peak_memory(server.child.id());
            assert!(
                after.saturating_sub(before) < READ_AT_MOST,
                "{name}: the server's peak memory grew by {} MiB (offered {} MiB, read {} MiB)",
                after.saturating_sub(before) / MIB,
                OFFERED / MIB,
                agent.sent() / MIB
            );
            assert_eq!(task["State"], "Failed", "{name}: {task}");
            assert!(
                took < Duration::from_secs(45),
                "{name}: the health check took {took:?}"
            );
            let log = raw_log(&server, task["Id"].as_str().unwrap());
            let m = api(&server, "GET", &format!("/api/machines/{id}"), None);
            assert_eq!(m["HealthStatus"], "Unavailable", "{name}: {m}");
            let said = m["StatusSummary"].as_str().unwrap_or_default().to_owned();
            match answer {
                Answer::Huge(_) => assert!(
                    said.contains("larger than") && log.contains("larger than"),
                    "{name}: {said}\n{log}"
                ),
                _ => assert!(
                    said.contains("did not answer within") && log.contains("did not answer"),
                    "{name}: {said}\n{log}"
                ),
            }
            drop(agent);
        }
    });
}

/// A script status that is still running, with these lines.
fn running_with(lines: Vec<String>) -> hyper::body::Bytes {
    use cuttle_protocol::messages::{ScriptLine, ScriptState, ScriptStatus, ScriptStream};
    let status = ScriptStatus {
        id: "any".into(),
        state: ScriptState::Running,
        exit_code: None,
        signal: None,
        error: None,
        from: 0,
        next: lines.len() as u64,
        lines: lines
            .into_iter()
            .map(|text| ScriptLine {
                stream: ScriptStream::Stdout,
                text,
                continues: false,
            })
            .collect(),
    };
    serde_json::to_vec(&status).unwrap().into()
}

#[test]
fn fault_an_agent_flooding_a_running_script_does_not_grow_the_server() {
    on_both("agent_hostile_flood", |data_dir, db| {
        let (server, about) = server_with_dev(&data_dir, db.as_deref());
        let server_thumbprint = thumbprint_of(&about);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("flood");
        let registered = register(&server, &dir, "flood", Mode::Listening(&["web"]));
        assert!(registered.status.success(), "{registered:?}");
        let machine = machine_named(&server, "flood");
        let uri = machine["Uri"].as_str().unwrap();
        let address = uri.trim_start_matches("https://").trim_end_matches('/');
        let listener = std::net::TcpListener::bind(address).unwrap();
        let identity = Identity::load(&dir).unwrap();
        // Every answer: about 6 MiB of output variables, 100 names (in
        // base64, 'AA@…') of 48 KiB of NULs each (in base64, 'AAAA…'),
        // set again and again while the script "runs".
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let value = "A".repeat(64 * 1024);
        let sets: Vec<String> = (0..100)
            .map(|i| {
                let (a, b) = (alphabet[i / 62] as char, alphabet[i % 62] as char);
                format!("##octopus[setVariable name='QUF{a}QUF{b}' value='{value}']")
            })
            .collect();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _agent = runtime.block_on(async {
            HostileAgent::serve(
                listener,
                &identity,
                server_thumbprint,
                Behaviour {
                    hello: Answer::Honest,
                    other: Answer::Bytes(running_with(sets)),
                    chunks: None,
                },
            )
        });
        let project = api(
            &server,
            "POST",
            "/api/projects",
            Some(
                json!({"Name": "Flood", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            ),
        );
        api(
            &server,
            "PUT",
            &format!(
                "/api/projects/{}/deploymentprocesses",
                project["Id"].as_str().unwrap()
            ),
            Some(
                json!({"Version": 0, "Steps": [{"Name": "Run", "Properties": {"Octopus.Action.TargetRoles": "web"},
                "Actions": [{"Name": "Run", "ActionType": "Octopus.Script", "Properties": {
                    "Octopus.Action.Script.ScriptBody": "true", "Octopus.Action.Script.Syntax": "Bash"}}]}]}),
            ),
        );
        api(
            &server,
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Flood", "ReleaseVersion": "1.0.0"})),
        );
        let before = peak_memory(server.child.id());
        let task = support::agents::deploy_to_dev(&server, "Flood", "1.0.0");
        let until = Instant::now() + SOAK;
        let mut flooded = false;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(500));
            flooded = flooded || raw_log(&server, &task).contains("Output variable AA@");
        }
        let after = peak_memory(server.child.id());
        assert!(
            flooded,
            "the agent's answers were read:\n{}",
            raw_log(&server, &task)
        );
        assert!(
            after.saturating_sub(before) < 3 * READ_AT_MOST,
            "the server's peak memory grew by {} MiB in {} s of a flooding agent",
            after.saturating_sub(before) / MIB,
            SOAK.as_secs()
        );
        let log = raw_log(&server, &task);
        assert!(log.contains("output variables"), "{log}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_an_agent_refusing_every_chunk_does_not_hold_an_upload() {
    use cuttle_engine::remote::{upload_file, AgentTarget, ConnectionLimits};
    use cuttle_model::machine::{CommunicationStyle, Endpoint};
    use cuttle_protocol::messages::FileStatus;
    use std::sync::Arc;

    let pair = pair();
    let hash = "ab".repeat(32);
    // The agent holds nothing of the file, and answers every chunk that
    // another upload's got there first.
    let nothing = serde_json::to_vec(&FileStatus {
        hash: hash.clone(),
        complete: false,
        received_bytes: 0,
    })
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = HostileAgent::serve(
        listener,
        &pair.agent,
        pair.server.thumbprint().clone(),
        Behaviour {
            hello: Answer::Honest,
            other: Answer::Bytes(nothing.into()),
            chunks: Some(Answer::Conflict),
        },
    );
    let server_identity = Arc::new(pair.server);
    let agents =
        cuttle_protocol::Agents::new(server_identity, cuttle_protocol::polling::PollingHub::new());
    let endpoint = Endpoint {
        communication_style: Some(CommunicationStyle::TentaclePassive),
        uri: agent.uri.clone(),
        thumbprint: pair.agent.thumbprint().to_string(),
        ..Endpoint::default()
    };
    let target = AgentTarget {
        name: "liar",
        endpoint: &endpoint,
        machine_policy_id: "MachinePolicies-1",
    };
    let limits = ConnectionLimits {
        connect: Duration::from_secs(5),
        retry: Duration::from_secs(5),
        retry_sleep: Duration::from_millis(100),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("package.zip");
    std::fs::write(&file, vec![7u8; 3 * 1024 * 1024]).unwrap();
    let err = ends_within(
        Duration::from_secs(30),
        upload_file(&agents, &target, limits, &file, &hash, 3 * 1024 * 1024, &[]),
    )
    .await
    .expect_err("an upload the agent never takes does not succeed");
    assert!(err.contains("liar"), "{err}");
}

#[test]
fn fault_a_hostile_polling_agent_does_not_grow_the_server() {
    on_both("agent_hostile_polling", |data_dir, db| {
        let (server, about) = server_with_dev(&data_dir, db.as_deref());
        let server_thumbprint = thumbprint_of(&about);
        let port = about["PollingPort"].as_u64().expect("a polling port");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("poller");
        let registered = register(&server, &dir, "poller", Mode::Polling(&["web"]));
        assert!(registered.status.success(), "{registered:?}");
        let identity = Identity::load(&dir).unwrap();

        let before = peak_memory(server.child.id());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        // The polling agent dials in, and answers the server's hello with
        // an endless body, again on every redial.
        let agent = runtime.block_on(async {
            HostileAgent::poll(
                format!("127.0.0.1:{port}"),
                &identity,
                server_thumbprint,
                Behaviour {
                    hello: Answer::Huge(OFFERED),
                    other: Answer::Honest,
                    chunks: None,
                },
            )
        });
        let until = Instant::now() + Duration::from_secs(60);
        let said = loop {
            let output = server.recent_output();
            if output.contains("larger than") || output.contains("could not be read") {
                break output;
            }
            assert!(
                Instant::now() < until,
                "the server said nothing of the polling agent:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let after = peak_memory(server.child.id());
        assert!(
            after.saturating_sub(before) < READ_AT_MOST,
            "the server's peak memory grew by {} MiB (offered {} MiB a connection, read {} MiB)",
            after.saturating_sub(before) / MIB,
            OFFERED / MIB,
            agent.sent() / MIB
        );
        assert!(said.contains("larger than"), "{said}");
    });
}

#[test]
fn fault_a_script_flooding_its_output_does_not_grow_the_server() {
    on_both("script_flood", |data_dir, db| {
        let (server, _) = server_with_dev(&data_dir, db.as_deref());
        let project = api(
            &server,
            "POST",
            "/api/projects",
            Some(
                json!({"Name": "Chatty", "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
            ),
        );
        // On the built-in worker: lines as fast as the pipe takes them.
        api(
            &server,
            "PUT",
            &format!(
                "/api/projects/{}/deploymentprocesses",
                project["Id"].as_str().unwrap()
            ),
            Some(
                json!({"Version": 0, "Steps": [{"Name": "Run", "Properties": {},
                "Actions": [{"Name": "Run", "ActionType": "Octopus.Script", "Properties": {
                    "Octopus.Action.Script.ScriptBody": "yes 'a chatty line of output, again and again'",
                    "Octopus.Action.Script.Syntax": "Bash"}}]}]}),
            ),
        );
        api(
            &server,
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(json!({"ProjectName": "Chatty", "ReleaseVersion": "1.0.0"})),
        );
        let before = peak_memory(server.child.id());
        let task = support::agents::deploy_to_dev(&server, "Chatty", "1.0.0");
        std::thread::sleep(SOAK);
        let after = peak_memory(server.child.id());
        let head = raw_log_head(&server, &task);
        assert!(head.contains("a chatty line"), "{head}");
        assert!(
            after.saturating_sub(before) < 3 * READ_AT_MOST,
            "the server's peak memory grew by {} MiB in {} s of a chatty script",
            after.saturating_sub(before) / MIB,
            SOAK.as_secs()
        );
    });
}

/// The first bytes of a task's log as text: enough to see lines were
/// stored, without reading a flood's worth.
fn raw_log_head(server: &ServerProcess, task: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut resp = reqwest::Client::new()
            .get(format!("{}/api/tasks/{task}/raw", server.url))
            .header("X-Octopus-ApiKey", support::KEY)
            .send()
            .await
            .unwrap();
        let mut head = Vec::new();
        while head.len() < 64 * 1024 {
            match resp.chunk().await.unwrap() {
                Some(c) => head.extend_from_slice(&c),
                None => break,
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    })
}
