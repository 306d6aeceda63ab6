//! Masking sensitive values in task log lines.
//!
//! Every occurrence of a sensitive value, alone or inside a longer line, is
//! replaced by `********`. Matching is exact (case-sensitive): a secret is a
//! byte string, not a word.
//!
//! # What is registered
//!
//! - Every non-empty value, whatever its length. Like Octopus, Cuttle does
//!   not second-guess a short secret: a one-character sensitive value masks
//!   that character everywhere, which is ugly but never leaks.
//! - For a value spanning several lines, also each of its lines, trimmed, so
//!   a script that prints a key or certificate line by line is masked line by
//!   line. Here a *line* shorter than [`MIN_LINE_FRAGMENT`] characters is not
//!   registered: such fragments (`{`, `}`, `-->`) carry next to nothing of
//!   the secret and would otherwise blank out ordinary punctuation in every
//!   log line. Whitespace-only lines are skipped for the same reason.
//!
//! # Overlaps
//!
//! All occurrences of all values are found, including overlapping ones, and
//! overlapping or touching ranges are merged into one mask. With values
//! `abc` and `bcd`, the line `abcd` becomes `********`, where taking only the
//! leftmost-longest match would have left the `d` of `bcd` visible.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};

/// What replaces a sensitive value.
pub const MASK: &str = "********";

/// The shortest line of a multi-line value that is masked on its own (see
/// the module docs); whole values are masked at any length.
pub const MIN_LINE_FRAGMENT: usize = 3;

/// Masks a fixed set of sensitive values; build it once per task and call
/// [`Masker::mask_line`] for every line written to the log.
#[derive(Clone, Debug)]
pub struct Masker {
    matcher: Matcher,
}

#[derive(Clone, Debug)]
enum Matcher {
    /// Nothing to mask.
    Empty,
    Values(AhoCorasick),
    /// The values could not be compiled (only possible for absurdly large
    /// sets). Fail closed: mask whole lines rather than leak.
    Unbuildable,
}

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for value in values {
            if value.is_empty() {
                continue;
            }
            if value.contains('\n') {
                for line in value.lines() {
                    let line = line.trim();
                    if line.chars().count() >= MIN_LINE_FRAGMENT {
                        patterns.push(line.to_owned());
                    }
                }
            }
            patterns.push(value);
        }
        patterns.sort_unstable();
        patterns.dedup();
        let matcher = if patterns.is_empty() {
            Matcher::Empty
        } else {
            // Standard semantics: the only kind that reports overlapping matches.
            match AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
            {
                Ok(ac) => Matcher::Values(ac),
                Err(_) => Matcher::Unbuildable,
            }
        };
        Self { matcher }
    }

    /// Whether this masker has nothing to mask.
    pub fn is_empty(&self) -> bool {
        matches!(self.matcher, Matcher::Empty)
    }

    /// `line` with every sensitive value in it replaced by [`MASK`];
    /// borrowed unchanged when there is nothing to mask.
    pub fn mask_line<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let ac = match &self.matcher {
            Matcher::Empty => return Cow::Borrowed(line),
            Matcher::Unbuildable if line.is_empty() => return Cow::Borrowed(line),
            Matcher::Unbuildable => return Cow::Owned(MASK.to_owned()),
            Matcher::Values(ac) => ac,
        };
        // Overlapping matches arrive ordered by where they end; sort by start
        // to merge them into disjoint ranges.
        let mut ranges: Vec<(usize, usize)> = ac
            .find_overlapping_iter(line)
            .map(|m| (m.start(), m.end()))
            .collect();
        if ranges.is_empty() {
            return Cow::Borrowed(line);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(line.len());
        let mut copied = 0;
        let mut current = ranges[0];
        for &(start, end) in &ranges[1..] {
            if start <= current.1 {
                current.1 = current.1.max(end);
            } else {
                out.push_str(&line[copied..current.0]);
                out.push_str(MASK);
                copied = current.1;
                current = (start, end);
            }
        }
        out.push_str(&line[copied..current.0]);
        out.push_str(MASK);
        out.push_str(&line[current.1..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(values: &[&str]) -> Masker {
        Masker::new(values.iter().map(|v| v.to_string()))
    }

    #[test]
    fn masks_whole_lines_and_parts_of_lines() {
        let m = masker(&["hunter2"]);
        assert_eq!(m.mask_line("hunter2"), "********");
        assert_eq!(
            m.mask_line("password=hunter2;user=sa"),
            "password=********;user=sa"
        );
        assert_eq!(m.mask_line("hunter2 and hunter2"), "******** and ********");
    }

    #[test]
    fn leaves_clean_lines_borrowed() {
        let m = masker(&["hunter2"]);
        assert!(matches!(
            m.mask_line("nothing secret here"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(masker(&[]).mask_line("hunter2"), Cow::Borrowed(_)));
    }

    #[test]
    fn ignores_empty_values() {
        let m = masker(&["", ""]);
        assert!(m.is_empty());
        assert_eq!(m.mask_line("anything"), "anything");
    }

    #[test]
    fn matching_is_case_sensitive() {
        let m = masker(&["Secret"]);
        assert_eq!(
            m.mask_line("secret Secret SECRET"),
            "secret ******** SECRET"
        );
    }

    #[test]
    fn short_values_are_still_masked() {
        let m = masker(&["x"]);
        assert_eq!(m.mask_line("max"), "ma********");
    }

    #[test]
    fn the_longest_value_wins_where_values_nest() {
        let m = masker(&["pass", "password123"]);
        assert_eq!(m.mask_line("pw: password123!"), "pw: ********!");
        assert_eq!(m.mask_line("pass-through"), "********-through");
    }

    #[test]
    fn overlapping_values_are_masked_as_one() {
        let m = masker(&["abc", "bcd"]);
        assert_eq!(m.mask_line("xabcdx"), "x********x");
        // Touching occurrences merge too, so the mask count reveals nothing.
        assert_eq!(m.mask_line("abcabc"), "********");
    }

    #[test]
    fn multi_line_values_are_masked_line_by_line() {
        let key = "-----BEGIN KEY-----\r\n  MIIBOgIBAAJBAKj34\n}\n\n-----END KEY-----\n";
        let m = masker(&[key]);
        assert_eq!(m.mask_line("-----BEGIN KEY-----"), "********");
        // Indentation and a carriage return differ in the log; the text does not.
        assert_eq!(m.mask_line("    MIIBOgIBAAJBAKj34\r"), "    ********\r");
        assert_eq!(m.mask_line("key: -----END KEY-----"), "key: ********");
        // The whole value, if a writer logs it in one piece.
        assert_eq!(m.mask_line(&format!("[{key}]")), "[********]");
        // Fragments too short to carry the secret are not masked on their own.
        assert_eq!(m.mask_line("fn main() {}"), "fn main() {}");
    }

    #[test]
    fn works_on_non_ascii_text() {
        let m = masker(&["clé-secrète"]);
        assert_eq!(m.mask_line("→ clé-secrète ←"), "→ ******** ←");
    }
}
