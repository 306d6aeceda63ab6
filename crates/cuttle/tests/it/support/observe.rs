//! Helpers for the tests of what operators watch: requests with the
//! administrator's key, a one-step deployment, the metrics listener's
//! address, and samples read from `/metrics` text.

use super::{TestServer, KEY};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One request; `None` when no connection could be made.
pub fn try_call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Option<(StatusCode, HeaderMap, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut req = client.request(method.parse().unwrap(), url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.ok()?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        Some((status, headers, resp.text().await.ok()?))
    })
}

pub fn api(url: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, _, text) = try_call(
        method,
        &format!("{url}{path}"),
        &[("X-Octopus-ApiKey", KEY)],
        body,
    )
    .expect("the server answers");
    assert!(status.is_success(), "{method} {path} → {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Creates environment Dev and a project whose one step runs `script`,
/// releases it and deploys it; returns the task id.
pub fn deploy(url: &str, project: &str, script: &str) -> String {
    let step = json!({"Name": "Run", "Actions": [{"ActionType": "Octopus.Script",
        "Properties": {"Octopus.Action.Script.ScriptBody": script, "Octopus.Action.Script.Syntax": "Bash"}}]});
    deploy_steps(url, project, vec![step], "0.0.1", false)
}

/// Creates environment Dev and a project of `steps`, releases it as
/// `version` and deploys it (with guided failure as asked); returns the
/// task id.
pub fn deploy_steps(
    url: &str,
    project: &str,
    steps: Vec<Value>,
    version: &str,
    guided: bool,
) -> String {
    if api(url, "GET", "/api/environments?name=Dev", None)["TotalResults"] == 0 {
        api(
            url,
            "POST",
            "/api/environments",
            Some(json!({"Name": "Dev"})),
        );
    }
    let p = api(
        url,
        "POST",
        "/api/projects",
        Some(
            json!({"Name": project, "ProjectGroupId": "ProjectGroups-1", "LifecycleId": "Lifecycles-1"}),
        ),
    );
    let id = p["Id"].as_str().unwrap();
    api(
        url,
        "PUT",
        &format!("/api/projects/{id}/deploymentprocesses"),
        Some(json!({"Version": 0, "Steps": steps})),
    );
    api(
        url,
        "POST",
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": project, "ReleaseVersion": version})),
    );
    let body = json!({"ProjectName": project, "ReleaseVersion": version,
        "EnvironmentNames": ["Dev"], "UseGuidedFailure": guided});
    let d = api(
        url,
        "POST",
        "/api/Spaces-1/deployments/create/untenanted/v1",
        Some(body),
    );
    d["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn wait_task(url: &str, id: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let t = api(url, "GET", &format!("/api/tasks/{id}"), None);
        if t["IsCompleted"] == true {
            return t;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("task {id} did not finish");
}

pub fn wait_state(url: &str, id: &str, state: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if api(url, "GET", &format!("/api/tasks/{id}"), None)["State"] == state {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("task {id} never reached {state}");
}

/// The address the server announced for its metrics listener.
pub fn metrics_url(server: &TestServer) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let output = server.recent_output();
        if let Some(line) = output
            .lines()
            .find(|l| l.contains("Metrics are served without a key at http://"))
        {
            let at = line.find("http://").unwrap();
            return line[at..].trim().trim_end_matches("/metrics").to_owned();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no metrics address announced:\n{}", server.recent_output());
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let (status, _, text) = try_call("GET", url, headers, None).expect("the server answers");
    (status, text)
}

/// The value of the one sample `series` (name and labels as written).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
