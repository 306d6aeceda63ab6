//! "Structured Configuration Variables": values in JSON and YAML files
//! replaced by the variables whose names are their key paths.
//!
//! The rules follow Octopus's:
//! - a variable named `Logging:Level` (or `Logging.Level`: either separator
//!   between keys) addresses `{"Logging": {"Level": …}}`; array items by
//!   index, `Servers:0:Name`. Keys match case-insensitively. Variables
//!   whose names start with `Octopus` are ignored unless followed by `:`, so
//!   the system's own `Octopus.Action…` variables never collide with keys;
//! - only keys that exist are replaced; nothing is added;
//! - a number stays a number when the variable's text is one (else it
//!   becomes a string), a boolean stays a boolean for `true`/`false` (any
//!   case), strings and nulls become strings, and an object or array is
//!   replaced by the variable's text parsed as JSON (any JSON value; when it
//!   is not JSON, the key is left and the change reports why);
//! - when variables address both a key and something inside it, the outer
//!   one wins.
//!
//! Unlike Octopus, which re-serialises the whole file, only the replaced
//! values are rewritten: key order, formatting and (YAML) comments are kept.
//! Every matching file is parsed before any is written: an invalid file
//! fails the call naming it, and no file is changed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use cuttle_vars::VariableDictionary;
use serde::de::IgnoredAny;

use super::files::{matching_files, target_matcher, write_atomically, PatternError};
use super::yaml;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// One variable that addressed a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructuredChange {
    pub file: PathBuf,
    /// The variable's name as defined.
    pub variable: String,
    /// The key path, as found in the file, joined with `:`.
    pub key: String,
    pub outcome: StructuredOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StructuredOutcome {
    Replaced,
    /// Left as it was, with why (to log as a warning).
    Skipped {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StructuredError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("{file} is not valid {format}: {reason}; no file was changed")]
    Invalid {
        file: PathBuf,
        format: &'static str,
        reason: String,
    },
    /// Replacing values would have produced a file that does not parse (a
    /// layout this code does not handle); no file was changed.
    #[error("{file}: replacing values would make it invalid ({reason}); no file was changed")]
    Rewrite { file: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a value is, which decides how a variable's text replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A value found in a document, at `path`, occupying `range` (bytes).
#[derive(Clone, Debug)]
pub(super) struct Slot<S> {
    pub path: Vec<String>,
    pub kind: Kind,
    pub range: Range<usize>,
    /// Format-specific: how to write the new value there.
    pub style: S,
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Yaml,
}

impl Format {
    fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
        }
    }
}

/// Replaces values in the JSON (`.json`) and YAML (`.yaml`, `.yml`) files
/// under `root` matching `globs` (the rules of
/// [`super::substitute_files`]; files with other extensions are ignored),
/// following Octopus's rules (see the module documentation). Files whose
/// content changed are written back atomically, keeping their mode and
/// UTF-8 byte order mark; empty files are left alone.
pub fn replace_structured(
    root: &Path,
    globs: &[String],
    vars: &VariableDictionary,
) -> Result<Vec<StructuredChange>, StructuredError> {
    let set = target_matcher(globs)?;
    let files = matching_files(root, &set).map_err(|source| StructuredError::Io {
        path: root.to_owned(),
        source,
    })?;
    let mut changes = Vec::new();
    let mut writes = Vec::new();
    for rel in files {
        let Some(format) = Format::of(&rel) else {
            continue;
        };
        let file = root.join(rel);
        let bytes = fs::read(&file).map_err(|source| StructuredError::Io {
            path: file.clone(),
            source,
        })?;
        let (bom, body) = match bytes.strip_prefix(UTF8_BOM) {
            Some(body) => (UTF8_BOM, body),
            None => (&[][..], &bytes[..]),
        };
        let invalid = |reason: String| StructuredError::Invalid {
            file: file.clone(),
            format: format.name(),
            reason,
        };
        let text =
            std::str::from_utf8(body).map_err(|e| invalid(format!("not UTF-8 text ({e})")))?;
        if text.trim().is_empty() {
            continue;
        }
        let (new_text, found) = match format {
            Format::Json => {
                let slots = json_slots(text).map_err(invalid)?;
                apply(text, slots, vars, render_json)
            }
            Format::Yaml => {
                let slots = yaml::slots(text).map_err(invalid)?;
                apply(text, slots, vars, yaml::render)
            }
        };
        for (variable, key, outcome) in found {
            changes.push(StructuredChange {
                file: file.clone(),
                variable,
                key,
                outcome,
            });
        }
        if new_text != text {
            // A safety net for the splicing: never write what does not parse.
            let check = match format {
                Format::Json => serde_json::from_str::<IgnoredAny>(&new_text)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Format::Yaml => yaml::slots(&new_text).map(drop),
            };
            if let Err(reason) = check {
                return Err(StructuredError::Rewrite { file, reason });
            }
            let mut out = bom.to_vec();
            out.extend_from_slice(new_text.as_bytes());
            writes.push((file, out));
        }
    }
    for (file, out) in writes {
        write_atomically(&file, &out)
            .map_err(|source| StructuredError::Io { path: file, source })?;
    }
    Ok(changes)
}

