//! `VersionMajor` … `VersionMetadata`: parts of an Octopus version, which is
//! looser than SemVer (optional `v`, up to four numbers, a pre-release after
//! `.`, `-`, `_` or `\`, metadata after `+`, bare tags like `latest`).

use super::{require, FilterError, FilterResult};
use regex::Regex;
use std::sync::OnceLock;

/// The Octopus version grammar. Lazy quantifiers matter: they decide where
/// the pre-release prefix ends and the counter begins.
const PATTERN: &str = r"^\s*(?:\s*(?P<prefix>v|V)?\s*(?P<major>\d+)\s*(?:\.\s*(?P<minor>\d+)\s*)?(?:\.\s*(?P<patch>\d+)\s*)?(?:\.\s*(?P<revision>\d+)\s*)?)?(?:[.\-_\\])?(?P<prerelease>(?P<prereleaseprefix>[A-Za-z0-9]*?)(?:[.\-_\\](?P<prereleasecounter>[A-Za-z0-9.\-_\\]*?)?)?)?(?:\+(?P<buildmetadata>[A-Za-z0-9_\-.\\+]*?))?\s*$";

fn version_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(PATTERN).ok()).as_ref()
}

pub(super) fn apply(f: &str, input: Option<&str>) -> FilterResult {
    let s = require(f, input)?;
    let bad = |why: &str| FilterError::bad(f, format!("'{s}' is not a valid version: {why}"));
    if s.trim().is_empty() {
        return Err(bad("empty"));
    }
    let caps = version_regex()
        .and_then(|re| re.captures(s))
        .ok_or_else(|| bad("unrecognised form"))?;
    let text = |name: &str| caps.name(name).map_or("", |m| m.as_str()).to_owned();
    // Missing numbers are 0; a number too large for a 32-bit int is an error.
    let number = |name: &str| -> Result<String, FilterError> {
        match caps.name(name) {
            None => Ok("0".to_owned()),
            Some(m) => m
                .as_str()
                .parse::<i32>()
                .map(|n| n.to_string())
                .map_err(|_| bad("number out of range")),
        }
    };
    let out = match f {
        "versionmajor" => number("major")?,
        "versionminor" => number("minor")?,
        "versionpatch" => number("patch")?,
        "versionrevision" => number("revision")?,
        "versionprerelease" => text("prerelease"),
        "versionprereleaseprefix" => text("prereleaseprefix"),
        "versionprereleasecounter" => text("prereleasecounter"),
        "versionmetadata" => text("buildmetadata"),
        _ => return Err(FilterError::Unknown(f.to_owned())),
    };
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::super::apply;

    fn part(f: &str, v: &str) -> Option<String> {
        apply(f, Some(v), &[]).ok().flatten()
    }

    #[test]
    fn parts() {
        assert_eq!(part("VersionMajor", " 1 . 2 ").as_deref(), Some("1"));
        assert_eq!(part("VersionMinor", " 1 . 2 ").as_deref(), Some("2"));
        assert_eq!(part("VersionMajor", "007").as_deref(), Some("7"));
        assert_eq!(
            part("VersionPreReleaseCounter", "1.0-a.b.c").as_deref(),
            Some("b.c")
        );
        assert_eq!(part("VersionMetadata", "1.0+a+b").as_deref(), Some("a+b"));
        assert_eq!(part("VersionMajor", "99999999999"), None);
        assert_eq!(part("VersionMajor", ""), None);
        assert_eq!(part("VersionMajor", "1.0 be ta"), None);
        assert!(apply("VersionMajor", None, &[]).is_err());
    }
}
