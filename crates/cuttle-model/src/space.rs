//! Spaces partition everything else; each installation starts with `Default`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Space {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub is_default: bool,
    pub task_queue_stopped: bool,
    pub space_managers_teams: Vec<String>,
    pub space_managers_team_members: Vec<String>,
}

pub const DEFAULT_SPACE_ID: &str = "Spaces-1";
pub const DEFAULT_SPACE_NAME: &str = "Default";
