//! Variables and the sets that hold them: a project's own set, and library
//! variable sets that projects include.

use serde::{Deserialize, Serialize};

/// The dimensions a variable's value can be scoped to. Within one dimension the
/// listed values are alternatives; across dimensions all must match.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct VariableScope {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub role: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub machine: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub action: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channel: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenant_tag: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub process_owner: Vec<String>,
}

impl VariableScope {
    pub fn is_empty(&self) -> bool {
        self.environment.is_empty()
            && self.role.is_empty()
            && self.machine.is_empty()
            && self.action.is_empty()
            && self.channel.is_empty()
            && self.tenant_tag.is_empty()
            && self.process_owner.is_empty()
    }
}

/// How a prompted variable asks for its value at deployment time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct VariablePrompt {
    pub label: String,
    pub description: String,
    pub required: bool,
    pub display_settings: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Variable {
    pub id: String,
    pub name: String,
    /// `None` for a sensitive value when it leaves the server, and for a value
    /// that was never set.
    pub value: Option<String>,
    pub description: Option<String>,
    pub scope: VariableScope,
    pub is_editable: bool,
    pub prompt: Option<VariablePrompt>,
    /// `String`, `Sensitive`, `Certificate`, `AmazonWebServicesAccount`, …
    #[serde(rename = "Type")]
    pub kind: String,
    pub is_sensitive: bool,
}

impl Default for Variable {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            value: None,
            description: None,
            scope: VariableScope::default(),
            is_editable: true,
            prompt: None,
            kind: "String".into(),
            is_sensitive: false,
        }
    }
}

impl Variable {
    /// A plain, unscoped string variable.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    pub fn sensitive(&self) -> bool {
        self.is_sensitive || self.kind == SENSITIVE_TYPE
    }
}

/// The `Type` of a variable holding a secret.
pub const SENSITIVE_TYPE: &str = "Sensitive";

/// Every variable `Type` Octopus knows, spelled as it spells them.
pub const VARIABLE_TYPES: &[&str] = &[
    "String",
    SENSITIVE_TYPE,
    "Certificate",
    "AmazonWebServicesAccount",
    "AzureAccount",
    "GoogleCloudAccount",
    "UsernamePasswordAccount",
    "WorkerPool",
];

/// The canonical spelling of a variable `Type` given in any case (names in
/// the API are case-insensitive), or `None` for a type nobody knows.
pub fn canonical_variable_type(kind: &str) -> Option<&'static str> {
    VARIABLE_TYPES
        .iter()
        .copied()
        .find(|known| known.eq_ignore_ascii_case(kind.trim()))
}

/// The variables a project or a library variable set owns. Sensitive values
/// are kept encrypted; what leaves the server never carries them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct VariableSet {
    pub id: String,
    pub space_id: String,
    /// The project or library variable set this set belongs to.
    pub owner_id: String,
    /// Bumped on every save; a save that names an older version is refused.
    pub version: i64,
    pub variables: Vec<Variable>,
}

/// The values a variable set's scopes may name, as `GET /variables/{id}`
/// returns them for editors.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScopeValues {
    pub environments: Vec<ReferenceItem>,
    pub machines: Vec<ReferenceItem>,
    pub actions: Vec<ReferenceItem>,
    pub roles: Vec<ReferenceItem>,
    pub channels: Vec<ReferenceItem>,
    pub tenant_tags: Vec<ReferenceItem>,
    pub processes: Vec<ReferenceItem>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReferenceItem {
    pub id: String,
    pub name: String,
}

/// A named set of variables that many projects include.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct LibraryVariableSet {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub description: String,
    pub variable_set_id: String,
    /// `Variables` (script modules are not supported).
    pub content_type: String,
    pub templates: Vec<serde_json::Value>,
}

impl Default for LibraryVariableSet {
    fn default() -> Self {
        Self {
            id: String::new(),
            space_id: String::new(),
            name: String::new(),
            description: String::new(),
            variable_set_id: String::new(),
            content_type: "Variables".into(),
            templates: vec![],
        }
    }
}
