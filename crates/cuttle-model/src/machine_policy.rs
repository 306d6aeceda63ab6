//! Machine policies: how often machines are health-checked and how patiently
//! the server talks to them. Durations are .NET `TimeSpan` strings
//! ("01:00:00", "1.00:00:00"), as Octopus sends them.

use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const DEFAULT_MACHINE_POLICY_NAME: &str = "Default Machine Policy";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachinePolicy {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub description: String,
    /// Exactly one policy per space is the default; machines registered
    /// without a policy get it.
    pub is_default: bool,
    pub machine_health_check_policy: MachineHealthCheckPolicy,
    pub machine_connectivity_policy: MachineConnectivityPolicy,
    pub connection_retry_sleep_interval: String,
    pub connection_retry_count_limit: i64,
    pub connection_retry_time_limit: String,
    pub connection_connect_timeout: String,
    pub polling_request_queue_timeout: String,
    /// How many versions of each package an agent keeps, extracted and in
    /// its file cache.
    pub machine_package_cache_retention_policy: PackageCacheRetention,
}

/// Octopus's package cache retention: `Default`, or `Quantities` with
/// `QuantityOfVersionsToKeep` versions of each package.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct PackageCacheRetention {
    pub strategy: String,
    pub quantity_of_versions_to_keep: i64,
    pub version_unit: String,
}

impl Default for PackageCacheRetention {
    fn default() -> Self {
        PackageCacheRetention {
            strategy: "Default".into(),
            quantity_of_versions_to_keep: DEFAULT_VERSIONS_KEPT,
            version_unit: "Items".into(),
        }
    }
}

/// What the `Default` strategy keeps of each package on an agent.
pub const DEFAULT_VERSIONS_KEPT: i64 = 5;

impl PackageCacheRetention {
    /// How many versions of a package an agent keeps (at least the one just
    /// deployed).
    pub fn versions_to_keep(&self) -> u32 {
        let n = if self.strategy.eq_ignore_ascii_case("Quantities") {
            self.quantity_of_versions_to_keep
        } else {
            DEFAULT_VERSIONS_KEPT
        };
        u32::try_from(n.max(1)).unwrap_or(u32::MAX)
    }
}

