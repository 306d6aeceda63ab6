//! Lifecycles: the phases a release moves through.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct RetentionPolicy {
    pub quantity_to_keep: i64,
    pub should_keep_forever: bool,
    pub unit: String,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            quantity_to_keep: 0,
            should_keep_forever: true,
            unit: "Days".into(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Phase {
    pub id: String,
    pub name: String,
    pub automatic_deployment_targets: Vec<String>,
    pub optional_deployment_targets: Vec<String>,
    pub minimum_environments_before_promotion: i64,
    pub is_optional_phase: bool,
    pub release_retention_policy: Option<RetentionPolicy>,
    pub tentacle_retention_policy: Option<RetentionPolicy>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Lifecycle {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    /// No phases means one phase per environment, in environment order; see
    /// [`crate::progression`] for how releases move through them.
    pub phases: Vec<Phase>,
    pub release_retention_policy: RetentionPolicy,
    pub tentacle_retention_policy: RetentionPolicy,
}

pub const DEFAULT_LIFECYCLE_NAME: &str = "Default Lifecycle";
