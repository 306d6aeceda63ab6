//! Users and their API keys. Secrets (password hashes, key hashes) never live
//! in these types; the store keeps them apart so they cannot leak through the API.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email_address: String,
    pub is_active: bool,
    pub is_service: bool,
    pub can_password_be_edited: bool,
    pub is_requestor: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ApiKey {
    pub id: String,
    pub user_id: String,
    pub purpose: String,
    pub created: Option<Timestamp>,
    pub expires: Option<Timestamp>,
    /// Only present in the response that created the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

pub const ADMIN_USERNAME: &str = "admin";