/// The variables that address `slots`, the new text, and what happened to
/// each (variable, key joined with `:`, outcome).
fn apply<S>(
    text: &str,
    slots: Vec<Slot<S>>,
    vars: &VariableDictionary,
    render: impl Fn(&Slot<S>, &str) -> Result<String, String>,
) -> (String, Vec<(String, String, StructuredOutcome)>) {
    let lower: Vec<Vec<String>> = slots
        .iter()
        .map(|s| s.path.iter().map(|p| p.to_lowercase()).collect())
        .collect();
    // Candidates by a key in which both separators read as `:`; the exact
    // comparison below then tells `A.B` the key from `A` then `B`.
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, path) in lower.iter().enumerate() {
        by_key
            .entry(loose_key(&path.join(":")))
            .or_default()
            .push(i);
    }
    let mut chosen: Vec<Option<(&str, &str)>> = vec![None; slots.len()];
    for (name, value) in vars.iter() {
        let name_lower = name.to_lowercase();
        if name_lower.starts_with("octopus") && !name_lower.starts_with("octopus:") {
            continue;
        }
        let Some(candidates) = by_key.get(&loose_key(&name_lower)) else {
            continue;
        };
        for &i in candidates {
            if addresses(&name_lower, &lower[i]) {
                // Later definitions win, as in Octopus.
                chosen[i] = Some((name, value));
            }
        }
    }

    let mut rendered: Vec<(usize, &str, Result<String, String>)> = chosen
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|(name, value)| (i, name, render(&slots[i], value))))
        .collect();
    let replaced: HashMap<&[String], &str> = rendered
        .iter()
        .filter(|(_, _, r)| r.is_ok())
        .map(|(i, name, _)| (slots[*i].path.as_slice(), *name))
        .collect();
    let mut results = Vec::new();
    let mut edits = Vec::new();
    rendered.sort_by_key(|(i, _, _)| slots[*i].range.start);
    for (i, name, outcome) in rendered {
        let slot = &slots[i];
        let key = slot.path.join(":");
        let outer = (1..slot.path.len()).find_map(|n| replaced.get(&slot.path[..n]));
        let outcome = match (outcome, outer) {
            (Err(reason), _) => StructuredOutcome::Skipped { reason },
            (Ok(_), Some(outer)) => StructuredOutcome::Skipped {
                reason: format!("an enclosing key was replaced by the variable '{outer}'"),
            },
            (Ok(new), None) => {
                edits.push((slot.range.clone(), new));
                StructuredOutcome::Replaced
            }
        };
        results.push((name.to_owned(), key, outcome));
    }

    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut seen = HashSet::new();
    for (range, new) in edits {
        // Ranges of distinct, non-nested values never overlap; a duplicate
        // range (the same node twice) is written once.
        if range.start < at || !seen.insert(range.start) {
            continue;
        }
        out.push_str(&text[at..range.start]);
        out.push_str(&new);
        at = range.end;
    }
    out.push_str(&text[at..]);
    (out, results)
}

fn loose_key(s: &str) -> String {
    s.replace('.', ":")
}

/// Whether the (lowercased) variable name addresses the (lowercased) key
/// path: the keys in order, separated by `:` or `.`.
fn addresses(name: &str, path: &[String]) -> bool {
    let mut rest = name;
    for (n, key) in path.iter().enumerate() {
        let Some(after) = rest.strip_prefix(key.as_str()) else {
            return false;
        };
        rest = after;
        if n + 1 < path.len() {
            let Some(after) = rest.strip_prefix([':', '.']) else {
                return false;
            };
            rest = after;
        }
    }
    rest.is_empty()
}

/// The text replacing a JSON value of `slot.kind` by `value`.
fn render_json(slot: &Slot<()>, value: &str) -> Result<String, String> {
    let string = || serde_json::Value::String(value.to_owned()).to_string();
    Ok(match slot.kind {
        Kind::Number => number_text(value).unwrap_or_else(string),
        Kind::Bool => bool_text(value).map(str::to_owned).unwrap_or_else(string),
        Kind::String | Kind::Null => string(),
        Kind::Object | Kind::Array => {
            let trimmed = value.trim();
            serde_json::from_str::<IgnoredAny>(trimmed).map_err(|e| {
                format!(
                    "the value is not valid JSON ({e}), which replacing an object or array needs"
                )
            })?;
            trimmed.to_owned()
        }
    })
}

