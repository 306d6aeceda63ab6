//! The built-in filters (`#{Name | ToUpper}`), applied left to right.
//!
//! Behaviour follows Octostache: a filter that cannot do its job (missing
//! input, wrong options, unparseable input) returns an error, and the
//! evaluator then leaves the token as written.

mod date;
mod encoding;
mod escape;
mod hash;
mod number;
mod text;
mod uripart;
mod version;

#[cfg(test)]
mod cases_test;

/// The name of every built-in filter, as Octopus spells it.
pub const BUILT_IN: &[&str] = &[
    "ToUpper",
    "ToLower",
    "Trim",
    "Substring",
    "Truncate",
    "Replace",
    "Append",
    "Prepend",
    "Indent",
    "Match",
    "StartsWith",
    "EndsWith",
    "Contains",
    "HtmlEscape",
    "XmlEscape",
    "JsonEscape",
    "UriEscape",
    "UriDataEscape",
    "YamlSingleQuoteEscape",
    "YamlDoubleQuoteEscape",
    "PropertiesKeyEscape",
    "PropertiesValueEscape",
    "Markdown",
    "MarkdownToHtml",
    "ToBase64",
    "FromBase64",
    "Md5",
    "Sha1",
    "Sha256",
    "Sha384",
    "Sha512",
    "UriPart",
    "VersionMajor",
    "VersionMinor",
    "VersionPatch",
    "VersionRevision",
    "VersionPreRelease",
    "VersionPreReleasePrefix",
    "VersionPreReleaseCounter",
    "VersionMetadata",
    "Format",
    "AddHours",
    "AddDays",
    "NowDate",
    "NowDateUtc",
    "Null",
];

/// Why a filter could not be applied; the token is then left as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("unknown filter '{0}'")]
    Unknown(String),
    #[error("filter '{filter}': {reason}")]
    BadArguments { filter: String, reason: String },
    /// The result would grow past the output budget. Unlike the others this
    /// ends the evaluation: echoing the token would hide why.
    #[error("the result is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The filter's work (regex matches, lines) ran past the steps left of
    /// the evaluation's budget. Ends the evaluation too.
    #[error("the filter took more steps than were left")]
    TooComplex,
}

/// What a filter may use: how large its result may grow, and how many steps
/// of work (one per regex match, per line indented) it may still take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub max_output: usize,
    /// Spent by the filter as it works.
    pub steps: u64,
}

impl Budget {
    /// Takes one step, failing when none is left.
    pub(crate) fn step(&mut self) -> Result<(), FilterError> {
        self.steps = self.steps.checked_sub(1).ok_or(FilterError::TooComplex)?;
        Ok(())
    }
}

impl FilterError {
    pub(crate) fn bad(filter: &str, reason: impl Into<String>) -> Self {
        FilterError::BadArguments {
            filter: filter.to_owned(),
            reason: reason.into(),
        }
    }
}

/// What every filter returns.
pub(crate) type FilterResult = Result<Option<String>, FilterError>;

/// The output budget [`apply`] uses: the smallest a render allows.
pub const DEFAULT_MAX_OUTPUT: usize = 64 << 20;

/// Text a filter builds, refused the moment it would pass its budget, so a
/// filter that multiplies its input (a replacement quoting the text before
/// each match, an indent per line) fails after at most `limit` bytes instead
/// of first building all it was asked for.
pub(crate) struct Output {
    text: String,
    limit: usize,
}

impl Output {
    pub(crate) fn new(limit: usize) -> Self {
        Output {
            text: String::new(),
            limit,
        }
    }

    /// Fails unless `len` more bytes fit.
    pub(crate) fn reserve(&mut self, len: usize) -> Result<(), FilterError> {
        fits(self.text.len().saturating_add(len), self.limit)?;
        self.text.reserve(len);
        Ok(())
    }

    pub(crate) fn push_str(&mut self, s: &str) -> Result<(), FilterError> {
        fits(self.text.len().saturating_add(s.len()), self.limit)?;
        self.text.push_str(s);
        Ok(())
    }

    pub(crate) fn push(&mut self, c: char) -> Result<(), FilterError> {
        fits(self.text.len() + c.len_utf8(), self.limit)?;
        self.text.push(c);
        Ok(())
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn into_string(self) -> String {
        self.text
    }
}

impl std::fmt::Write for Output {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s).map_err(|_| std::fmt::Error)
    }
}

/// Fails when a result of `len` bytes would pass `limit`.
pub(crate) fn fits(len: usize, limit: usize) -> Result<(), FilterError> {
    if len > limit {
        Err(FilterError::TooLarge { limit })
    } else {
        Ok(())
    }
}

/// Applies the filter `name` (case-insensitive) with its evaluated `args` to
/// `input` (`None` when there is no input value, as in `#{ | NowDate}`).
/// `Ok(None)` means the filter yields no value at all. The result may be up
/// to [`DEFAULT_MAX_OUTPUT`] bytes; see [`apply_within`].
pub fn apply(
    name: &str,
    input: Option<&str>,
    args: &[String],
) -> Result<Option<String>, FilterError> {
    let mut budget = Budget {
        max_output: DEFAULT_MAX_OUTPUT,
        steps: u64::MAX,
    };
    apply_within(name, input, args, &mut budget)
}

