//! Releases: immutable snapshots of a project's process (and, later, variables
//! and package versions) under a version number.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct SelectedPackage {
    pub action_name: String,
    /// Which step the version is for, when a client names the step rather
    /// than (or as well as) its action; resolved to actions on creation, so a
    /// release's own selections never carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_name: Option<String>,
    pub package_reference_name: Option<String>,
    pub version: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Release {
    pub id: String,
    pub space_id: String,
    pub project_id: String,
    pub channel_id: String,
    pub version: String,
    pub release_notes: Option<String>,
    pub assembled: Option<Timestamp>,
    /// The frozen copy of the process this release deploys.
    pub project_deployment_process_snapshot_id: String,
    pub project_variable_set_snapshot_id: String,
    pub library_variable_set_snapshot_ids: Vec<String>,
    pub selected_packages: Vec<SelectedPackage>,
    pub build_information: Vec<Value>,
    pub ignore_channel_rules: bool,
}
