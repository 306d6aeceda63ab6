//! The deployment process: ordered steps, each with one or more actions.
//! Property values are kept as JSON because clients send both plain strings and
//! structured values (sensitive properties); readers ask for text.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub type Properties = BTreeMap<String, Value>;

/// Reads a property as text, whatever JSON type the client used.
pub fn property_text(props: &Properties, key: &str) -> Option<String> {
    match props.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("NewValue")
            .or_else(|| o.get("Value"))
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        other => Some(other.to_string()),
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct PackageReference {
    pub id: String,
    pub name: String,
    pub package_id: String,
    pub feed_id: String,
    pub acquisition_location: String,
    #[schema(value_type = Object)]
    pub properties: Properties,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Action {
    pub id: String,
    pub name: String,
    pub action_type: String,
    pub slug: String,
    pub notes: Option<String>,
    pub is_disabled: bool,
    pub is_required: bool,
    pub can_be_used_for_project_versioning: bool,
    pub environments: Vec<String>,
    pub excluded_environments: Vec<String>,
    pub channels: Vec<String>,
    pub tenant_tags: Vec<String>,
    pub worker_pool_id: Option<String>,
    pub worker_pool_variable: Option<String>,
    pub packages: Vec<PackageReference>,
    pub condition: Option<String>,
    #[schema(value_type = Object)]
    pub properties: Properties,
}

impl Action {
    pub fn property(&self, key: &str) -> Option<String> {
        property_text(&self.properties, key)
    }

    /// Whether this action takes part in a deployment to `environment_id`.
    pub fn applies_to_environment(&self, environment_id: &str) -> bool {
        (self.environments.is_empty() || self.environments.iter().any(|e| e == environment_id))
            && !self
                .excluded_environments
                .iter()
                .any(|e| e == environment_id)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Step {
    pub id: String,
    pub name: String,
    pub slug: String,
    /// `Success`, `Failure`, `Always` or `Variable`.
    pub condition: String,
    /// `StartAfterPrevious` or `StartWithPrevious`.
    pub start_trigger: String,
    pub package_requirement: String,
    #[schema(value_type = Object)]
    pub properties: Properties,
    pub actions: Vec<Action>,
}

impl Step {
    pub fn property(&self, key: &str) -> Option<String> {
        property_text(&self.properties, key)
    }

    /// The roles (target tags) whose targets this step runs on.
    pub fn target_roles(&self) -> Vec<String> {
        self.property(PROP_TARGET_ROLES)
            .map(|r| {
                r.split(',')
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Default for Step {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            slug: String::new(),
            condition: "Success".into(),
            start_trigger: "StartAfterPrevious".into(),
            package_requirement: "LetOctopusDecide".into(),
            properties: Properties::new(),
            actions: vec![],
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentProcess {
    pub id: String,
    pub space_id: String,
    pub project_id: String,
    /// Incremented on every change; a PUT carrying an older version is a conflict.
    pub version: i64,
    pub last_snapshot_id: Option<String>,
    pub steps: Vec<Step>,
}

pub const SCRIPT_ACTION_TYPE: &str = "Octopus.Script";
/// "Deploy a package": a package delivered to targets and installed there.
pub const PACKAGE_ACTION_TYPE: &str = "Octopus.TentaclePackage";
pub const PROP_SCRIPT_BODY: &str = "Octopus.Action.Script.ScriptBody";
pub const PROP_SCRIPT_SYNTAX: &str = "Octopus.Action.Script.Syntax";
pub const PROP_SCRIPT_SOURCE: &str = "Octopus.Action.Script.ScriptSource";
pub const PROP_RUN_ON_SERVER: &str = "Octopus.Action.RunOnServer";
pub const PROP_TARGET_ROLES: &str = "Octopus.Action.TargetRoles";
/// Octopus's per-action execution timeout, in minutes.
pub const PROP_TIMEOUT_MINUTES: &str = "Octopus.Action.ExecutionTimeout.Minutes";
/// Cuttle's finer-grained timeout, in seconds; wins over the minutes property.
pub const PROP_TIMEOUT_SECONDS: &str = "Cuttle.Action.ExecutionTimeout.Seconds";
/// At most this many targets run a step at once (a rolling deployment).
pub const PROP_MAX_PARALLELISM: &str = "Octopus.Action.MaxParallelism";
/// A step's run condition when its `Condition` is `Variable`.
pub const PROP_CONDITION_EXPRESSION: &str = "Octopus.Step.ConditionVariableExpression";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn property_text_reads_any_shape() {
        let mut p = Properties::new();
        p.insert("a".into(), json!("x"));
        p.insert("b".into(), json!(5));
        p.insert("c".into(), json!({"HasValue": true, "NewValue": "s"}));
        p.insert("d".into(), Value::Null);
        assert_eq!(property_text(&p, "a").as_deref(), Some("x"));
        assert_eq!(property_text(&p, "b").as_deref(), Some("5"));
        assert_eq!(property_text(&p, "c").as_deref(), Some("s"));
        assert_eq!(property_text(&p, "d"), None);
        assert_eq!(property_text(&p, "zzz"), None);
    }

    #[test]
    fn environment_scoping() {
        let mut a = Action::default();
        assert!(a.applies_to_environment("Environments-1"));
        a.environments = vec!["Environments-2".into()];
        assert!(!a.applies_to_environment("Environments-1"));
        a.environments.clear();
        a.excluded_environments = vec!["Environments-1".into()];
        assert!(!a.applies_to_environment("Environments-1"));
    }
}
