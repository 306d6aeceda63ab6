//! Channel version rules: which versions a channel accepts.
//!
//! A rule has a version range in NuGet syntax (`[1.0,2.0)`, `(,3.0]`,
//! `[1.2.3]`, or a bare `1.0` meaning "1.0 or later"; empty means any) and a
//! `Tag`, a regular expression the version's pre-release tag must match
//! (`^$`: no pre-release; empty: any). As Octopus does, the tag pattern sees
//! the pre-release *and* the build metadata (`beta.1+abc`, or `+abc` for a
//! release with metadata only), so `^(|\+.*)$` means "no pre-release,
//! metadata allowed".
//!
//! Versions are Octopus's: SemVer, or one to four numeric parts
//! (`1.2.3.4`), with an optional `-pre.release` and `+metadata`; missing
//! parts count as zero, so `1.0` and `1.0.0.0` are the same version.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionRuleError {
    #[error("'{0}' is not a version range: use NuGet syntax such as [1.0,2.0), (,3.0] or 1.0 (meaning 1.0 or later)")]
    BadRange(String),
    #[error(
        "the version range '{0}' can match no version: its lower bound is above its upper bound"
    )]
    EmptyRange(String),
    #[error("'{pattern}' is not a valid tag pattern: {reason}")]
    BadTag { pattern: String, reason: String },
}

/// A version as releases and packages carry it.
#[derive(Clone, Debug)]
pub struct Version {
    /// Up to four numeric parts, padded with zeros.
    numbers: [u64; 4],
    /// Dot-separated pre-release identifiers; empty for a release.
    pre: Vec<String>,
    build: String,
}

impl Version {
    /// Parses `1`, `1.2`, `1.2.3` or `1.2.3.4`, each optionally followed by
    /// `-pre.release` and `+metadata`. `None` when it is not such a version.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let (rest, build) = match text.split_once('+') {
            Some((r, b)) if !b.is_empty() => (r, b),
            Some(_) => return None,
            None => (text, ""),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, p.split('.').map(str::to_owned).collect()),
            Some(_) => return None,
            None => (rest, vec![]),
        };
        let pre: Vec<String> = pre;
        if pre
            .iter()
            .any(|i| i.is_empty() || !i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return None;
        }
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 4 {
            return None;
        }
        let mut numbers = [0u64; 4];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            if part.is_empty() || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        Some(Version {
            numbers,
            pre,
            build: build.to_owned(),
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// What a channel rule's `Tag` pattern is matched against: the
    /// pre-release, then `+metadata` when there is any.
    pub fn tag_text(&self) -> String {
        let mut text = self.pre.join(".");
        if !self.build.is_empty() {
            text.push('+');
            text.push_str(&self.build);
        }
        text
    }
}

/// SemVer precedence for the pre-release: numeric identifiers below
/// alphanumeric ones, letters compared without regard to case (as NuGet does).
fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// Build metadata does not take part in ordering or equality.
impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers
            .cmp(&other.numbers)
            .then_with(|| compare_pre(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

#[derive(Clone, Debug)]
struct Bound {
    version: Version,
    inclusive: bool,
}

/// A NuGet version range.
#[derive(Clone, Debug)]
pub struct VersionRange {
    min: Option<Bound>,
    max: Option<Bound>,
}

impl VersionRange {
    /// Every version.
    pub fn any() -> Self {
        VersionRange {
            min: None,
            max: None,
        }
    }

    pub fn parse(text: &str) -> Result<Self, VersionRuleError> {
        let t = text.trim();
        let bad = || VersionRuleError::BadRange(text.to_owned());
        if t.is_empty() {
            return Ok(Self::any());
        }
        let Some(open) = t.chars().next().filter(|c| matches!(c, '[' | '(')) else {
            // A bare version is a minimum, inclusive.
            let version = Version::parse(t).ok_or_else(bad)?;
            return Ok(VersionRange {
                min: Some(Bound {
                    version,
                    inclusive: true,
                }),
                max: None,
            });
        };
        let close = t.chars().last().filter(|c| matches!(c, ']' | ')'));
        let (Some(close), true) = (close, t.len() >= 2) else {
            return Err(bad());
        };
        let inner = &t[1..t.len() - 1];
        let bound = |s: &str, inclusive: bool| -> Result<Option<Bound>, VersionRuleError> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            let version = Version::parse(s).ok_or_else(bad)?;
            Ok(Some(Bound { version, inclusive }))
        };
        let range = match inner.split_once(',') {
            // `[1.0]` is exactly 1.0; `(1.0)` means nothing.
            None => {
                if open != '[' || close != ']' {
                    return Err(bad());
                }
                let exact = bound(inner, true)?.ok_or_else(bad)?;
                VersionRange {
                    min: Some(exact.clone()),
                    max: Some(exact),
                }
            }
            Some((lo, hi)) => {
                if hi.contains(',') {
                    return Err(bad());
                }
                let range = VersionRange {
                    min: bound(lo, open == '[')?,
                    max: bound(hi, close == ']')?,
                };
                if range.min.is_none() && range.max.is_none() {
                    return Err(bad());
                }
                range
            }
        };
        if let (Some(lo), Some(hi)) = (&range.min, &range.max) {
            let empty = match lo.version.cmp(&hi.version) {
                Ordering::Greater => true,
                Ordering::Equal => !(lo.inclusive && hi.inclusive),
                Ordering::Less => false,
            };
            if empty {
                return Err(VersionRuleError::EmptyRange(text.to_owned()));
            }
        }
        Ok(range)
    }

    pub fn contains(&self, v: &Version) -> bool {
        let above_min = self.min.as_ref().is_none_or(|b| match v.cmp(&b.version) {
            Ordering::Greater => true,
            Ordering::Equal => b.inclusive,
            Ordering::Less => false,
        });
        let below_max = self.max.as_ref().is_none_or(|b| match v.cmp(&b.version) {
            Ordering::Less => true,
            Ordering::Equal => b.inclusive,
            Ordering::Greater => false,
        });
        above_min && below_max
    }
}

/// Why a version does not satisfy a rule.
#[derive(Debug, PartialEq, Eq)]
pub enum RuleMismatch {
    NotAVersion,
    OutsideRange,
    /// The pre-release tag (with metadata) that the pattern refused.
    TagRefused(String),
}

impl fmt::Display for RuleMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleMismatch::NotAVersion => write!(f, "it is not a version the rule can compare"),
            RuleMismatch::OutsideRange => write!(f, "it is outside the version range"),
            RuleMismatch::TagRefused(t) if t.is_empty() => {
                write!(f, "the tag pattern requires a pre-release tag")
            }
            RuleMismatch::TagRefused(t) => {
                write!(
                    f,
                    "its pre-release tag '{t}' does not match the tag pattern"
                )
            }
        }
    }
}

