//! The list parameters Octopus collections accept.

use serde::Deserialize;

/// Octopus clients ask for "everything" with this `take`.
pub const TAKE_ALL: i64 = 2_147_483_647;
pub const DEFAULT_TAKE: i64 = 30;

#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub skip: Option<i64>,
    pub take: Option<i64>,
    /// Comma-joined ids.
    pub ids: Option<String>,
    #[serde(rename = "partialName", alias = "partialname")]
    pub partial_name: Option<String>,
    pub name: Option<String>,
}

impl ListParams {
    pub fn skip(&self) -> i64 {
        self.skip.unwrap_or(0).max(0)
    }

    pub fn take(&self) -> i64 {
        self.take.unwrap_or(DEFAULT_TAKE).clamp(0, TAKE_ALL)
    }

    pub fn ids(&self) -> Vec<String> {
        split_list(self.ids.as_deref())
    }
}

/// Splits a comma-joined query value, ignoring blanks.
pub fn split_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
