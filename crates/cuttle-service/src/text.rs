//! Rules for text that names things or filters by name. Names are shown in
//! lists, logs and audit events, and chosen by eye: a control character, a
//! bidirectional override (U+202E shows the rest of a name reversed, so
//! one name can pass for another) or an invisible character would let two names look alike, or
//! break a log line. A NUL, besides, is text PostgreSQL refuses to store or
//! compare, where SQLite accepts it: refused here, it is the same clear 400
//! on both databases instead of a 500 on one.

use crate::{Result, ServiceError};

/// Characters no name may contain: controls, line and paragraph separators,
/// bidirectional embeddings, overrides, isolates and marks, and invisible
/// formatting characters. The zero-width joiner and non-joiner stay
/// allowed: some scripts (Persian, Indic ones, emoji sequences) need them
/// to spell words.
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                  // soft hyphen
            | '\u{061C}'                // Arabic letter mark
            | '\u{180E}'                // Mongolian vowel separator
            | '\u{200B}'                // zero-width space
            | '\u{200E}' | '\u{200F}'   // left-to-right and right-to-left marks
            | '\u{2028}' | '\u{2029}'   // line and paragraph separators
            | '\u{202A}'..='\u{202E}'   // embeddings, pops and overrides
            | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'   // isolates
            | '\u{FEFF}'                // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

/// The problem with `value` as the `field` of a `kind`, if it holds a
/// character no name may (named by its code point, since it may not show).
pub fn name_problem(field: &str, kind: &str, value: &str) -> Option<String> {
    let (at, c) = value
        .chars()
        .enumerate()
        .find(|(_, c)| is_forbidden_in_name(*c))?;
    Some(format!(
        "{field} cannot contain control, bidirectional or invisible characters \
         (U+{:04X} at character {}): retype the {kind}'s {}",
        c as u32,
        at + 1,
        field.to_lowercase()
    ))
}

/// Refuses a NUL in text that reaches the database as a filter or an id
/// (query parameters, route segments, free-text fields), naming `field`.
pub fn check_no_nul(field: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(ServiceError::bad_request(format!(
            "{field} contains a NUL character, which no name, id or filter may hold"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_controls_bidi_and_invisibles_only() {
        for bad in [
            "a\0b",
            "a\nb",
            "a\u{7f}",
            "a\u{85}",
            "Prod\u{202E}x",
            "a\u{2067}b",
            "a\u{200B}b",
            "\u{FEFF}a",
            "a\u{200F}",
            "a\u{2028}b",
        ] {
            assert!(
                name_problem("Name", "environment", bad).is_some(),
                "{bad:?}"
            );
        }
        for good in [
            "Production EU",
            "Produção",
            "本番",
            "إنتاج",
            "می\u{200C}خواهم",
            "👩\u{200D}💻",
        ] {
            assert_eq!(name_problem("Name", "environment", good), None, "{good:?}");
        }
        let m = name_problem("Name", "environment", "ab\u{202E}").unwrap();
        assert!(
            m.starts_with("Name cannot") && m.contains("U+202E at character 3"),
            "{m}"
        );
        assert!(check_no_nul("partialName", "a\0").is_err());
        assert!(check_no_nul("partialName", "a b\t").is_ok());
    }
}