impl Default for MachinePolicy {
    fn default() -> Self {
        MachinePolicy {
            id: String::new(),
            space_id: String::new(),
            name: String::new(),
            description: String::new(),
            is_default: false,
            machine_health_check_policy: Default::default(),
            machine_connectivity_policy: Default::default(),
            connection_retry_sleep_interval: "00:00:01".into(),
            connection_retry_count_limit: 5,
            connection_retry_time_limit: "00:05:00".into(),
            connection_connect_timeout: "00:01:00".into(),
            polling_request_queue_timeout: "00:02:00".into(),
            machine_package_cache_retention_policy: PackageCacheRetention::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineHealthCheckPolicy {
    pub health_check_interval: String,
    pub health_check_type: HealthCheckType,
    pub bash_health_check_policy: ScriptPolicy,
    pub power_shell_health_check_policy: ScriptPolicy,
}

impl Default for MachineHealthCheckPolicy {
    fn default() -> Self {
        MachineHealthCheckPolicy {
            health_check_interval: "01:00:00".into(),
            health_check_type: HealthCheckType::RunScript,
            bash_health_check_policy: Default::default(),
            power_shell_health_check_policy: Default::default(),
        }
    }
}

/// An extra health-check script; `RunType` "Inline" with an empty body runs
/// only the built-in checks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScriptPolicy {
    pub run_type: String,
    pub script_body: String,
}

impl Default for ScriptPolicy {
    fn default() -> Self {
        ScriptPolicy {
            run_type: "Inline".into(),
            script_body: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum HealthCheckType {
    #[default]
    RunScript,
    OnlyConnectivity,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineConnectivityPolicy {
    pub machine_connectivity_behavior: MachineConnectivityBehavior,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum MachineConnectivityBehavior {
    #[default]
    ExpectedToBeOnline,
    MayBeOfflineAndCanBeSkipped,
}

impl MachinePolicy {
    /// Every problem with the policy's durations and limits.
    pub fn problems(&self) -> Vec<String> {
        let spans = [
            (
                "MachineHealthCheckPolicy.HealthCheckInterval",
                &self.machine_health_check_policy.health_check_interval,
            ),
            (
                "ConnectionRetrySleepInterval",
                &self.connection_retry_sleep_interval,
            ),
            (
                "ConnectionRetryTimeLimit",
                &self.connection_retry_time_limit,
            ),
            ("ConnectionConnectTimeout", &self.connection_connect_timeout),
            (
                "PollingRequestQueueTimeout",
                &self.polling_request_queue_timeout,
            ),
        ];
        let mut errors = vec![];
        for (field, text) in spans {
            match parse_timespan(text) {
                Ok(d) if d.is_zero() && field != "ConnectionRetrySleepInterval" => {
                    errors.push(format!("{field} must be longer than zero"))
                }
                Ok(_) => {}
                Err(e) => errors.push(format!("{field}: {e}")),
            }
        }
        if self.connection_retry_count_limit < 0 {
            errors.push("ConnectionRetryCountLimit cannot be negative".into());
        }
        let retention = &self.machine_package_cache_retention_policy;
        if !["Default", "Quantities"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&retention.strategy))
        {
            errors.push(format!(
                "MachinePackageCacheRetentionPolicy.Strategy '{}' is not Default or Quantities",
                retention.strategy
            ));
        } else if retention.strategy.eq_ignore_ascii_case("Quantities")
            && retention.quantity_of_versions_to_keep < 1
        {
            errors.push(
                "MachinePackageCacheRetentionPolicy.QuantityOfVersionsToKeep must be at least 1"
                    .into(),
            );
        }
        errors
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a duration: expected hh:mm:ss or d.hh:mm:ss, like 01:00:00")]
pub struct TimeSpanError(pub String);

/// Parses a .NET `TimeSpan` in its constant form: `[d.]hh:mm:ss[.fffffff]`,
/// hours below 24 and minutes and seconds below 60. Negative spans are
/// refused: no duration here can be negative.
pub fn parse_timespan(text: &str) -> Result<Duration, TimeSpanError> {
    let err = || TimeSpanError(text.to_owned());
    let number = |s: &str, max: u64| -> Result<u64, TimeSpanError> {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        s.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(err)
    };
    let t = text.trim();
    let parts: Vec<&str> = t.split(':').collect();
    let [head, minutes, seconds] = parts.as_slice() else {
        return Err(err());
    };
    let (days, hours) = match head.split_once('.') {
        Some((d, h)) => (number(d, 10_675_199)?, h),
        None => (0, *head),
    };
    let hours = number(hours, 23)?;
    let minutes = number(minutes, 59)?;
    let (seconds, fraction) = match seconds.split_once('.') {
        Some((s, f)) if f.len() <= 7 => (s, number(f, 9_999_999)? * 10u64.pow(7 - f.len() as u32)),
        Some(_) => return Err(err()),
        None => (*seconds, 0),
    };
    let seconds = number(seconds, 59)?;
    let total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
    // The fraction is in ticks of 100 ns.
    Ok(Duration::from_secs(total) + Duration::from_nanos(fraction * 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("01:00:00"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_timespan("00:02:30"), Ok(Duration::from_secs(150)));
        assert_eq!(
            parse_timespan("1.00:00:01"),
            Ok(Duration::from_secs(86_401))
        );
        assert_eq!(
            parse_timespan("00:00:01.5"),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(parse_timespan("0:0:5"), Ok(Duration::from_secs(5)));
        for bad in [
            "",
            "1h",
            "01:00",
            "24:00:00",
            "00:60:00",
            "00:00:60",
            "-01:00:00",
            "a.01:00:00",
            "01:00:00:00",
            "00:00:01.12345678",
            "1.:00:00",
        ] {
            assert!(parse_timespan(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn package_retention_counts_and_checks() {
        let mut p = MachinePolicy::default();
        assert_eq!(
            p.machine_package_cache_retention_policy.versions_to_keep(),
            5
        );
        p.machine_package_cache_retention_policy = PackageCacheRetention {
            strategy: "Quantities".into(),
            quantity_of_versions_to_keep: 2,
            version_unit: "Items".into(),
        };
        assert_eq!(
            p.machine_package_cache_retention_policy.versions_to_keep(),
            2
        );
        assert!(p.problems().is_empty());
        p.machine_package_cache_retention_policy
            .quantity_of_versions_to_keep = 0;
        assert_eq!(
            p.problems(),
            ["MachinePackageCacheRetentionPolicy.QuantityOfVersionsToKeep must be at least 1"]
        );
        p.machine_package_cache_retention_policy.strategy = "Forever".into();
        assert!(p.problems()[0].contains("'Forever' is not Default or Quantities"));
    }

    #[test]
    fn defaults_are_valid() {
        assert!(MachinePolicy::default().problems().is_empty());
        let mut p = MachinePolicy {
            connection_connect_timeout: "soon".into(),
            ..Default::default()
        };
        p.machine_health_check_policy.health_check_interval = "00:00:00".into();
        let problems = p.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("HealthCheckInterval"));
        assert!(problems[1].contains("'soon'"));
    }
}
