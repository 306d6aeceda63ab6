//! Deployments: a release sent to one environment, carried out by a server task.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Deployment {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub release_id: String,
    pub environment_id: String,
    pub project_id: String,
    pub channel_id: String,
    pub tenant_id: Option<String>,
    pub task_id: String,
    pub deployment_process_id: String,
    pub comments: Option<String>,
    pub form_values: BTreeMap<String, String>,
    pub use_guided_failure: bool,
    pub skip_actions: Vec<String>,
    pub specific_machine_ids: Vec<String>,
    pub excluded_machine_ids: Vec<String>,
    pub force_package_download: bool,
    pub force_package_redeployment: bool,
    pub queue_time: Option<Timestamp>,
    pub queue_time_expiry: Option<Timestamp>,
    pub created: Option<Timestamp>,
    pub deployed_by: String,
    pub deployed_by_id: String,
    pub failure_encountered: bool,
}
