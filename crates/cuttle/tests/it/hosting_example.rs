//! Cuttle runs Cuttle: examples/hosting/ loaded into a `cuttle server` (the
//! operator's) with its own script, and its deployment run against a real
//! `cuttle host`: it provisions a customer instance through the control
//! plane, checks that the instance answers, and leases it a hosted worker.

use crate::support;

use reqwest::StatusCode;
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use support::agents::{api, raw_log, wait_task};
use support::host::{TestHost, DOMAIN, TOKEN};
use support::TestServer;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hosting");

fn load(ops: &TestServer, host: &TestHost, customer: &str) -> std::process::Output {
    Command::new(format!("{EXAMPLE}/load.sh"))
        .env("CUTTLE_SERVER", &ops.url)
        .env("CUTTLE_API_KEY", ops.api_key())
        .env("CUTTLE_HOST_CONTROL_TOKEN", TOKEN)
        .env("HOSTING_CONTROL_URL", &host.control)
        .env("HOSTING_PUBLIC_URL", &host.url)
        .env("HOSTING_DOMAIN", DOMAIN)
        .env("CUSTOMER", customer)
        .output()
        .expect("run examples/hosting/load.sh")
}

fn deploy(ops: &TestServer) -> (serde_json::Value, String) {
    let d = api(
        ops,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(
            json!({"ProjectName": "Customer instances", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Hosting"]}),
        ),
    );
    let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .expect("a deployment task")
        .to_owned();
    let done = wait_task(ops, &task, Duration::from_secs(90));
    (done, raw_log(ops, &task))
}

#[test]
fn the_hosting_example_provisions_an_instance_that_answers_with_a_hosted_worker() {
    let host_dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(host_dir.path(), None);
    let ops = TestServer::sqlite();

    let loaded = load(&ops, &host, "acme");
    let said = String::from_utf8_lossy(&loaded.stdout).into_owned()
        + &String::from_utf8_lossy(&loaded.stderr);
    assert!(loaded.status.success(), "load.sh failed: {said}");
    assert!(said.contains("Loaded 'Customer instances'"), "{said}");

    let (done, log) = deploy(&ops);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert!(
        log.contains("Created the instance acme at http://acme.cuttle.test"),
        "{log}"
    );
    assert!(
        log.contains("acme.cuttle.test answers: 200 from /api"),
        "{log}"
    );
    assert!(
        log.contains("Leased the hosted worker hosted-worker-"),
        "{log}"
    );
    // The control-plane token is a sensitive variable: never in the log.
    assert!(!log.contains(TOKEN), "{log}");

    // The host agrees: the instance runs, answers, and has a worker.
    let (status, view) = host.control("GET", "/instances/acme", None);
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["State"], "Awake", "{view}");
    let (status, _, _) = host.to("acme", "GET", "/api", &[], None);
    assert_eq!(status, StatusCode::OK);
    let (_, workers) = host.control("GET", "/hosted-workers", None);
    assert_eq!(workers["Items"][0]["Instance"], "acme", "{workers}");
    assert!(
        workers["Items"][0]["WorkerId"]
            .as_str()
            .is_some_and(|id| id.starts_with("Workers-")),
        "{workers}"
    );

    // Deployed again, it keeps the instance as it is and keeps its worker.
    let (done, log) = deploy(&ops);
    assert_eq!(done["State"], "Success", "{done}\n{log}");
    assert!(log.contains("The instance acme exists already"), "{log}");
    let (_, workers) = host.control("GET", "/hosted-workers", None);
    assert_eq!(
        workers["Items"].as_array().map(Vec::len),
        Some(1),
        "{workers}"
    );

    // A control plane that refuses (a wrong token) fails the deployment
    // at its first step, with the answer in the log.
    let ops2 = TestServer::sqlite();
    let loaded = Command::new(format!("{EXAMPLE}/load.sh"))
        .env("CUTTLE_SERVER", &ops2.url)
        .env("CUTTLE_API_KEY", ops2.api_key())
        .env("CUTTLE_HOST_CONTROL_TOKEN", "not-the-token-not-the-token")
        .env("HOSTING_CONTROL_URL", &host.control)
        .env("HOSTING_PUBLIC_URL", &host.url)
        .env("HOSTING_DOMAIN", DOMAIN)
        .env("CUSTOMER", "globex")
        .output()
        .unwrap();
    assert!(loaded.status.success());
    let (done, log) = deploy(&ops2);
    assert_eq!(done["State"], "Failed", "{done}\n{log}");
    assert!(log.contains("The control plane answered 401"), "{log}");
    let (status, _) = host.control("GET", "/instances/globex", None);
    assert_eq!(status, StatusCode::NOT_FOUND);
}
