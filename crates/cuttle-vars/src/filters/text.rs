//! Text filters: case, trimming, cutting, regex replace, concatenation,
//! indentation and the true/false comparisons.

use super::{fits, no_options, parse_int, require, Budget, FilterError, FilterResult, Output};
use regex::{Captures, Regex, RegexBuilder};

/// Compiled-program limit for user-supplied patterns, so a pathological
/// pattern fails instead of using lots of memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(super) fn apply(
    f: &str,
    input: Option<&str>,
    args: &[String],
    budget: &mut Budget,
) -> FilterResult {
    let limit = budget.max_output;
    match f {
        "toupper" => {
            no_options(f, args)?;
            Ok(Some(simple_case(require(f, input)?, true)))
        }
        "tolower" => {
            no_options(f, args)?;
            Ok(Some(simple_case(require(f, input)?, false)))
        }
        "trim" => trim(require(f, input)?, args),
        "substring" => substring(require(f, input)?, args),
        "truncate" => truncate(require(f, input)?, args, limit),
        "replace" => replace(require(f, input)?, args, budget),
        "append" | "prepend" => concat(f, input, args, limit),
        "indent" => indent(require(f, input)?, args, budget),
        "match" | "startswith" | "endswith" | "contains" => compare(f, input, args),
        _ => Err(FilterError::Unknown(f.to_owned())),
    }
}

/// .NET's `ToUpper`/`ToLower` map one char to one char (`ß` stays `ß`),
/// unlike Rust's full case mapping, so multi-char mappings are skipped.
fn simple_case(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            let mut m: Vec<char> = if upper {
                c.to_uppercase().collect()
            } else {
                c.to_lowercase().collect()
            };
            if m.len() == 1 {
                m.pop().unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

fn trim(s: &str, args: &[String]) -> FilterResult {
    // Only the first option is looked at, as in Octostache.
    match args.first().map(|a| a.to_lowercase()) {
        None => Ok(Some(s.trim().to_owned())),
        Some(a) if a == "start" => Ok(Some(s.trim_start().to_owned())),
        Some(a) if a == "end" => Ok(Some(s.trim_end().to_owned())),
        Some(_) => Err(FilterError::bad("trim", "option must be start or end")),
    }
}

/// Non-negative integer option.
fn count(filter: &str, s: &str) -> Result<usize, FilterError> {
    match parse_int(s) {
        Some(n) if n >= 0 => usize::try_from(n).map_err(|_| FilterError::bad(filter, "bad number")),
        _ => Err(FilterError::bad(
            filter,
            format!("'{s}' is not a non-negative integer"),
        )),
    }
}

/// `Substring [start] length`, counted in chars. A start past the end is an
/// error; a length past the end yields the rest.
fn substring(s: &str, args: &[String]) -> FilterResult {
    let (start, len) = match args {
        [len] => (0, count("substring", len)?),
        [start, len] => (count("substring", start)?, count("substring", len)?),
        _ => return Err(FilterError::bad("substring", "expects one or two options")),
    };
    if start > s.chars().count() {
        return Err(FilterError::bad("substring", "start is past the end"));
    }
    Ok(Some(s.chars().skip(start).take(len).collect()))
}

/// `Truncate length [suffix]`; the suffix (default `...`) is only added when
/// something was cut off.
fn truncate(s: &str, args: &[String], limit: usize) -> FilterResult {
    let len = count(
        "truncate",
        args.first()
            .ok_or_else(|| FilterError::bad("truncate", "no length"))?,
    )?;
    // Byte offset of the char at `len`, if the string is longer than that.
    match s.char_indices().nth(len) {
        Some((cut, _)) => {
            let suffix = args.get(1).map(String::as_str).unwrap_or("...");
            fits(cut.saturating_add(suffix.len()), limit)?;
            Ok(Some(format!("{}{}", &s[..cut], suffix)))
        }
        None => Ok(Some(s.to_owned())),
    }
}

pub(super) fn compile(filter: &str, pattern: &str) -> Result<Regex, FilterError> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| FilterError::bad(filter, format!("bad regular expression: {e}")))
}