/// [`apply`] within a budget: a result that would be larger than
/// `budget.max_output` bytes is [`FilterError::TooLarge`], found while it is
/// built; work past `budget.steps` is [`FilterError::TooComplex`]. The steps
/// taken are subtracted from `budget.steps`.
///
/// Filters whose result can outgrow their input and options check every
/// piece they add. The others (case, trimming, cutting, hashes, decoding,
/// versions, URI parts, dates and numbers) make results no larger than a
/// small multiple of their input and options, which the evaluator has
/// already held to the budget; their result is checked once made.
pub fn apply_within(
    name: &str,
    input: Option<&str>,
    args: &[String],
    budget: &mut Budget,
) -> Result<Option<String>, FilterError> {
    let value = dispatch(name, input, args, budget)?;
    if let Some(v) = &value {
        fits(v.len(), budget.max_output)?;
    }
    Ok(value)
}

fn dispatch(name: &str, input: Option<&str>, args: &[String], budget: &mut Budget) -> FilterResult {
    let limit = budget.max_output;
    let lower = name.trim().to_ascii_lowercase();
    let f = lower.as_str();
    match f {
        "toupper" | "tolower" | "trim" | "substring" | "truncate" | "replace" | "append"
        | "prepend" | "indent" | "match" | "startswith" | "endswith" | "contains" => {
            text::apply(f, input, args, budget)
        }
        "htmlescape"
        | "xmlescape"
        | "jsonescape"
        | "uriescape"
        | "uridataescape"
        | "yamlsinglequoteescape"
        | "yamldoublequoteescape"
        | "propertieskeyescape"
        | "propertiesvalueescape"
        | "markdown"
        | "markdowntohtml" => escape::apply(f, input, args, limit),
        "tobase64" | "frombase64" => encoding::apply(f, input, args, limit),
        "md5" | "sha1" | "sha256" | "sha384" | "sha512" => hash::apply(f, input, args),
        "uripart" => uripart::apply(input, args),
        "versionmajor"
        | "versionminor"
        | "versionpatch"
        | "versionrevision"
        | "versionprerelease"
        | "versionprereleaseprefix"
        | "versionprereleasecounter"
        | "versionmetadata" => version::apply(f, input),
        "format" | "addhours" | "adddays" | "nowdate" | "nowdateutc" => date::apply(f, input, args),
        // Yields no value whatever it is given.
        "null" => Ok(None),
        _ => Err(FilterError::Unknown(name.to_owned())),
    }
}

/// The input, or an error naming the filter when there is none.
pub(crate) fn require<'a>(filter: &str, input: Option<&'a str>) -> Result<&'a str, FilterError> {
    input.ok_or_else(|| FilterError::bad(filter, "no input value"))
}

/// Fails when a filter that takes no options was given some.
pub(crate) fn no_options(filter: &str, args: &[String]) -> Result<(), FilterError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(FilterError::bad(filter, "takes no options"))
    }
}

/// `int.TryParse` with .NET's default `NumberStyles.Integer`: surrounding
/// white space and one leading sign allowed, ASCII digits, 32-bit range.
pub(crate) fn parse_int(s: &str) -> Option<i32> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = 0;
    for b in digits.bytes() {
        v = v * 10 + i64::from(b - b'0');
        if v > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    i32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_unknown_is_reported() {
        assert_eq!(apply("TOUPPER", Some("a"), &[]), Ok(Some("A".into())));
        assert_eq!(
            apply("nope", Some("a"), &[]),
            Err(FilterError::Unknown("nope".into()))
        );
        assert_eq!(apply("Null", Some("a"), &[]), Ok(None));
        assert_eq!(apply("null", None, &[]), Ok(None));
    }

    #[test]
    fn int_parsing_matches_dotnet() {
        assert_eq!(parse_int(" 12 "), Some(12));
        assert_eq!(parse_int("+3"), Some(3));
        assert_eq!(parse_int("-2147483648"), Some(i32::MIN));
        assert_eq!(parse_int("2147483648"), None);
        assert_eq!(parse_int("99999999999999999999999"), None);
        assert_eq!(parse_int("1.0"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
    }

    /// Every filter with awkward inputs and options: errors are fine,
    /// panics are not.
    #[test]
    fn no_panics_on_awkward_input() {
        let names = BUILT_IN;
        let inputs = [
            None,
            Some(""),
            Some("é日😀\r\n\r"),
            Some("%%%é"),
            Some("-"),
            Some("1e400"),
            Some("0001-01-01 00:00:00"),
            Some("9999-12-31T23:59:59.9999999Z"),
            Some("http://[::1]:0/%zz#"),
            Some("v99999999999.1"),
            Some("-79228162514264337593543950335.5"),
            Some("((((a"),
            Some("\u{0}"),
        ];
        let arg_sets: [&[&str]; 14] = [
            &[],
            &["-1"],
            &["2147483647"],
            &["2147483647", "2147483647"],
            &["é"],
            &["("],
            &["$", "$${"],
            &["F999999999"],
            &["0,,,,,,,,,.##%%%‰E+0000"],
            &["\\"],
            &["'"],
            &["yyyyyyyyyyyy fffffff zzz K"],
            &["Date", "%"],
            &["X", "Y", "Z"],
        ];
        for name in names {
            for input in inputs {
                for args in arg_sets {
                    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                    let _ = apply(name, input, &args);
                }
            }
        }
    }
}
