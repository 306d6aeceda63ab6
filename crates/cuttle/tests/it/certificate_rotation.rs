//! Rotating the server's certificate as operators do it, with real processes
//! on 127.0.0.1: `cuttle server certificate new`, `cuttle agent trust
//! --add-next` on the agents that should survive the switch, `cuttle server
//! certificate use-next` with the server stopped, and `trust --remove` of the
//! old thumbprint afterwards. An agent left out refuses the new certificate.

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;
use support::agents::{agent_cli, api, health, machine_named, register, Agent, Mode};
use support::{ServerProcess, BIN};

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cuttle server certificate …` on a data directory; no server needed.
fn certificate(data_dir: &Path, verb: &str) -> Output {
    std::process::Command::new(BIN)
        .args(["server", "certificate", verb, "--data-dir"])
        .arg(data_dir)
        .env_remove("CUTTLE_DATA_DIR")
        .output()
        .expect("run cuttle")
}

fn trust(server: &ServerProcess, dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["agent", "trust", "--data-dir", dir.to_str().unwrap()];
    all.extend(args);
    agent_cli(server, &all)
}

fn trusted(dir: &Path) -> Value {
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.join("agent.json")).unwrap()).unwrap();
    config["TrustedServerThumbprints"].clone()
}

fn thumbprints(server: &ServerProcess) -> Value {
    api(server, "GET", "/api/agents/server-thumbprint", None)
}

fn health_of(server: &ServerProcess, id: &str) -> Value {
    health(server, &[id]);
    api(server, "GET", &format!("/api/machines/{id}"), None)
}

#[test]
fn the_server_certificate_rotates_with_overlapping_trust() {
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));

    let server = ServerProcess::start(data.path(), None, &[]);
    api(
        &server,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    let published = thumbprints(&server);
    let old = published["Thumbprint"].as_str().unwrap().to_owned();
    assert_eq!(published["NextThumbprint"], Value::Null, "{published}");
    for (dir, name) in [(&dir_a, "web-a"), (&dir_b, "web-b")] {
        ok(&register(&server, dir, name, Mode::Listening(&["web"])));
    }
    let id_a = machine_named(&server, "web-a")["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id_b = machine_named(&server, "web-b")["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent_a = Agent::start(&dir_a);
    let agent_b = Agent::start(&dir_b);
    for id in [&id_a, &id_b] {
        assert_eq!(health_of(&server, id)["HealthStatus"], "Healthy");
    }

    // Asking for a next certificate the server does not publish says how to
    // make one, and changes nothing.
    let out = trust(&server, &dir_a, &["--add-next"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate new"), "{stderr}");
    assert_eq!(trusted(&dir_a), json!([old]));

    // The next certificate, made while the server runs, is published from
    // its next start; the server still presents the current one.
    let out = ok(&certificate(data.path(), "new"));
    let certs = data.path().join("certs");
    let next =
        cuttle_protocol::Identity::load_slot(data.path(), cuttle_protocol::identity::Slot::Next)
            .unwrap()
            .thumbprint()
            .to_string();
    assert!(out.contains(&next), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs.join("next.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the next key is private");
    let again = certificate(data.path(), "new");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{again:?}"
    );
    drop(server);
    let server = ServerProcess::start(data.path(), None, &[]);
    let published = thumbprints(&server);
    assert_eq!(published["Thumbprint"], old.as_str(), "{published}");
    assert_eq!(published["NextThumbprint"], next.as_str(), "{published}");

    // Only A is told to trust it; the server restarted on another port, so
    // --server (CUTTLE_SERVER here) names it.
    let out = ok(&trust(&server, &dir_a, &["--add-next"]));
    assert!(out.contains(&old) && out.contains(&next), "{out}");
    assert!(out.contains("next start"), "{out}");
    assert_eq!(trusted(&dir_a), json!([old, next]));
    let mode = std::fs::metadata(dir_a.join("agent.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "agent.json stays private");
    let again = ok(&trust(&server, &dir_a, &["--add", &next.to_lowercase()]));
    assert!(again.contains("already trusted"), "{again}");
    assert_eq!(trusted(&dir_a), json!([old, next]));
    assert!(agent_a.terminate().is_some());
    let agent_a = Agent::start(&dir_a);
    for id in [&id_a, &id_b] {
        assert_eq!(health_of(&server, id)["HealthStatus"], "Healthy");
    }

    // The switch, with the server stopped.
    drop(server);
    let out = ok(&certificate(data.path(), "use-next"));
    assert!(out.contains(&old) && out.contains(&next), "{out}");
    assert!(certs.join("previous.crt").exists() && certs.join("previous.key").exists());
    assert!(!certs.join("next.crt").exists() && !certs.join("next.key").exists());
    let server = ServerProcess::start(data.path(), None, &[]);
    let published = thumbprints(&server);
    assert_eq!(published["Thumbprint"], next.as_str(), "{published}");
    assert_eq!(published["NextThumbprint"], Value::Null, "{published}");

    // A trusts the new certificate; B refuses it, and the reason names it.
    assert_eq!(health_of(&server, &id_a)["HealthStatus"], "Healthy");
    let b = health_of(&server, &id_b);
    assert_eq!(b["HealthStatus"], "Unavailable", "{b}");
    let summary = b["StatusSummary"].as_str().unwrap();
    assert!(
        summary.contains("refused") && summary.contains(&next),
        "{summary}"
    );

    // --add-next on B now points at the switch instead of adding a stranger.
    let out = trust(&server, &dir_b, &["--add-next"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--add {next}")),
        "names what to trust: {stderr}"
    );
    // B catches up without a restart: SIGHUP reloads agent.json.
    ok(&trust(&server, &dir_b, &["--add", &next]));
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &agent_b.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let b = health_of(&server, &id_b);
        if b["HealthStatus"] == "Healthy" {
            break;
        }
        assert!(std::time::Instant::now() < until, "{b}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The old thumbprint goes; the last one stays.
    let out = ok(&trust(&server, &dir_a, &["--remove", &old]));
    assert!(out.contains(&next) && out.contains("Removed"), "{out}");
    assert_eq!(trusted(&dir_a), json!([next]));
    let out = trust(&server, &dir_a, &["--remove", &next]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("only server certificate this agent trusts"),
        "{stderr}"
    );
    assert_eq!(trusted(&dir_a), json!([next]));
    assert_eq!(health_of(&server, &id_a)["HealthStatus"], "Healthy");

    for agent in [agent_a, agent_b] {
        let status = agent.terminate().expect("the agent stops on SIGTERM");
        assert!(status.success(), "{status}");
    }
}

#[test]
fn trust_refuses_what_is_not_a_thumbprint_and_leaves_agent_json_alone() {
    let server = ServerProcess::sqlite();
    api(
        &server,
        "POST",
        "/api/environments",
        Some(json!({"Name": "Dev"})),
    );
    let tmp = tempfile::tempdir().unwrap();
    ok(&register(
        &server,
        tmp.path(),
        "web",
        Mode::Listening(&["web"]),
    ));
    let path = tmp.path().join("agent.json");
    let before = std::fs::read(&path).unwrap();

    for bad in ["not-a-thumbprint", &"AB".repeat(20), &"ZZ".repeat(32)] {
        let out = trust(&server, tmp.path(), &["--add", bad]);
        assert_ne!(out.status.code(), Some(0), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is not a certificate thumbprint") && stderr.contains("64 hexadecimal"),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "agent.json unchanged"
        );
    }

    // One change at a time, and at least one.
    let out = trust(&server, tmp.path(), &[]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let out = trust(
        &server,
        tmp.path(),
        &["--add", &"AB".repeat(32), "--remove", &"CD".repeat(32)],
    );
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "agent.json unchanged"
    );

    // Without a registration there is nothing to change, and it says why.
    let empty = tempfile::tempdir().unwrap();
    let out = trust(&server, empty.path(), &["--add", &"AB".repeat(32)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("agent register"),
        "{out:?}"
    );
}