/// A replacement can quote the whole input at every match (`` $` ``, `$_`),
/// so the result is built piece by piece in an [`Output`] that stops at the
/// budget; each match is a step of the evaluation's work.
fn replace(s: &str, args: &[String], budget: &mut Budget) -> FilterResult {
    let pattern = args
        .first()
        .ok_or_else(|| FilterError::bad("replace", "no pattern"))?;
    let replacement = args.get(1).map(String::as_str).unwrap_or("");
    let re = compile("replace", pattern)?;
    let mut out = Output::new(budget.max_output);
    let mut copied = 0;
    for caps in re.captures_iter(s) {
        budget.step()?;
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&s[copied..whole.start()])?;
        expand_dotnet(&re, &caps, s, replacement, &mut out)?;
        copied = whole.end();
    }
    out.push_str(&s[copied..])?;
    Ok(Some(out.into_string()))
}

/// Expands a .NET substitution string into `out`: `$n`, `${name}`, `$$`,
/// `$&`, `` $` ``, `$'`, `$+`, `$_`. A reference to a group that does not
/// exist stays literal text, as in .NET (Rust's own syntax would give an
/// empty string instead).
fn expand_dotnet(
    re: &Regex,
    caps: &Captures<'_>,
    input: &str,
    repl: &str,
    out: &mut Output,
) -> Result<(), FilterError> {
    let whole = caps.get(0).map(|m| (m.start(), m.end())).unwrap_or((0, 0));
    let mut rest = repl;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos])?;
        let after = &rest[pos + 1..];
        let mut consumed = 0;
        match after.as_bytes().first() {
            Some(b'$') => {
                out.push('$')?;
                consumed = 1;
            }
            Some(b'&') => {
                out.push_str(&input[whole.0..whole.1])?;
                consumed = 1;
            }
            Some(b'`') => {
                out.push_str(&input[..whole.0])?;
                consumed = 1;
            }
            Some(b'\'') => {
                out.push_str(&input[whole.1..])?;
                consumed = 1;
            }
            Some(b'_') => {
                out.push_str(input)?;
                consumed = 1;
            }
            Some(b'+') => {
                // The last group of the pattern (empty when it did not take part).
                let last = caps.len().saturating_sub(1);
                if last > 0 {
                    out.push_str(caps.get(last).map_or("", |m| m.as_str()))?;
                } else {
                    out.push_str(&input[whole.0..whole.1])?;
                }
                consumed = 1;
            }
            Some(b) if b.is_ascii_digit() => {
                let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                if let Ok(n) = after[..digits].parse::<usize>() {
                    if n < caps.len() {
                        out.push_str(caps.get(n).map_or("", |m| m.as_str()))?;
                        consumed = digits;
                    }
                }
            }
            Some(b'{') => {
                if let Some(close) = after.find('}') {
                    let name = &after[1..close];
                    let group = if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                        name.parse::<usize>()
                            .ok()
                            .filter(|&n| n < caps.len())
                            .map(|n| caps.get(n))
                    } else if re.capture_names().any(|c| c == Some(name)) {
                        Some(caps.name(name))
                    } else {
                        None
                    };
                    if let Some(m) = group {
                        out.push_str(m.map_or("", |m| m.as_str()))?;
                        consumed = close + 1;
                    }
                }
            }
            _ => {}
        }
        if consumed == 0 {
            // Not a substitution: the `$` is literal.
            out.push('$')?;
        }
        rest = &after[consumed..];
    }
    out.push_str(rest)
}

/// `Append`/`Prepend`: options concatenated; no input counts as empty, but
/// at least one option is required.
fn concat(f: &str, input: Option<&str>, args: &[String], limit: usize) -> FilterResult {
    if args.is_empty() {
        return Err(FilterError::bad(f, "expects at least one option"));
    }
    let base = input.unwrap_or("");
    let mut out = Output::new(limit);
    // The size is known: refuse before copying anything.
    out.reserve(
        args.iter()
            .fold(base.len(), |total, a| total.saturating_add(a.len())),
    )?;
    if f == "append" {
        out.push_str(base)?;
    }
    for a in args {
        out.push_str(a)?;
    }
    if f != "append" {
        out.push_str(base)?;
    }
    Ok(Some(out.into_string()))
}

/// Largest indent size, as Octostache parses sizes as a byte.
const MAX_INDENT: usize = 255;

/// A size option of one to three digits up to 255.
fn indent_size(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<usize>().ok().filter(|&n| n <= MAX_INDENT)
}

