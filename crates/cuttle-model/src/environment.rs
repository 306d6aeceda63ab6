//! Environments: where releases are promoted (Dev → Test → Production).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Environment {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    /// Position in the environment list; the default lifecycle promotes in this order.
    pub sort_order: i64,
    pub use_guided_failure: bool,
    pub allow_dynamic_infrastructure: bool,
}
