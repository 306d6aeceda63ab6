//! Instance names: each is the first label of its instance's host name
//! (`NAME.DOMAIN`), a directory name, and part of a database name, so only
//! a plain DNS label is accepted.

/// The longest name: a DNS label may have 63 characters, but the name also
/// goes into a PostgreSQL database name (`cuttle_NAME_xxxxxxxx`), which may
/// have no more than 63.
pub const MAX_LEN: usize = 40;

/// Names the hosting itself uses, or that customers would take for it.
pub const RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "host",
    "control",
    "app",
    "mail",
    "smtp",
    "ftp",
    "status",
    "support",
    "help",
    "docs",
    "billing",
    "cuttle",
    "localhost",
    "root",
    "static",
    "cdn",
    "polling",
    "agents",
    "workers",
];

/// Why `name` cannot name an instance, or `None` when it can: 1 to 40
/// lower-case letters, digits and hyphens, starting with a letter, not
/// ending with a hyphen, and not reserved.
pub fn invalid(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("An instance needs a Name".into());
    }
    if name.len() > MAX_LEN {
        return Some(format!(
            "The name '{name}' is longer than {MAX_LEN} characters"
        ));
    }
    let bytes = name.as_bytes();
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Some(format!(
            "The name '{name}' may hold only lower-case letters, digits and '-' (it is the \
             first label of the instance's host name)"
        ));
    }
    if !bytes[0].is_ascii_lowercase() {
        return Some(format!("The name '{name}' must start with a letter"));
    }
    if bytes[bytes.len() - 1] == b'-' {
        return Some(format!("The name '{name}' must not end with '-'"));
    }
    if RESERVED.contains(&name) {
        return Some(format!("The name '{name}' is reserved"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::invalid;

    #[test]
    fn plain_labels_pass() {
        for name in ["a", "acme", "acme-prod", "team42", &"a".repeat(40)] {
            assert_eq!(invalid(name), None, "{name}");
        }
    }

    #[test]
    fn others_are_refused_with_a_reason() {
        for name in [
            "",
            "Acme",
            "acme_prod",
            "acme.prod",
            "-acme",
            "42acme",
            "acme-",
            "www",
            "control",
            "ac me",
            "acmé",
            &"a".repeat(41),
        ] {
            assert!(invalid(name).is_some(), "'{name}' was accepted");
        }
    }
}