/// `Indent [N | M/N | /N | text | first rest]`: the first indent goes
/// before the text, the second after every line feed.
fn indent(s: &str, args: &[String], budget: &mut Budget) -> FilterResult {
    if s.is_empty() {
        return Ok(Some(String::new()));
    }
    let (first, rest): (String, String) = match args {
        [] => ("    ".into(), "    ".into()),
        [one] => {
            let sizes = match one.split_once('/') {
                None => indent_size(one).map(|n| (n, n)),
                Some(("", sub)) => indent_size(sub).map(|n| (0, n)),
                Some((init, sub)) => indent_size(init).zip(indent_size(sub)),
            };
            match sizes {
                Some((a, b)) => (" ".repeat(a), " ".repeat(b)),
                // Anything that is not a size is the indent text itself.
                None => (one.clone(), one.clone()),
            }
        }
        [a, b] => (a.clone(), b.clone()),
        _ => return Err(FilterError::bad("indent", "expects at most two options")),
    };
    // Every line feed gets the whole indent: built line by line, within the budget.
    let mut out = Output::new(budget.max_output);
    out.push_str(&first)?;
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            budget.step()?;
            out.push('\n')?;
            out.push_str(&rest)?;
        }
        out.push_str(line)?;
    }
    Ok(Some(out.into_string()))
}

/// `Match` (regex), `StartsWith`, `EndsWith`, `Contains`: case-sensitive,
/// exactly one option, result `true`/`false`.
fn compare(f: &str, input: Option<&str>, args: &[String]) -> FilterResult {
    let s = require(f, input)?;
    let [needle] = args else {
        return Err(FilterError::bad(f, "expects exactly one option"));
    };
    let result = match f {
        "match" => compile(f, needle)?.is_match(s),
        "startswith" => s.starts_with(needle.as_str()),
        "endswith" => s.ends_with(needle.as_str()),
        _ => s.contains(needle.as_str()),
    };
    Ok(Some(result.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::apply;
    use super::super::FilterError;

    fn run(f: &str, input: &str, args: &[&str]) -> Result<Option<String>, FilterError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        apply(f, Some(input), &args)
    }

    fn ok(f: &str, input: &str, args: &[&str]) -> String {
        run(f, input, args)
            .expect("filter failed")
            .expect("no value")
    }

    #[test]
    fn case_uses_simple_mapping() {
        assert_eq!(ok("ToUpper", "straße", &[]), "STRAßE");
        assert_eq!(ok("ToLower", "ÀB", &[]), "àb");
        assert!(run("ToUpper", "a", &["x"]).is_err());
        assert!(apply("ToUpper", None, &[]).is_err());
    }

    #[test]
    fn substring_and_truncate_respect_char_boundaries() {
        assert_eq!(ok("Substring", "日本語テキスト", &["2", "3"]), "語テキ");
        assert_eq!(ok("Substring", "日本", &["2", "3"]), "");
        assert!(run("Substring", "日本", &["3", "1"]).is_err());
        assert_eq!(ok("Substring", "abc", &["1", "2147483647"]), "bc");
        assert_eq!(ok("Truncate", "日本語", &["1"]), "日...");
        assert_eq!(ok("Truncate", "日本語", &["2147483647"]), "日本語");
        assert!(run("Truncate", "abc", &["99999999999"]).is_err());
    }

    #[test]
    fn replace_uses_dotnet_substitutions() {
        assert_eq!(ok("Replace", "abc", &["(b)", "[$1a]"]), "a[ba]c");
        assert_eq!(ok("Replace", "abc", &["(b)", "$2"]), "a$2c");
        assert_eq!(ok("Replace", "abc", &["b", "$$"]), "a$c");
        assert_eq!(ok("Replace", "abc", &["b", "<$&>"]), "a<b>c");
        assert_eq!(ok("Replace", "abc", &["(?<x>b)", "${x}${y}"]), "ab${y}c");
        assert_eq!(ok("Replace", "abc", &["b", "[$`|$']"]), "a[a|c]c");
        assert_eq!(ok("Replace", "abc", &["b", "$"]), "a$c");
        assert!(run("Replace", "abc", &["("]).is_err());
    }

    #[test]
    fn indent_sizes_and_texts() {
        assert_eq!(ok("Indent", "a\nb", &["1/0"]), " a\nb");
        assert_eq!(ok("Indent", "a\nb", &["x/"]), "x/a\nx/b");
        assert_eq!(ok("Indent", "a", &["0255"]), "0255a");
        assert_eq!(ok("Indent", "a\nb", &["-", "+"]), "-a\n+b");
    }

    #[test]
    fn comparisons() {
        assert_eq!(ok("Contains", "abc", &[""]), "true");
        assert_eq!(ok("Match", "abc", &["^b"]), "false");
        assert!(run("Match", "abc", &["["]).is_err());
    }
}
