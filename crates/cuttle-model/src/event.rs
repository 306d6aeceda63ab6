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