/// A channel rule, parsed once and checked against versions.
#[derive(Debug)]
pub struct VersionRule {
    range: VersionRange,
    tag: Option<fancy_regex::Regex>,
}

impl VersionRule {
    pub fn parse(range: &str, tag: &str) -> Result<Self, VersionRuleError> {
        let range = VersionRange::parse(range)?;
        let tag =
            match tag.trim() {
                "" => None,
                pattern => Some(fancy_regex::Regex::new(pattern).map_err(|e| {
                    VersionRuleError::BadTag {
                        pattern: pattern.to_owned(),
                        reason: e.to_string(),
                    }
                })?),
            };
        Ok(VersionRule { range, tag })
    }

    pub fn check(&self, version: &str) -> Result<(), RuleMismatch> {
        let v = Version::parse(version).ok_or(RuleMismatch::NotAVersion)?;
        if !self.range.contains(&v) {
            return Err(RuleMismatch::OutsideRange);
        }
        if let Some(tag) = &self.tag {
            let text = v.tag_text();
            // A pattern that gives up (too much backtracking) refuses.
            if !tag.is_match(&text).unwrap_or(false) {
                return Err(RuleMismatch::TagRefused(text));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    fn within(range: &str, version: &str) -> bool {
        VersionRange::parse(range).unwrap().contains(&v(version))
    }

    #[test]
    fn versions_parse_and_order() {
        assert!(v("1.0") == v("1.0.0.0"));
        assert!(v("1.2.3.4") > v("1.2.3"));
        assert!(v("1.0.0-alpha") < v("1.0.0"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.2") < v("1.0.0-alpha.10"));
        assert!(v("1.0.0-2") < v("1.0.0-alpha"));
        assert!(v("1.0.0-BETA") == v("1.0.0-beta"));
        assert!(v("1.0.0+a") == v("1.0.0+b"));
        assert!(v("10.0") > v("9.9.9.9"));
        for bad in [
            "",
            "v1",
            "1.2.3.4.5",
            "1..2",
            "1.0-",
            "1.0+",
            "1.0-be_ta",
            "1.x",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tag_text_includes_metadata() {
        assert_eq!(v("1.0.0").tag_text(), "");
        assert_eq!(v("1.0.0-beta.1").tag_text(), "beta.1");
        assert_eq!(v("1.0.0+sha").tag_text(), "+sha");
        assert_eq!(v("1.0.0.1-rc+sha").tag_text(), "rc+sha");
        assert!(v("1.0.0-rc").is_prerelease());
    }

    #[test]
    fn nuget_ranges() {
        assert!(within("", "0.0.1"));
        // A bare version is a minimum.
        assert!(within("1.0", "1.0.0"));
        assert!(within("1.0", "7.0"));
        assert!(!within("1.0", "0.9.9"));
        assert!(within("[1.0,2.0)", "1.0"));
        assert!(within("[1.0,2.0)", "1.9.9.9"));
        assert!(!within("[1.0,2.0)", "2.0.0"));
        assert!(within("[1.0,2.0)", "2.0.0-beta"));
        assert!(!within("(1.0,2.0]", "1.0"));
        assert!(within("(1.0,2.0]", "2.0"));
        assert!(within("(,3.0]", "0.1"));
        assert!(!within("(,3.0)", "3.0"));
        assert!(within("(1.0,)", "100.0"));
        assert!(within("[1.2.3]", "1.2.3.0"));
        assert!(!within("[1.2.3]", "1.2.4"));
        assert!(within(" [ 1.0 , 2.0 ) ", "1.5"));
        // The example in Octopus's channel documentation.
        assert!(within("[2.0.0-alpha.1,2.0.0)", "2.0.0-beta"));
        assert!(!within("[2.0.0-alpha.1,2.0.0)", "2.0.0"));
        assert!(!within("[2.0.0-alpha.1,2.0.0)", "2.0.0-alpha"));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "[1.0",
            "1.0)",
            "(1.0)",
            "[,]",
            "[1.0,2.0,3.0]",
            "[abc,2.0]",
            "()",
            "[",
            "x",
        ] {
            assert!(
                matches!(VersionRange::parse(bad), Err(VersionRuleError::BadRange(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            VersionRange::parse("[2.0,1.0]"),
            Err(VersionRuleError::EmptyRange(_))
        ));
        assert!(matches!(
            VersionRange::parse("[1.0,1.0)"),
            Err(VersionRuleError::EmptyRange(_))
        ));
        assert!(VersionRange::parse("[1.0,1.0]").is_ok());
    }

    #[test]
    fn tag_patterns_as_documented() {
        let rule = |tag: &str| VersionRule::parse("", tag).unwrap();
        let ok = |tag: &str, version: &str| rule(tag).check(version).is_ok();
        // ^$: no pre-release and no metadata.
        assert!(ok("^$", "1.0.0"));
        assert!(!ok("^$", "1.0.0-beta"));
        assert!(!ok("^$", "1.0.0+sha"));
        // Any pre-release.
        assert!(ok(r"^[^\+].*", "1.0.0-beta+sha"));
        assert!(!ok(r"^[^\+].*", "1.0.0+sha"));
        assert!(!ok(r"^[^\+].*", "1.0.0"));
        // No pre-release, metadata allowed.
        assert!(ok(r"^(|\+.*)$", "1.0.0+sha"));
        assert!(ok(r"^(|\+.*)$", "1.0.0"));
        assert!(!ok(r"^(|\+.*)$", "1.0.0-rc"));
        assert!(ok("^beta", "1.0.0-beta0003"));
        assert!(ok("beta", "1.0.0-mybeta"));
        // Look-ahead, as .NET patterns use.
        assert!(ok("^(?!beta).+", "1.0.0-feature-x"));
        assert!(!ok("^(?!beta).+", "1.0.0-beta"));
        // An empty pattern accepts anything.
        assert!(ok("", "1.0.0-anything"));
    }

    #[test]
    fn rules_explain_refusals() {
        let rule = VersionRule::parse("[1.0,2.0)", "^$").unwrap();
        assert_eq!(rule.check("1.5.0"), Ok(()));
        assert_eq!(rule.check("2.1.0"), Err(RuleMismatch::OutsideRange));
        assert_eq!(
            rule.check("1.5.0-rc.1"),
            Err(RuleMismatch::TagRefused("rc.1".into()))
        );
        assert_eq!(rule.check("banana"), Err(RuleMismatch::NotAVersion));
        assert!(rule
            .check("2.1.0")
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(matches!(
            VersionRule::parse("", "(unclosed"),
            Err(VersionRuleError::BadTag { .. })
        ));
    }
}
