//! Truthiness, as `#{if}` and step run conditions test it.

/// False for an empty value, `0`, or (trimmed, ignoring case) `false` or
/// `no`; anything else is true. Note `" "` is true and `" 0"` is true: only
/// the words are trimmed, as in Octostache.
pub fn is_truthy(value: &str) -> bool {
    let word = value.trim();
    !(value.is_empty()
        || value == "0"
        || word.eq_ignore_ascii_case("false")
        || word.eq_ignore_ascii_case("no"))
}

#[cfg(test)]
mod tests {
    use super::is_truthy;

    #[test]
    fn octostache_truthiness() {
        for falsy in ["", "0", "false", "False", " FALSE ", "no", "No "] {
            assert!(!is_truthy(falsy), "{falsy:?}");
        }
        for truthy in ["1", "true", "yes", " ", " 0", "nope", "exists"] {
            assert!(is_truthy(truthy), "{truthy:?}");
        }
    }
}
