//! The shapes of answers that are not one stored resource: a task's
//! details, a release's progression, the built-in feed, the server's
//! thumbprint. Handlers serialize these, and the OpenAPI document describes
//! them from the same types, so the two agree.
//!
//! A field holding a resource with its `Links` is a `Value` described as
//! that resource's type.

use cuttle_model::progression::PhaseProgress;
use cuttle_model::ActivityElement;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET tasks/{id}/details`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TaskDetails {
    #[schema(value_type = cuttle_model::ServerTask)]
    pub task: Value,
    pub progress: TaskProgress,
    /// Log lines of the task's activities (Verbose ones only if asked
    /// for), including those the tree leaves out of a long activity.
    pub physical_log_size: usize,
    pub activity_logs: Vec<ActivityElement>,
    pub links: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TaskProgress {
    pub progress_percentage: i64,
    /// Empty once the task finished; `Unknown` while it runs.
    pub estimated_time_remaining: String,
}

/// `GET releases/{id}/progression`: Octopus's `LifecycleProgressionResource`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseProgression {
    pub id: String,
    pub phases: Vec<PhaseProgression>,
    /// Environments the release may be deployed to next.
    pub next_deployments: Vec<String>,
    pub next_deployments_minimum_required: usize,
    pub links: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PhaseProgression {
    pub id: String,
    pub name: String,
    pub blocked: bool,
    pub progress: PhaseProgress,
    pub deployments: Vec<PhaseDeployment>,
    pub automatic_deployment_targets: Vec<String>,
    pub optional_deployment_targets: Vec<String>,
    pub minimum_environments_before_promotion: i64,
    pub is_optional_phase: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PhaseDeployment {
    #[schema(value_type = cuttle_model::Deployment)]
    pub deployment: Value,
    #[schema(value_type = cuttle_model::ServerTask)]
    pub task: Value,
}

/// A package feed; Cuttle has the built-in one.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Feed {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub feed_type: String,
    pub is_built_in_repo_sync_enabled: bool,
    pub delete_unreleased_packages_after_days: i64,
    pub package_acquisition_location_options: Vec<String>,
    pub links: BTreeMap<String, String>,
}

/// `GET /api/agents/server-thumbprint`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ServerThumbprint {
    /// The thumbprint agents must trust.
    pub thumbprint: String,
    /// The one they will have to trust after a rotation, if one is staged.
    pub next_thumbprint: Option<String>,
    /// Where polling agents connect; null when polling is off.
    pub polling_port: Option<u16>,
}
