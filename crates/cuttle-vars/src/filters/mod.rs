//! The built-in filters (`#{Name | ToUpper}`), applied left to right.

/// Why a filter could not be applied; the token is then left as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("unknown filter '{0}'")]
    Unknown(String),
    #[error("filter '{filter}': {reason}")]
    BadArguments { filter: String, reason: String },
}

/// Applies the filter `name` (case-insensitive) with its evaluated `args` to
/// `input` (`None` when there is no input value, as in `#{ | NowDate}`).
/// `Ok(None)` means the filter yields no value at all.
pub fn apply(name: &str, input: Option<&str>, args: &[String]) -> Result<Option<String>, FilterError> {
    let _ = (input, args);
    Err(FilterError::Unknown(name.to_owned()))
}
