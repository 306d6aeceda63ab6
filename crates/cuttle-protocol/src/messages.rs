//! What the server and an agent say to each other, as JSON bodies. Field
//! names are PascalCase like the rest of Cuttle's (Octopus-shaped) wire.

use serde::{Deserialize, Serialize};

/// The path of the first request on every connection.
pub const HELLO_PATH: &str = "/v1/hello";

/// An agent's answer to `GET /v1/hello`: who it is and what it runs on. The
/// server refuses an agent whose `protocol_version` it does not speak.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Hello {
    pub protocol_version: u32,
    pub agent_version: String,
    /// As Rust names it (`linux`, `macos`, …).
    pub operating_system: String,
    pub architecture: String,
    /// Free space where the agent keeps its work, for the server to warn on.
    pub free_disk_bytes: u64,
    /// The name the agent was registered under.
    pub name: String,
}

/// The body of every error answer, in the API's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    pub error_message: String,
}
