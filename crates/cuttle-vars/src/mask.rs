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

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

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
    /// The longest value masked, in bytes: how much of a cut line must be
    /// held back for a value that may go on in the next piece.
    longest: usize,
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
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        let matcher = if patterns.is_empty() {
            Matcher::Empty
        } else {
            // Standard semantics: the only kind that reports overlapping
            // matches. An NFA, not the DFA chosen for few patterns: a DFA
            // takes about a kilobyte per byte of the values, so one large
            // secret (a key, a kubeconfig) cost hundreds of megabytes and
            // minutes to build, for every masker made.
            match AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .build(&patterns)
            {
                Ok(ac) => Matcher::Values(ac),
                Err(_) => Matcher::Unbuildable,
            }
        };
        Self { matcher, longest }
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
        let ranges = merged_ranges(ac, line);
        if ranges.is_empty() {
            return Cow::Borrowed(line);
        }
        let mut out = String::with_capacity(line.len());
        let mut copied = 0;
        for (start, end) in ranges {
            out.push_str(&line[copied..start]);
            out.push_str(MASK);
            copied = end;
        }
        out.push_str(&line[copied..]);
        Cow::Owned(out)
    }

    /// Where `text` may be cut so that no value is split: at most `at`,
    /// unless a value found runs across it, then at that value's end.
    /// Values that start before the cut and fit in `text` are all found.
    fn safe_cut(&self, text: &str, at: usize) -> usize {
        let mut cut = at.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Matcher::Values(ac) = &self.matcher {
            for (start, end) in merged_ranges(ac, text) {
                if start < cut && end > cut {
                    cut = end;
                }
            }
        }
        cut
    }
}

/// Every occurrence of every value in `text`, overlapping or touching ones
/// merged, in order.
fn merged_ranges(ac: &AhoCorasick, text: &str) -> Vec<(usize, usize)> {
    // Overlapping matches arrive ordered by where they end; sort by start
    // to merge them into disjoint ranges.
    let mut ranges: Vec<(usize, usize)> = ac
        .find_overlapping_iter(text)
        .map(|m| (m.start(), m.end()))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Masks output that arrives in pieces: a line too long to keep whole is
/// cut into pieces, and a value may straddle a cut, each half of it
/// harmless-looking alone. The end of a piece that may begin a value (up to
/// the longest value's length) is held back and masked with the next piece.
/// One per stream of output.
#[derive(Debug, Default)]
pub struct PieceMasker {
    held: String,
    /// The last piece said its line goes on.
    mid_line: bool,
}

impl PieceMasker {
    /// The masked text to show for a piece, `continues` when the line goes
    /// on in the next piece; `None` while all of it is still held back.
    pub fn piece(&mut self, masker: &Masker, text: &str, continues: bool) -> Option<String> {
        let mut whole = std::mem::take(&mut self.held);
        whole.push_str(text);
        self.mid_line = continues;
        if !continues {
            return Some(masker.mask_line(&whole).into_owned());
        }
        // A value starting before `cut` ends within `whole`, so it is found.
        let keep = masker.longest.saturating_sub(1);
        let cut = masker.safe_cut(&whole, whole.len().saturating_sub(keep));
        self.held = whole.split_off(cut);
        (!whole.is_empty()).then(|| masker.mask_line(&whole).into_owned())
    }

    /// Whether the next piece continues a line already begun.
    pub fn mid_line(&self) -> bool {
        self.mid_line
    }

    /// What is still held back when the output ends without finishing its
    /// line, masked.
    pub fn finish(&mut self, masker: &Masker) -> Option<String> {
        self.mid_line = false;
        let held = std::mem::take(&mut self.held);
        (!held.is_empty()).then(|| masker.mask_line(&held).into_owned())
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

    /// Pieces of one line, cut at `width` bytes as a line reader cuts, fed
    /// through a piece masker; the shown pieces joined.
    fn shown_in_pieces(m: &Masker, line: &str, width: usize) -> String {
        let mut pieces = PieceMasker::default();
        let mut shown = String::new();
        let mut rest = line;
        while !rest.is_empty() {
            let mut cut = width.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, after) = rest.split_at(cut);
            if let Some(s) = pieces.piece(m, piece, !after.is_empty()) {
                shown.push_str(&s);
            }
            rest = after;
        }
        shown.push_str(&pieces.finish(m).unwrap_or_default());
        shown
    }

    #[test]
    fn fault_a_value_across_a_cut_is_masked() {
        let secret = "hunter2-long-secret";
        let m = masker(&[secret, "short"]);
        for width in 1..40 {
            for at in 0..30 {
                let line = format!("{}{secret}{}", "a".repeat(at), "b".repeat(7));
                let shown = shown_in_pieces(&m, &line, width);
                assert_eq!(
                    shown,
                    format!("{}********{}", "a".repeat(at), "b".repeat(7)),
                    "width {width}, at {at}"
                );
            }
        }
        // At the very end of a cut line, several in a row, and non-ASCII text.
        assert_eq!(shown_in_pieces(&m, &format!("x{secret}"), 10), "x********");
        assert_eq!(
            shown_in_pieces(&m, &format!("{secret}-short-{secret}"), 7),
            "********-********-********"
        );
        let m = masker(&["clé-secrète"]);
        assert_eq!(
            shown_in_pieces(&m, "→→ clé-secrète ←←", 5),
            "→→ ******** ←←"
        );
    }

    #[test]
    fn pieces_of_a_line_without_values_pass_through() {
        let m = masker(&["zzz"]);
        let mut pieces = PieceMasker::default();
        assert_eq!(pieces.piece(&m, "abcdef", true).as_deref(), Some("abcd"));
        assert_eq!(pieces.piece(&m, "gh", false).as_deref(), Some("efgh"));
        assert_eq!(pieces.finish(&m), None);
        let empty = masker(&[]);
        assert_eq!(pieces.piece(&empty, "abc", true).as_deref(), Some("abc"));
    }

    #[test]
    fn fault_a_large_secret_makes_a_small_masker() {
        let secret = "k".repeat(100_000) + "-end";
        let m = masker(&[&secret, "short"]);
        let Matcher::Values(ac) = &m.matcher else {
            panic!("no matcher");
        };
        // Some bytes per byte of the values, not a kilobyte.
        assert!(
            ac.memory_usage() < 40 * secret.len(),
            "{}",
            ac.memory_usage()
        );
        assert_eq!(m.mask_line(&format!("[{secret}]")), "[********]");
    }

    #[test]
    fn works_on_non_ascii_text() {
        let m = masker(&["clé-secrète"]);
        assert_eq!(m.mask_line("→ clé-secrète ←"), "→ ******** ←");
    }
}
