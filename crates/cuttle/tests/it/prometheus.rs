//! The shipped alert rules and Grafana dashboard against a real server, and
//! a real Prometheus scraping one: every metric they name is one the server
//! exposes (a renamed metric fails here), and a deployment moves the
//! counters Prometheus stores.

use crate::support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::observe::{deploy, get, metrics_url, try_call, wait_task};
use support::TestServer;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every `cuttle_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("cuttle_") {
        let word = &rest[at..];
        let end = word
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(word.len());
        // Only a whole word: not the tail of another name.
        let before = text.len() - rest.len() + at;
        let starts_word = text[..before]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if starts_word {
            names.insert(word[..end].to_owned());
        }
        rest = &word[end..];
    }
    names
}

/// The sample names an OpenMetrics text can hold: each family's own name,
/// and its counters' `_total`, its histograms' `_bucket`, `_sum`, `_count`.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

#[test]
fn the_rules_and_dashboard_name_only_metrics_the_server_exposes() {
    let rules = std::fs::read_to_string(deploy_dir().join("prometheus/cuttle-rules.yml")).unwrap();
    let dashboard_text = std::fs::read_to_string(deploy_dir().join("grafana/cuttle.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10));
    let mut exprs = String::new();
    collect_exprs(&dashboard, &mut exprs);

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None, &["--metrics-listen", "127.0.0.1:0"]);
    let task = deploy(&server.url, "Named", "echo named");
    wait_task(&server.url, &task);
    let (_, text) = get(&format!("{}/metrics", metrics_url(&server)), &[]);
    let exposed = exposed(&text);

    for (what, used) in [
        ("cuttle-rules.yml", metric_names(&rules)),
        ("cuttle.json", metric_names(&exprs)),
    ] {
        assert!(used.len() >= 10, "{what} names only {used:?}");
        let unknown: Vec<_> = used.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses metrics the server does not expose: {unknown:?}\nexposed: {exposed:?}"
        );
    }
}

fn collect_exprs(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => {
                        out.push_str(e);
                        out.push('\n');
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts Prometheus on loopback, scraping `target` every second with the
/// shipped rules; `None` when it is not installed.
fn start_prometheus(target: &str) -> Option<Prometheus> {
    let binary = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("prometheus"))
            .find(|p| p.is_file())
    });
    let Some(binary) = binary else {
        // Straight to stderr: a skip must be seen.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: prometheus is not installed (apt-get install prometheus)"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = deploy_dir().join("prometheus/cuttle-rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: cuttle\n    static_configs:\n      - targets: [\"{target}\"]\n",
        rules.canonicalize().unwrap().display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let child = Command::new(binary)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let prometheus = Prometheus {
        child,
        url: format!("http://{address}"),
        _dir: dir,
    };
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Some((status, _, _)) =
            try_call("GET", &format!("{}/-/ready", prometheus.url), &[], None)
        {
            if status.is_success() {
                return Some(prometheus);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("prometheus did not get ready at {}", prometheus.url);
}

/// The value of an instant query that answers one series, if it does.
fn query(prometheus: &Prometheus, promql: &str) -> Option<f64> {
    let url = format!(
        "{}/api/v1/query?query={}",
        prometheus.url,
        percent_encode(promql)
    );
    let (status, _, text) = try_call("GET", &url, &[], None)?;
    assert!(status.is_success(), "{promql}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn wait_for(prometheus: &Prometheus, promql: &str, wanted: f64) {
    let until = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < until {
        last = query(prometheus, promql);
        if last == Some(wanted) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{promql} was {last:?}, not {wanted}");
}

#[test]
fn prometheus_scrapes_a_deployment_with_the_shipped_rules_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None, &["--metrics-listen", "127.0.0.1:0"]);
    let target = metrics_url(&server)
        .trim_start_matches("http://")
        .to_owned();
    let Some(prometheus) = start_prometheus(&target) else {
        return;
    };
    wait_for(&prometheus, "up{job=\"cuttle\"}", 1.0);
    // Zero before any deployment: the series exists from the start.
    wait_for(
        &prometheus,
        "sum(cuttle_tasks_finished_total{task_type=\"Deploy\"})",
        0.0,
    );

    // A quote in a label value must be escaped, or every scrape fails.
    let task = deploy(&server.url, "Scraped \"quoted\"", "echo scraped");
    wait_task(&server.url, &task);
    wait_for(
        &prometheus,
        "sum(cuttle_deployments_total{project=\"Scraped \\\"quoted\\\"\",environment=\"Dev\",outcome=\"Success\"})",
        1.0,
    );
    wait_for(
        &prometheus,
        "sum(cuttle_tasks_finished_total{task_type=\"Deploy\",outcome=\"Success\"})",
        1.0,
    );

    // The shipped rules loaded and evaluate without error; none fires for
    // a healthy server (but the disk one may, on a host whose disk is full).
    let (_, _, text) = try_call(
        "GET",
        &format!("{}/api/v1/rules", prometheus.url),
        &[],
        None,
    )
    .expect("prometheus answers");
    let v: Value = serde_json::from_str(&text).unwrap();
    let rules: Vec<&Value> = v["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(rules.len(), 10, "{text}");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, text) = try_call(
            "GET",
            &format!("{}/api/v1/rules", prometheus.url),
            &[],
            None,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let rules: Vec<Value> = v["data"]["groups"][0]["rules"].as_array().unwrap().clone();
        let evaluated = rules.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        if evaluated {
            for r in &rules {
                assert_eq!(r["health"], "ok", "{r}");
                // The disk rule reads the host's real disk, which may be full.
                if r["name"] != "CuttleDiskNearlyFull" {
                    assert_eq!(r["state"], "inactive", "{r}");
                }
            }
            break;
        }
        assert!(
            Instant::now() < until,
            "the rules were not evaluated: {text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
