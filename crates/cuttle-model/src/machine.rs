//! Machines that run deployment work: deployment targets (`Machines-N`, in
//! environments, with roles) and workers (`Workers-N`, in worker pools), both
//! running the Cuttle agent and reached through an [`Endpoint`].

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// How the server and an agent reach each other.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum CommunicationStyle {
    /// Listening agent: the server dials `https://host:port/`.
    TentaclePassive,
    /// Polling agent: the agent dials the server and asks for work under
    /// `poll://<subscription id>/`.
    TentacleActive,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum HealthStatus {
    #[default]
    Unknown,
    Healthy,
    HasWarnings,
    Unhealthy,
    Unavailable,
}

impl HealthStatus {
    pub const ALL: [HealthStatus; 5] = [
        Self::Unknown,
        Self::Healthy,
        Self::HasWarnings,
        Self::Unhealthy,
        Self::Unavailable,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| format!("{s:?}").eq_ignore_ascii_case(text))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Endpoint {
    pub id: Option<String>,
    /// `None` only in a request that left it out, which validation refuses.
    pub communication_style: Option<CommunicationStyle>,
    pub uri: String,
    /// The SHA-256 thumbprint of the agent's certificate, upper-case hex.
    pub thumbprint: String,
}

impl Endpoint {
    /// Checks the endpoint and puts its uri and thumbprint in canonical form;
    /// returns each problem found.
    pub fn normalise(&mut self) -> Vec<String> {
        let mut errors = vec![];
        match normalise_thumbprint(&self.thumbprint) {
            Ok(t) => self.thumbprint = t,
            Err(e) => errors.push(e),
        }
        match self.communication_style {
            None => errors.push(
                "Endpoint.CommunicationStyle is required: TentaclePassive (listening) or TentacleActive (polling)"
                    .into(),
            ),
            Some(style) => match normalise_uri(style, &self.uri) {
                Ok(u) => self.uri = u,
                Err(e) => errors.push(e),
            },
        }
        errors
    }
}

/// A certificate thumbprint: 64 hex digits (SHA-256), returned upper-case.
/// Octopus uses 40-digit SHA-1 thumbprints; Cuttle pins SHA-256.
pub fn normalise_thumbprint(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("Endpoint.Thumbprint is required: the SHA-256 thumbprint of the agent's certificate (64 hex digits)".into());
    }
    if t.len() != 64 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "Endpoint.Thumbprint '{t}' is not a SHA-256 thumbprint: expected 64 hex digits"
        ));
    }
    Ok(t.to_ascii_uppercase())
}

/// Checks a uri against its communication style and returns it with a
/// trailing slash: `https://host:port/` for listening agents,
/// `poll://<subscription id>/` for polling ones.
pub fn normalise_uri(style: CommunicationStyle, uri: &str) -> Result<String, String> {
    let uri = uri.trim();
    let (scheme, example) = match style {
        CommunicationStyle::TentaclePassive => ("https://", "https://host:10933/"),
        CommunicationStyle::TentacleActive => ("poll://", "poll://abcdefghijklmnopqrst/"),
    };
    let bad = || {
        format!("Endpoint.Uri '{uri}' is not valid for {style:?}: expected a uri like {example}")
    };
    let rest = uri
        .get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .map(|_| &uri[scheme.len()..])
        .ok_or_else(bad)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains('/') {
        return Err(bad());
    }
    let valid = match style {
        CommunicationStyle::TentaclePassive => valid_host_port(authority),
        CommunicationStyle::TentacleActive => authority.chars().all(|c| c.is_ascii_alphanumeric()),
    };
    if valid {
        Ok(format!("{scheme}{authority}/"))
    } else {
        Err(bad())
    }
}

/// `host`, `host:port` or `[v6]:port`, with a port in 1..=65535.
fn valid_host_port(authority: &str) -> bool {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest))
                if !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit() || c == ':') =>
            {
                match rest {
                    "" => return true,
                    p => (h, p.strip_prefix(':')),
                }
            }
            _ => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && (authority.starts_with('[')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    let port_ok = match port {
        None => true,
        Some(p) => p.parse::<u16>().is_ok_and(|n| n > 0),
    };
    host_ok && port_ok
}