/// The variable's text as a number, written canonically, if it is one.
pub(super) fn number_text(value: &str) -> Option<String> {
    let v = value.trim();
    if let Ok(i) = v.parse::<i64>() {
        return Some(i.to_string());
    }
    let f = v.parse::<f64>().ok().filter(|f| f.is_finite())?;
    serde_json::Number::from_f64(f).map(|n| n.to_string())
}

pub(super) fn bool_text(value: &str) -> Option<&'static str> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("true") {
        Some("true")
    } else if v.eq_ignore_ascii_case("false") {
        Some("false")
    } else {
        None
    }
}

/// Every value in a JSON document with its key path and byte range. The
/// text is checked by `serde_json` first, for its precise messages; the
/// scan then relies on it being valid (and nested at most 128 deep, the
/// parser's limit, which bounds the recursion here).
fn json_slots(text: &str) -> Result<Vec<Slot<()>>, String> {
    serde_json::from_str::<IgnoredAny>(text).map_err(|e| e.to_string())?;
    let mut scan = JsonScan {
        text,
        pos: 0,
        slots: Vec::new(),
    };
    scan.value(&mut Vec::new())?;
    Ok(scan.slots)
}

struct JsonScan<'a> {
    text: &'a str,
    pos: usize,
    slots: Vec<Slot<()>>,
}

