//! Projects, the groups that hold them, and their channels.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProjectGroup {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub environment_ids: Vec<String>,
    pub retention_policy_id: Option<String>,
}

pub const DEFAULT_PROJECT_GROUP_NAME: &str = "Default Project Group";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct VersioningStrategy {
    pub template: String,
    pub donor_package: Option<Value>,
    pub donor_package_step_id: Option<String>,
}

impl Default for VersioningStrategy {
    fn default() -> Self {
        Self {
            template: "#{Octopus.Version.LastMajor}.#{Octopus.Version.LastMinor}.#{Octopus.Version.NextPatch}".into(),
            donor_package: None,
            donor_package_step_id: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectivityPolicy {
    pub skip_machine_behavior: String,
    pub target_roles: Vec<String>,
    pub allow_deployments_to_no_targets: bool,
    pub exclude_unhealthy_targets: bool,
}

impl Default for ConnectivityPolicy {
    fn default() -> Self {
        Self {
            skip_machine_behavior: "None".into(),
            target_roles: vec![],
            allow_deployments_to_no_targets: true,
            exclude_unhealthy_targets: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Project {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub project_group_id: String,
    pub lifecycle_id: String,
    pub deployment_process_id: String,
    pub variable_set_id: String,
    pub included_library_variable_set_ids: Vec<String>,
    pub tenanted_deployment_mode: String,
    pub is_disabled: bool,
    pub discrete_channel_release: bool,
    pub default_guided_failure_mode: String,
    pub default_to_skip_if_already_installed: bool,
    pub auto_create_release: bool,
    pub versioning_strategy: VersioningStrategy,
    pub project_connectivity_policy: ConnectivityPolicy,
    pub release_notes_template: Option<String>,
}

impl Default for Project {
    fn default() -> Self {
        Self {
            id: String::new(),
            space_id: String::new(),
            name: String::new(),
            slug: String::new(),
            description: String::new(),
            project_group_id: String::new(),
            lifecycle_id: String::new(),
            deployment_process_id: String::new(),
            variable_set_id: String::new(),
            included_library_variable_set_ids: vec![],
            tenanted_deployment_mode: "Untenanted".into(),
            is_disabled: false,
            discrete_channel_release: false,
            default_guided_failure_mode: "EnvironmentDefault".into(),
            default_to_skip_if_already_installed: false,
            auto_create_release: false,
            versioning_strategy: VersioningStrategy::default(),
            project_connectivity_policy: ConnectivityPolicy::default(),
            release_notes_template: None,
        }
    }
}

/// A package of a deployment action that a channel rule constrains.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentActionPackage {
    pub deployment_action: String,
    pub package_reference: Option<String>,
}

/// A channel version rule (see [`crate::version_rule`]). In Octopus a rule
/// constrains the package versions of its `ActionPackages`; a rule without
/// any constrains the release version itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChannelRule {
    pub id: String,
    pub version_range: String,
    pub tag: String,
    pub action_packages: Vec<DeploymentActionPackage>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Channel {
    pub id: String,
    pub space_id: String,
    pub project_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    /// Overrides the project's lifecycle when set.
    pub lifecycle_id: Option<String>,
    pub is_default: bool,
    pub rules: Vec<ChannelRule>,
    pub tenant_tags: Vec<String>,
}

pub const DEFAULT_CHANNEL_NAME: &str = "Default";