/// Declares a machine resource: the given fields plus what every agent-run
/// machine has. Plain fields (not `#[serde(flatten)]`) so request bodies still
/// bind case-insensitively.
macro_rules! agent_machine {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
        #[serde(rename_all = "PascalCase", default)]
        pub struct $name {
            pub id: String,
            pub space_id: String,
            pub name: String,
            $($(#[$fdoc])* pub $field: $ty,)*
            pub is_disabled: bool,
            pub machine_policy_id: String,
            pub endpoint: Endpoint,
            // What follows is owned by the server (registration and health
            // checks), never taken from requests.
            pub health_status: HealthStatus,
            pub status_summary: String,
            pub has_latest_calamari: bool,
            /// Mirrors `Endpoint.Thumbprint`, as Octopus resources do.
            pub thumbprint: String,
            /// Mirrors `Endpoint.Uri`.
            pub uri: String,
            pub is_in_process: bool,
            pub operating_system: String,
            pub shell_name: String,
            pub shell_version: String,
            pub architecture: String,
            /// The version the agent reported at its last health check.
            pub agent_version: String,
            pub last_seen: Option<Timestamp>,
        }

        impl $name {
            /// Keeps the server-owned status of `existing` (or a fresh one
            /// for a new machine), whatever the request said, and mirrors the
            /// endpoint's uri and thumbprint at the top level.
            pub fn take_status_from(&mut self, existing: Option<&$name>) {
                let fresh = $name {
                    status_summary: "This machine has not been health-checked yet.".into(),
                    ..Default::default()
                };
                let from = existing.unwrap_or(&fresh);
                self.health_status = from.health_status;
                self.status_summary = from.status_summary.clone();
                self.has_latest_calamari = from.has_latest_calamari;
                self.is_in_process = from.is_in_process;
                self.operating_system = from.operating_system.clone();
                self.shell_name = from.shell_name.clone();
                self.shell_version = from.shell_version.clone();
                self.architecture = from.architecture.clone();
                self.agent_version = from.agent_version.clone();
                self.last_seen = from.last_seen;
                self.thumbprint = self.endpoint.thumbprint.clone();
                self.uri = self.endpoint.uri.clone();
            }
        }

        impl AgentMachine for $name {
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn endpoint(&self) -> &Endpoint {
                &self.endpoint
            }
            fn machine_policy_id(&self) -> &str {
                &self.machine_policy_id
            }
            fn health_status(&self) -> HealthStatus {
                self.health_status
            }
            fn record_health(&mut self, check: &HealthCheck) {
                self.health_status = check.status;
                self.status_summary = check.summary.clone();
                if let Some(agent) = &check.agent {
                    self.operating_system = agent.operating_system.clone();
                    self.architecture = agent.architecture.clone();
                    self.agent_version = agent.version.clone();
                    self.last_seen = Some(agent.seen);
                }
            }
        }
    };
}

/// What deployment targets and workers share: both run the Cuttle agent.
pub trait AgentMachine {
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn endpoint(&self) -> &Endpoint;
    fn machine_policy_id(&self) -> &str;
    fn health_status(&self) -> HealthStatus;
    fn record_health(&mut self, check: &HealthCheck);
}

/// The result of one health check of a machine.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    pub status: HealthStatus,
    pub summary: String,
    /// What the agent said about itself, when it answered.
    pub agent: Option<AgentFacts>,
}

#[derive(Clone, Debug)]
pub struct AgentFacts {
    pub operating_system: String,
    pub architecture: String,
    pub version: String,
    pub seen: Timestamp,
}

agent_machine!(
    /// A deployment target: a machine in one or more environments, with roles
    /// that steps select it by.
    Machine {
        roles: Vec<String>,
        environment_ids: Vec<String>,
    }
);

agent_machine!(
    /// A worker: a machine in worker pools that runs steps not tied to a
    /// deployment target.
    Worker {
        worker_pool_ids: Vec<String>,
    }
);

/// A named set of workers that steps run on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkerPool {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    /// Exactly one pool per space is the default.
    pub is_default: bool,
    pub sort_order: i64,
    pub worker_pool_type: String,
    pub can_add_workers: bool,
}

pub const DEFAULT_WORKER_POOL_NAME: &str = "Default Worker Pool";
/// The only kind of pool Cuttle has: workers registered by hand.
pub const STATIC_WORKER_POOL: &str = "StaticWorkerPool";

impl Default for WorkerPool {
    fn default() -> Self {
        WorkerPool {
            id: String::new(),
            space_id: String::new(),
            name: String::new(),
            slug: String::new(),
            description: String::new(),
            is_default: false,
            sort_order: 0,
            worker_pool_type: STATIC_WORKER_POOL.into(),
            can_add_workers: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommunicationStyle::*;

    #[test]
    fn thumbprints() {
        let t = "ab".repeat(32);
        assert_eq!(normalise_thumbprint(&t).unwrap(), "AB".repeat(32));
        assert!(normalise_thumbprint("").is_err());
        // A SHA-1 thumbprint as Octopus uses is too short.
        assert!(normalise_thumbprint(&"a".repeat(40)).is_err());
        assert!(normalise_thumbprint(&"g".repeat(64)).is_err());
    }

    #[test]
    fn listening_uris() {
        assert_eq!(
            normalise_uri(TentaclePassive, "https://web01:10933").unwrap(),
            "https://web01:10933/"
        );
        assert_eq!(
            normalise_uri(TentaclePassive, "https://10.0.0.1:10933/").unwrap(),
            "https://10.0.0.1:10933/"
        );
        assert!(normalise_uri(TentaclePassive, "https://[::1]:10933/").is_ok());
        assert!(normalise_uri(TentaclePassive, "http://web01:10933/").is_err());
        assert!(normalise_uri(TentaclePassive, "https://web01:99999/").is_err());
        assert!(normalise_uri(TentaclePassive, "https://web01:10933/x/").is_err());
        assert!(normalise_uri(TentaclePassive, "https:///").is_err());
        assert!(normalise_uri(TentaclePassive, "poll://abc/").is_err());
    }

    #[test]
    fn polling_uris() {
        assert_eq!(
            normalise_uri(TentacleActive, "poll://abcdef").unwrap(),
            "poll://abcdef/"
        );
        assert!(normalise_uri(TentacleActive, "https://web01:10933/").is_err());
        assert!(normalise_uri(TentacleActive, "poll://a b/").is_err());
        assert!(normalise_uri(TentacleActive, "poll://").is_err());
    }

    #[test]
    fn health_status_names() {
        assert_eq!(
            HealthStatus::parse("hasWarnings"),
            Some(HealthStatus::HasWarnings)
        );
        assert_eq!(HealthStatus::parse("Sick"), None);
    }

    #[test]
    fn status_is_the_servers() {
        let mut sent = Machine {
            health_status: HealthStatus::Healthy,
            agent_version: "9.9.9".into(),
            endpoint: Endpoint {
                thumbprint: "AB".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        sent.take_status_from(None);
        assert_eq!(sent.health_status, HealthStatus::Unknown);
        assert_eq!(sent.agent_version, "");
        assert_eq!(sent.thumbprint, "AB");
        let v = serde_json::to_value(&sent).unwrap();
        assert_eq!(v["HealthStatus"], "Unknown");
        assert!(v["Roles"].is_array());
    }
}
