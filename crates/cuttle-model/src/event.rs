//! An audit event as the API shows it (Octopus's `EventResource`).

use crate::Timestamp;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    pub id: String,
    pub space_id: Option<String>,
    /// `Created`, `Modified`, `DeploymentSucceeded`, `LoginFailed`, …
    pub category: String,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub is_service: bool,
    /// `API key`, `Session cookie`, `Username and password`, or none for
    /// the server's own work.
    pub identity_established_with: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub occurred: Option<Timestamp>,
    pub message: String,
    pub message_html: String,
    /// Where in `Message` each related document is named.
    pub message_references: Vec<MessageReference>,
    pub comments: Option<String>,
    pub details: Option<String>,
    /// `{DocumentContext, Differences}`, sensitive values replaced.
    #[schema(value_type = Object)]
    pub change_details: Option<serde_json::Value>,
    pub related_document_ids: Vec<String>,
    /// The event's number: `fromAutoId` and `toAutoId` filter by it.
    pub auto_id: i64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MessageReference {
    pub referenced_document_id: String,
    pub starting_index: usize,
    pub length: usize,
}

/// A category, document type or group as `GET /api/events/categories`
/// (and its siblings) list them.
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EventKind {
    pub id: String,
    pub name: String,
}

/// Octopus's event categories that Cuttle records.
pub mod category {
    pub const CREATED: &str = "Created";
    pub const MODIFIED: &str = "Modified";
    pub const DELETED: &str = "Deleted";
    pub const DEPLOYMENT_QUEUED: &str = "DeploymentQueued";
    pub const DEPLOYMENT_STARTED: &str = "DeploymentStarted";
    pub const DEPLOYMENT_SUCCEEDED: &str = "DeploymentSucceeded";
    pub const DEPLOYMENT_FAILED: &str = "DeploymentFailed";
    pub const DEPLOYMENT_RESUMED: &str = "DeploymentResumed";
    pub const MANUAL_INTERVENTION_RAISED: &str = "ManualInterventionInterruptionRaised";
    pub const GUIDED_FAILURE_RAISED: &str = "GuidedFailureInterruptionRaised";
    pub const INTERRUPTION_SUBMITTED: &str = "InterruptionSubmitted";
    pub const TASK_CANCELED: &str = "TaskCanceled";
    pub const MACHINE_HEALTHY: &str = "MachineHealthy";
    pub const MACHINE_HAS_WARNINGS: &str = "MachineHasWarnings";
    pub const MACHINE_UNHEALTHY: &str = "MachineUnhealthy";
    pub const MACHINE_UNAVAILABLE: &str = "MachineUnavailable";
    pub const LOGIN_SUCCEEDED: &str = "LoginSucceeded";
    pub const LOGIN_FAILED: &str = "LoginFailed";
    pub const LOGOUT: &str = "Logout";
    pub const API_KEY_USED: &str = "ApiKeyUsed";

    /// Every category, for `GET /api/events/categories`, with its group.
    pub const ALL: [(&str, &str); 21] = [
        (CREATED, "Document"),
        (MODIFIED, "Document"),
        (DELETED, "Document"),
        (DEPLOYMENT_QUEUED, "Deployment"),
        (DEPLOYMENT_STARTED, "Deployment"),
        (DEPLOYMENT_SUCCEEDED, "Deployment"),
        (DEPLOYMENT_FAILED, "Deployment"),
        (DEPLOYMENT_RESUMED, "Deployment"),
        (MANUAL_INTERVENTION_RAISED, "Deployment"),
        (GUIDED_FAILURE_RAISED, "Deployment"),
        (INTERRUPTION_SUBMITTED, "Deployment"),
        (TASK_CANCELED, "ServerTask"),
        (MACHINE_HEALTHY, "Machine"),
        (MACHINE_HAS_WARNINGS, "Machine"),
        (MACHINE_UNHEALTHY, "Machine"),
        (MACHINE_UNAVAILABLE, "Machine"),
        (LOGIN_SUCCEEDED, "User"),
        (LOGIN_FAILED, "User"),
        (LOGOUT, "User"),
        (API_KEY_USED, "User"),
        ("Comment", "Document"),
    ];
}