impl JsonScan<'_> {
    fn peek(&self) -> Result<u8, String> {
        self.text
            .as_bytes()
            .get(self.pos)
            .copied()
            .ok_or_else(|| "unexpected end of the document".to_owned())
    }

    fn skip_ws(&mut self) {
        let bytes = self.text.as_bytes();
        while bytes.get(self.pos).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.peek()? != byte {
            return Err(format!("expected '{}' at byte {}", byte as char, self.pos));
        }
        self.pos += 1;
        Ok(())
    }

    /// A string literal's range, quotes included.
    fn string(&mut self) -> Result<Range<usize>, String> {
        let start = self.pos;
        self.expect(b'"')?;
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.pos) {
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(start..self.pos);
                }
                Some(_) => self.pos += 1,
                None => return Err("unterminated string".into()),
            }
        }
    }

    fn value(&mut self, path: &mut Vec<String>) -> Result<(), String> {
        self.skip_ws();
        let start = self.pos;
        let kind = match self.peek()? {
            b'{' => {
                self.pos += 1;
                loop {
                    self.skip_ws();
                    if self.peek()? == b'}' {
                        self.pos += 1;
                        break;
                    }
                    let key = self.string()?;
                    let key: String =
                        serde_json::from_str(&self.text[key]).map_err(|e| e.to_string())?;
                    self.expect(b':')?;
                    path.push(key);
                    self.value(path)?;
                    path.pop();
                    self.skip_ws();
                    if self.peek()? == b',' {
                        self.pos += 1;
                    }
                }
                Kind::Object
            }
            b'[' => {
                self.pos += 1;
                let mut index = 0usize;
                loop {
                    self.skip_ws();
                    if self.peek()? == b']' {
                        self.pos += 1;
                        break;
                    }
                    path.push(index.to_string());
                    self.value(path)?;
                    path.pop();
                    index += 1;
                    self.skip_ws();
                    if self.peek()? == b',' {
                        self.pos += 1;
                    }
                }
                Kind::Array
            }
            b'"' => {
                self.string()?;
                Kind::String
            }
            first => {
                let bytes = self.text.as_bytes();
                while bytes
                    .get(self.pos)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
                {
                    self.pos += 1;
                }
                match first {
                    b't' | b'f' => Kind::Bool,
                    b'n' => Kind::Null,
                    _ => Kind::Number,
                }
            }
        };
        if self.pos == start {
            return Err(format!("unexpected character at byte {start}"));
        }
        if !path.is_empty() {
            self.slots.push(Slot {
                path: path.clone(),
                kind,
                range: start..self.pos,
                style: (),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> VariableDictionary {
        pairs.iter().copied().collect()
    }

    fn write(root: &Path, name: &str, text: &str) -> PathBuf {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    const APPSETTINGS: &str = r#"{
  "Logging": {
    "Level": "Information",
    "Verbose": false
  },
  "Port": 80,
  "Ratio": 0.5,
  "Servers": [
    { "Name": "a", "Weight": 1 },
    { "Name": "b", "Weight": 2 }
  ],
  "Extra": null,
  "Features": { "x": 1 },
  "Serilog.MinimumLevel": "Warning"
}
"#;

    #[test]
    fn json_values_are_replaced_by_key_path_keeping_types_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "appsettings.json", APPSETTINGS);
        let v = vars(&[
            ("logging:level", "Debug"),
            ("Logging.Verbose", "TRUE"),
            ("Port", "8080"),
            ("Ratio", "not a number"),
            ("Servers:1:Name", "b2"),
            ("Servers.0.Weight", "7.5"),
            ("Extra", "5"),
            ("Features", r#"{"y": [1, 2]}"#),
            ("Serilog.MinimumLevel", "Error"),
            ("Missing:Key", "ignored"),
            ("Logging:Level:Deeper", "ignored"),
            ("Octopus.Action.Name", "ignored"),
        ]);
        let changes = replace_structured(dir.path(), &["*.json".into()], &v).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            r#"{
  "Logging": {
    "Level": "Debug",
    "Verbose": true
  },
  "Port": 8080,
  "Ratio": "not a number",
  "Servers": [
    { "Name": "a", "Weight": 7.5 },
    { "Name": "b2", "Weight": 2 }
  ],
  "Extra": "5",
  "Features": {"y": [1, 2]},
  "Serilog.MinimumLevel": "Error"
}
"#
        );
        assert_eq!(changes.len(), 9);
        assert!(changes
            .iter()
            .all(|c| c.outcome == StructuredOutcome::Replaced));
        let names: Vec<_> = changes.iter().map(|c| c.key.as_str()).collect();
        assert!(names.contains(&"Servers:1:Name"));
        assert!(changes
            .iter()
            .any(|c| c.variable == "logging:level" && c.key == "Logging:Level"));
    }

    #[test]
    fn json_outer_key_wins_and_bad_object_values_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "a.json", r#"{"A": {"B": 1}, "C": [1, 2]}"#);
        let v = vars(&[("A:B", "2"), ("A", r#"{"B": 3}"#), ("C", "not json")]);
        let changes = replace_structured(dir.path(), &["a.json".into()], &v).unwrap();
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            r#"{"A": {"B": 3}, "C": [1, 2]}"#
        );
        let skipped: Vec<_> = changes
            .iter()
            .filter(|c| matches!(c.outcome, StructuredOutcome::Skipped { .. }))
            .map(|c| c.variable.as_str())
            .collect();
        assert_eq!(skipped, vec!["A:B", "C"]);
    }

    #[test]
    fn invalid_json_fails_naming_the_file_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "a/good.json", r#"{"Port": 80}"#);
        let bad_text = "{\n  \"Port\": 80,\n  oops\n}\n";
        let bad = write(dir.path(), "b/bad.json", bad_text);
        let err = replace_structured(dir.path(), &["**/*.json".into()], &vars(&[("Port", "1")]))
            .unwrap_err();
        match &err {
            StructuredError::Invalid { file, .. } => assert_eq!(file, &bad),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("bad.json"), "{err}");
        assert!(err.to_string().contains("line 3"), "{err}");
        assert_eq!(fs::read_to_string(&bad).unwrap(), bad_text);
        // Parsed before anything is written: the valid file is unchanged too.
        assert_eq!(fs::read_to_string(&good).unwrap(), r#"{"Port": 80}"#);
    }

    #[test]
    fn json_root_array_escapes_bom_and_untouched_files() {
        let dir = tempfile::tempdir().unwrap();
        let arr = write(dir.path(), "list.json", "\u{feff}[{\"k\": \"v\"}, 3]");
        let plain = write(dir.path(), "plain.json", "{\"x\": 1}");
        let before = fs::metadata(&plain).unwrap();
        let v = vars(&[("0:k", "say \"hi\"\n"), ("1", "4")]);
        replace_structured(dir.path(), &["*.json".into()], &v).unwrap();
        assert_eq!(
            fs::read_to_string(&arr).unwrap(),
            "\u{feff}[{\"k\": \"say \\\"hi\\\"\\n\"}, 4]"
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&plain).unwrap().ino(), before.ino());
    }

    #[test]
    fn addressing_rules() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(addresses("a:b", &p(&["a", "b"])));
        assert!(addresses("a.b", &p(&["a", "b"])));
        assert!(addresses("a.b", &p(&["a.b"])));
        assert!(!addresses("a:b", &p(&["a.b"])));
        assert!(!addresses("a:b:c", &p(&["a", "b"])));
        assert!(!addresses("a", &p(&["a", "b"])));
        assert!(!addresses("ab", &p(&["a", "b"])));
    }
}
