//! Listening agents as operators run them: a real server, `cuttle agent
//! init`, `register` and `run` as real processes on 127.0.0.1, and the
//! server's `Health` task dialling them over pinned mutual TLS. Runs on
//! SQLite, and on PostgreSQL when CUTTLE_TEST_DATABASE_URL is set.

use crate::support;

use serde_json::{json, Value};
use support::agents::{agent_cli, api, health, machine_named, raw_log, register, Agent, Mode};
use support::{on_both, ServerProcess};

#[test]
fn listening_agents_register_answer_health_checks_and_refuse_strangers() {
    on_both("agent_listening", |data_dir, db| {
        let server = ServerProcess::start(&data_dir, db.as_deref(), &[]);
        api(
            &server,
            "POST",
            "/api/environments",
            Some(json!({"Name": "Dev"})),
        );
        let server_thumbprint = api(&server, "GET", "/api/agents/server-thumbprint", None)
            ["Thumbprint"]
            .as_str()
            .unwrap()
            .to_owned();
        let tmp = tempfile::tempdir().unwrap();

        // An agent registered with the server and trusting it is healthy.
        let dir_a = tmp.path().join("a");
        let registered = register(&server, &dir_a, "web-a", Mode::Listening(&["web"]));
        assert!(registered.status.success(), "{registered:?}");
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir_a.join("agent.json")).unwrap()).unwrap();
        assert_eq!(
            config["TrustedServerThumbprints"],
            json!([server_thumbprint])
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir_a.join("agent.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the agent's configuration is private");
        let agent_a = Agent::start(&dir_a);
        let machine = machine_named(&server, "web-a");
        let id = machine["Id"].as_str().unwrap().to_owned();
        let task = health(&server, &[&id]);
        assert_eq!(task["State"], "Success", "{task}");
        let m = api(&server, "GET", &format!("/api/machines/{id}"), None);
        assert_eq!(m["HealthStatus"], "Healthy", "{m}");
        assert_eq!(m["AgentVersion"], env!("CARGO_PKG_VERSION"));
        assert_eq!(m["OperatingSystem"], std::env::consts::OS);
        assert!(m["LastSeen"].is_string(), "{m}");
        let log = raw_log(&server, task["Id"].as_str().unwrap());
        assert!(log.contains("web-a is healthy"), "{log}");

        // Registering the same name again is the server's conflict, exit 1.
        let again = agent_cli(
            &server,
            &[
                "agent",
                "register",
                "--data-dir",
                dir_a.to_str().unwrap(),
                "--name",
                "web-a",
                "--environment",
                "Dev",
                "--listen",
                "127.0.0.1:1",
            ],
        );
        assert_eq!(again.status.code(), Some(1), "{again:?}");
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(
            stderr.contains("(409)") && stderr.contains("web-a"),
            "{stderr}"
        );

        // The machine pinned to another certificate: the agent is refused, and
        // the certificate it presented is named.
        let real = m["Endpoint"]["Thumbprint"].as_str().unwrap().to_owned();
        let wrong = "AB".repeat(32);
        let mut edited = m.clone();
        edited["Endpoint"]["Thumbprint"] = json!(wrong);
        api(&server, "PUT", &format!("/api/machines/{id}"), Some(edited));
        let task = health(&server, &[&id]);
        assert_eq!(task["State"], "Failed", "{task}");
        let m = api(&server, "GET", &format!("/api/machines/{id}"), None);
        assert_eq!(m["HealthStatus"], "Unavailable", "{m}");
        let summary = m["StatusSummary"].as_str().unwrap();
        assert!(
            summary.contains(&real) && summary.contains(&wrong),
            "{summary}"
        );
        let log = raw_log(&server, task["Id"].as_str().unwrap());
        assert!(log.contains("web-a is unavailable"), "{log}");

        // An agent that trusts another server refuses this one.
        let dir_b = tmp.path().join("b");
        let registered = register(&server, &dir_b, "web-b", Mode::Listening(&["web"]));
        assert!(registered.status.success(), "{registered:?}");
        let path = dir_b.join("agent.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["TrustedServerThumbprints"] = json!(["CD".repeat(32)]);
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        let agent_b = Agent::start(&dir_b);
        let id_b = machine_named(&server, "web-b")["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let task = health(&server, &[&id_b]);
        assert_eq!(task["State"], "Failed", "{task}");
        let m = api(&server, "GET", &format!("/api/machines/{id_b}"), None);
        assert_eq!(m["HealthStatus"], "Unavailable", "{m}");
        let summary = m["StatusSummary"].as_str().unwrap();
        assert!(
            summary.contains("refused") && summary.contains(&server_thumbprint),
            "{summary}"
        );

        // Both stop on SIGTERM.
        for agent in [agent_a, agent_b] {
            let status = agent.terminate().expect("the agent stops on SIGTERM");
            assert!(status.success(), "{status}");
        }
    });
}

#[test]
fn register_needs_an_identity_and_says_so() {
    let server = ServerProcess::sqlite();
    let tmp = tempfile::tempdir().unwrap();
    let out = agent_cli(
        &server,
        &[
            "agent",
            "register",
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "x",
            "--environment",
            "Dev",
            "--listen",
            "127.0.0.1:10933",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("agent init"),
        "{out:?}"
    );

    // Polling needs one too, and a worker needs a pool.
    let out = agent_cli(
        &server,
        &[
            "agent",
            "register",
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "x",
            "--environment",
            "Dev",
            "--polling",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("agent init"),
        "{out:?}"
    );
    let out = agent_cli(
        &server,
        &[
            "agent",
            "register",
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "x",
            "--worker",
            "--polling",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pool"),
        "{out:?}"
    );
}
