//! Cuttle's Prometheus metrics. One [`Metrics`] belongs to one installation
//! (it lives in its `Instance`) and is handed to the layers that count: the
//! task runner, the agent connections, the HTTP layer. Nothing here is
//! global, so a process hosting many installations keeps their figures apart.
//!
//! # Layout
//! - [`Metrics`]: the registry and every family in it, by name.
//! - [`Snapshot`]: the figures read from the database at scrape time
//!   (queue depth, agents by health, pool use, disk), set in one go.
//!
//! Label values are bounded: task types, outcomes, route templates, status
//! codes, health statuses, and project and environment *names* (a few per
//! installation, unlike ids of deployments or tasks, which never appear).
//!
//! Labels every series carries (the server node's name, say) are given to
//! [`Metrics::with_labels`]; they are fixed for the registry's life.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The media type of [`Metrics::encode`]'s text, which Prometheus asks for.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskType {
    pub task_type: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskOutcome {
    pub task_type: Text,
    pub outcome: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentOutcome {
    pub project: Text,
    pub environment: Text,
    pub outcome: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequest {
    pub method: Text,
    pub route: Text,
    pub status: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRoute {
    pub method: Text,
    pub route: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthStatus {
    pub status: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentCommand {
    pub command: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    pub source: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Certificate {
    pub owner: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfo {
    pub version: Text,
    pub database: Text,
}

/// A label value, escaped as the text format requires: prometheus-client
/// writes values as given, and one `"` (in a project's name, say) would
/// make every scrape fail.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Text(pub String);

impl Text {
    pub fn of(value: &str) -> Text {
        Text(value.to_owned())
    }
}

impl EncodeLabelValue for Text {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Task waits and runs: from 10 ms to about 11 hours.
fn task_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 11))
}

/// HTTP answers and agent round trips: from 1 ms to about 65 s.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 9))
}

/// Why labels for every series were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("'{0}' is not a label name: use letters, digits and underscores, not starting with a digit or two underscores")]
    BadName(String),
    #[error("the label '{0}' is one Cuttle's own series use; choose another name")]
    Reserved(String),
    #[error("the label '{0}' is given twice")]
    Repeated(String),
}

/// The label names the families below use themselves (and the histograms'
/// `le`): a label on every series must not repeat one.
const OWN_LABELS: [&str; 13] = [
    "task_type",
    "outcome",
    "project",
    "environment",
    "method",
    "route",
    "status",
    "command",
    "source",
    "owner",
    "version",
    "database",
    "le",
];

/// A label value as the text format writes it; prometheus-client writes
/// the values of a registry's own labels as given.
fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn check_labels(labels: &[(String, String)]) -> Result<(), LabelError> {
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in labels {
        let mut chars = name.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with("__");
        if !well_formed {
            return Err(LabelError::BadName(name.clone()));
        }
        if OWN_LABELS.contains(&name.as_str()) {
            return Err(LabelError::Reserved(name.clone()));
        }
        if !seen.insert(name.as_str()) {
            return Err(LabelError::Repeated(name.clone()));
        }
    }
    Ok(())
}

/// Every metric of one installation.
pub struct Metrics {
    registry: Registry,
    pub tasks_queued: Family<TaskType, Gauge>,
    pub tasks_running: Family<TaskType, Gauge>,
    /// Age of the oldest queued and oldest running task (0 when none):
    /// what shows a queue that does not drain or a task stuck past its timeout.
    pub oldest_queued_task_seconds: Gauge,
    pub oldest_running_task_seconds: Gauge,
    /// The timeout of a script step that sets none, to compare the above with.
    pub task_default_timeout_seconds: Gauge,
    pub tasks_finished: Family<TaskOutcome, Counter>,
    pub task_queue_wait: Histograms<TaskType>,
    pub task_duration: Histograms<TaskOutcome>,
    pub deployments: Family<DeploymentOutcome, Counter>,
    pub http_requests: Family<HttpRequest, Counter>,
    pub http_request_duration: Histograms<HttpRoute>,
    pub agents: Family<HealthStatus, Gauge>,
    pub agent_command_duration: Histograms<AgentCommand>,
    pub agent_command_errors: Family<AgentCommand, Counter>,
    pub database_connections: Gauge,
    pub database_idle_connections: Gauge,
    pub database_errors: Family<Source, Counter>,
    pub package_feed_bytes: Gauge,
    pub data_dir_free_bytes: Gauge,
    pub data_dir_size_bytes: Gauge,
    /// This node's clock minus the database's, at its last heartbeat.
    pub node_clock_skew_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub certificate_expiry: Family<Certificate, Gauge>,
    pub build_info: Family<BuildInfo, Gauge>,
}

impl Metrics {
    /// A registry with every family, and the build information set.
    pub fn new(version: &str, database: &str) -> Metrics {
        Self::build(version, database, Registry::default())
    }

    /// As [`Metrics::new`], with `labels` (name, value) on every series:
    /// what tells apart the nodes of one installation, or the installations
    /// of one process.
    pub fn with_labels(
        version: &str,
        database: &str,
        labels: &[(String, String)],
    ) -> Result<Metrics, LabelError> {
        check_labels(labels)?;
        let registry = Registry::with_labels(
            labels
                .iter()
                .map(|(k, v)| (k.clone().into(), escaped(v).into())),
        );
        Ok(Self::build(version, database, registry))
    }

    fn build(version: &str, database: &str, mut registry: Registry) -> Metrics {
        let m = Metrics {
            tasks_queued: Default::default(),
            tasks_running: Default::default(),
            oldest_queued_task_seconds: Default::default(),
            oldest_running_task_seconds: Default::default(),
            task_default_timeout_seconds: Default::default(),
            tasks_finished: Default::default(),
            task_queue_wait: Family::new_with_constructor(task_buckets),
            task_duration: Family::new_with_constructor(task_buckets),
            deployments: Default::default(),
            http_requests: Default::default(),
            http_request_duration: Family::new_with_constructor(request_buckets),
            agents: Default::default(),
            agent_command_duration: Family::new_with_constructor(request_buckets),
            agent_command_errors: Default::default(),
            database_connections: Default::default(),
            database_idle_connections: Default::default(),
            database_errors: Default::default(),
            package_feed_bytes: Default::default(),
            data_dir_free_bytes: Default::default(),
            data_dir_size_bytes: Default::default(),
            node_clock_skew_seconds: Default::default(),
            certificate_expiry: Default::default(),
            build_info: Default::default(),
            registry: Registry::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        let r = &mut registry;
        r.register(
            "cuttle_tasks_queued",
            "Tasks waiting to run, by task type",
            m.tasks_queued.clone(),
        );
        r.register(
            "cuttle_tasks_running",
            "Tasks running, by task type",
            m.tasks_running.clone(),
        );
        r.register(
            "cuttle_oldest_queued_task_seconds",
            "How long the oldest queued task has waited (0 when none waits)",
            m.oldest_queued_task_seconds.clone(),
        );
        r.register(
            "cuttle_oldest_running_task_seconds",
            "How long the longest-running task has run (0 when none runs)",
            m.oldest_running_task_seconds.clone(),
        );
        r.register(
            "cuttle_task_default_timeout_seconds",
            "The timeout of a script step that sets none",
            m.task_default_timeout_seconds.clone(),
        );
        r.register(
            "cuttle_tasks_finished",
            "Tasks this server finished, by task type and outcome",
            m.tasks_finished.clone(),
        );
        r.register(
            "cuttle_task_queue_wait_seconds",
            "From a task's queueing to its start on this server",
            m.task_queue_wait.clone(),
        );
        r.register(
            "cuttle_task_duration_seconds",
            "From a task's start to its end on this server",
            m.task_duration.clone(),
        );
        r.register(
            "cuttle_deployments",
            "Deployments this server finished, by project, environment and outcome",
            m.deployments.clone(),
        );
        r.register(
            "cuttle_http_requests",
            "HTTP requests answered, by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "cuttle_http_request_duration_seconds",
            "Time to answer an HTTP request (to its headers), by method and route template",
            m.http_request_duration.clone(),
        );
        r.register(
            "cuttle_agents",
            "Deployment targets and workers, by health status",
            m.agents.clone(),
        );
        r.register(
            "cuttle_agent_command_duration_seconds",
            "Round trips of commands to agents, by command",
            m.agent_command_duration.clone(),
        );
        r.register(
            "cuttle_agent_command_errors",
            "Commands to agents that failed (no answer, or an error), by command",
            m.agent_command_errors.clone(),
        );
        r.register(
            "cuttle_database_connections",
            "Open connections in the database pool",
            m.database_connections.clone(),
        );
        r.register(
            "cuttle_database_idle_connections",
            "Idle connections in the database pool",
            m.database_idle_connections.clone(),
        );
        r.register(
            "cuttle_database_errors",
            "Database operations that failed, by where they were made",
            m.database_errors.clone(),
        );
        r.register(
            "cuttle_package_feed_bytes",
            "Bytes of package files in the built-in feed",
            m.package_feed_bytes.clone(),
        );
        r.register(
            "cuttle_data_dir_free_bytes",
            "Bytes free to this server on the data directory's file system",
            m.data_dir_free_bytes.clone(),
        );
        r.register(
            "cuttle_data_dir_size_bytes",
            "Size of the data directory's file system",
            m.data_dir_size_bytes.clone(),
        );
        r.register(
            "cuttle_node_clock_skew_seconds",
            "This server node's clock minus the database's, at its last heartbeat",
            m.node_clock_skew_seconds.clone(),
        );
        r.register(
            "cuttle_certificate_expiry_timestamp_seconds",
            "When a certificate stops being valid (Unix time), by whose it is: \
             the server's, or the earliest of its agents'",
            m.certificate_expiry.clone(),
        );
        r.register(
            "cuttle_build_info",
            "Always 1; its labels name this server's version and database",
            m.build_info.clone(),
        );
        m.build_info
            .get_or_create(&BuildInfo {
                version: Text::of(version),
                database: Text::of(database),
            })
            .set(1);
        Metrics { registry, ..m }
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Exports zero for label values known in advance (task types and
    /// outcomes, agent commands, where database errors come from), so that
    /// rates and ratios over them exist before the first event.
    pub fn expect(
        &self,
        task_types: &[&str],
        outcomes: &[&str],
        agent_commands: &[&str],
        error_sources: &[&str],
    ) {
        for task_type in task_types {
            for outcome in outcomes {
                let labels = TaskOutcome {
                    task_type: Text::of(task_type),
                    outcome: Text::of(outcome),
                };
                drop(self.tasks_finished.get_or_create(&labels));
            }
            let labels = TaskType {
                task_type: Text::of(task_type),
            };
            drop(self.task_queue_wait.get_or_create(&labels));
        }
        for command in agent_commands {
            let labels = AgentCommand {
                command: Text::of(command),
            };
            drop(self.agent_command_duration.get_or_create(&labels));
            drop(self.agent_command_errors.get_or_create(&labels));
        }
        for source in error_sources {
            drop(self.database_errors.get_or_create(&Source {
                source: Text::of(source),
            }));
        }
    }

    /// A task has started after waiting `waited` in the queue.
    pub fn task_started(&self, task_type: &str, waited: Duration) {
        self.task_queue_wait
            .get_or_create(&TaskType {
                task_type: Text::of(task_type),
            })
            .observe(waited.as_secs_f64());
    }

    /// A task has ended with `outcome` (its final state) after `ran`.
    pub fn task_finished(&self, task_type: &str, outcome: &str, ran: Duration) {
        let labels = TaskOutcome {
            task_type: Text::of(task_type),
            outcome: Text::of(outcome),
        };
        self.tasks_finished.get_or_create(&labels).inc();
        self.task_duration
            .get_or_create(&labels)
            .observe(ran.as_secs_f64());
    }

    /// A deployment's task has ended with `outcome`.
    pub fn deployment_finished(&self, project: &str, environment: &str, outcome: &str) {
        self.deployments
            .get_or_create(&DeploymentOutcome {
                project: Text::of(project),
                environment: Text::of(environment),
                outcome: Text::of(outcome),
            })
            .inc();
    }

    /// An HTTP request was answered with `status` after `took`. `route` is
    /// the matched route's template, never the raw path.
    pub fn http_answered(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpRequest {
                method: Text::of(method),
                route: Text::of(route),
                status: Text(status.to_string()),
            })
            .inc();
        self.http_request_duration
            .get_or_create(&HttpRoute {
                method: Text::of(method),
                route: Text::of(route),
            })
            .observe(took.as_secs_f64());
    }

    /// A command to an agent was answered (or failed) after `took`.
    pub fn agent_command(&self, command: &str, took: Duration, failed: bool) {
        let labels = AgentCommand {
            command: Text::of(command),
        };
        self.agent_command_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.agent_command_errors.get_or_create(&labels).inc();
        }
    }

    /// A database operation failed; `source` says where (a bounded name).
    pub fn database_error(&self, source: &str) {
        self.database_errors
            .get_or_create(&Source {
                source: Text::of(source),
            })
            .inc();
    }

    /// Sets a certificate's expiry (Unix seconds).
    pub fn certificate_expires(&self, owner: &str, unix_seconds: i64) {
        self.certificate_expiry
            .get_or_create(&Certificate {
                owner: Text::of(owner),
            })
            .set(unix_seconds);
    }

    /// Sets the figures read at scrape time. Label sets absent from the
    /// snapshot are removed, so a task type nobody runs any more disappears
    /// rather than keeping its last count (the snapshot holds zeros for the
    /// values that should stay).
    pub fn apply(&self, snapshot: &Snapshot) {
        let set = |family: &Family<TaskType, Gauge>, counts: &[(String, i64)]| {
            family.clear();
            for (task_type, n) in counts {
                family
                    .get_or_create(&TaskType {
                        task_type: Text::of(task_type),
                    })
                    .set(*n);
            }
        };
        set(&self.tasks_queued, &snapshot.queued);
        set(&self.tasks_running, &snapshot.running);
        self.oldest_queued_task_seconds
            .set(snapshot.oldest_queued_seconds);
        self.oldest_running_task_seconds
            .set(snapshot.oldest_running_seconds);
        self.agents.clear();
        for (status, n) in &snapshot.agents {
            self.agents
                .get_or_create(&HealthStatus {
                    status: Text::of(status),
                })
                .set(*n);
        }
        self.database_connections.set(snapshot.database_connections);
        self.database_idle_connections
            .set(snapshot.database_idle_connections);
        self.package_feed_bytes.set(snapshot.package_feed_bytes);
        if let Some((free, size)) = snapshot.disk {
            self.data_dir_free_bytes.set(free);
            self.data_dir_size_bytes.set(size);
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What a scrape reads from the database and the file system.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// (task type, count)
    pub queued: Vec<(String, i64)>,
    pub running: Vec<(String, i64)>,
    pub oldest_queued_seconds: i64,
    pub oldest_running_seconds: i64,
    /// (health status, count)
    pub agents: Vec<(String, i64)>,
    pub database_connections: i64,
    pub database_idle_connections: i64,
    pub package_feed_bytes: i64,
    /// (free, size) of the data directory's file system, when it could be read.
    pub disk: Option<(i64, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions_and_values_are_encoded() {
        let m = Metrics::new("1.2.3", "SQLite");
        m.task_finished("Deploy", "Success", Duration::from_millis(1500));
        m.deployment_finished("Web \"shop\" \\ new\nline", "Production", "Success");
        m.http_answered(
            "GET",
            "/api/{space}/projects",
            200,
            Duration::from_millis(3),
        );
        m.apply(&Snapshot {
            queued: vec![("Deploy".into(), 2)],
            agents: vec![("Healthy".into(), 3)],
            ..Default::default()
        });
        let text = m.encode();
        for line in [
            "cuttle_build_info{version=\"1.2.3\",database=\"SQLite\"} 1",
            "cuttle_tasks_finished_total{task_type=\"Deploy\",outcome=\"Success\"} 1",
            "cuttle_task_duration_seconds_count{task_type=\"Deploy\",outcome=\"Success\"} 1",
            "cuttle_deployments_total{project=\"Web \\\"shop\\\" \\\\ new\\nline\",environment=\"Production\",outcome=\"Success\"} 1",
            "cuttle_http_requests_total{method=\"GET\",route=\"/api/{space}/projects\",status=\"200\"} 1",
            "cuttle_tasks_queued{task_type=\"Deploy\"} 2",
            "cuttle_agents{status=\"Healthy\"} 3",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        // A status gone since the last scrape is no longer reported.
        m.apply(&Snapshot::default());
        assert!(!m.encode().contains("cuttle_agents{"));
    }

    #[test]
    fn labels_given_at_the_start_are_on_every_series() {
        let labels = vec![("node".to_owned(), "web \"1\"".to_owned())];
        let m = Metrics::with_labels("1.2.3", "PostgreSQL", &labels).unwrap();
        m.task_finished("Deploy", "Success", Duration::from_millis(5));
        m.expect(&["Deploy"], &["Success"], &["Ping"], &["http"]);
        let text = m.encode();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(samples.len() > 20, "{text}");
        for line in samples {
            assert!(line.contains("node=\"web \\\"1\\\"\""), "{line}");
        }
        assert!(
            text.contains("cuttle_build_info{node=\"web \\\"1\\\"\",version=\"1.2.3\",database=\"PostgreSQL\"} 1"),
            "{text}"
        );
        // Without labels, none is added.
        assert!(!Metrics::new("1", "SQLite").encode().contains("node="));
    }

    #[test]
    fn labels_that_would_break_the_series_are_refused() {
        let one = |k: &str| vec![(k.to_owned(), "x".to_owned())];
        for (name, wanted) in [
            ("", LabelError::BadName(String::new())),
            ("9lives", LabelError::BadName("9lives".into())),
            ("a-b", LabelError::BadName("a-b".into())),
            ("__name__", LabelError::BadName("__name__".into())),
            ("status", LabelError::Reserved("status".into())),
            ("le", LabelError::Reserved("le".into())),
        ] {
            assert_eq!(
                Metrics::with_labels("1", "SQLite", &one(name)).err(),
                Some(wanted),
                "{name}"
            );
        }
        let twice = vec![
            ("node".to_owned(), "a".to_owned()),
            ("node".to_owned(), "b".to_owned()),
        ];
        assert_eq!(
            Metrics::with_labels("1", "SQLite", &twice).err(),
            Some(LabelError::Repeated("node".into()))
        );
    }
}
