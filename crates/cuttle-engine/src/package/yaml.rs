//! Structured variables in YAML: where each value is in the text, and how
//! to write a new one there, so the rest of the file (comments, layout,
//! anchors, other documents) is kept as it was.
//!
//! Replaced scalars keep their quoting style when the new value allows it
//! (a plain string stays plain only when it cannot be read as anything else,
//! YAML 1.1 readers included; otherwise it is double-quoted). A block scalar
//! (`|`, `>`) becomes a double-quoted one. A collection is replaced by the
//! variable's JSON on one line (JSON is YAML's flow style). Every document
//! of a multi-document file is addressed from its own root.

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::structured::{bool_text, number_text, Kind, Slot};

/// How a value sits in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// A `|` or `>` block scalar; the range starts at its indicator.
    Block,
    /// An empty (null) value: the range is where to insert, after `:`/`-`,
    /// and the new value needs a space before it.
    Empty,
    /// A block collection that is a mapping's value: the range starts right
    /// after the key, so the new value is written as `: <json>`.
    KeyedBlock,
    /// A flow collection, an alias, or a block collection that is a
    /// sequence item: the range covers it and the new value replaces it.
    Whole,
}

enum Frame {
    Mapping {
        /// `None` inside something not addressable (a complex key).
        path: Option<Vec<String>>,
        /// The key whose value comes next, with where the key ends (char
        /// index); `None` while a key is expected.
        key: Option<(Option<String>, usize)>,
        start: usize,
        last_end: usize,
        flow: bool,
    },
    Sequence {
        path: Option<Vec<String>>,
        index: usize,
        start: usize,
        last_end: usize,
        flow: bool,
    },
}

/// Where a node sits: its path (if addressable), and, when it is a
/// mapping's value, where its key ends.
struct Place {
    path: Option<Vec<String>>,
    key_end: Option<usize>,
}

/// Every addressable value of every document, or why the text is not YAML.
pub(super) fn slots(text: &str) -> Result<Vec<Slot<Style>>, String> {
    // saphyr's markers count characters; the slots need byte offsets.
    let offsets: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let byte = |char_index: usize| offsets.get(char_index).copied().unwrap_or(text.len());

    let mut slots = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    // Where the previous event ended: a block scalar's indicator is after it.
    let mut prev_end = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| e.to_string())?;
        let (start, end) = (byte(span.start.index()), byte(span.end.index()));
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) | Event::DocumentEnd => stack.clear(),
            Event::Scalar(value, style, _, tag) => {
                if let Some(Frame::Mapping {
                    key: key @ None,
                    path,
                    last_end,
                    ..
                }) = stack.last_mut()
                {
                    // A key: remembered for the value that follows.
                    *key = Some((path.is_some().then(|| value.to_string()), end));
                    *last_end = (*last_end).max(end);
                } else {
                    let place = place(&stack);
                    if let Some(path) = place.path.filter(|p| !p.is_empty()) {
                        let tag = tag.as_deref().map(|t| t.suffix.as_str());
                        let kind = scalar_kind(&value, style, tag);
                        if let Some((range, style)) =
                            scalar_range(text, start, end, prev_end, style)
                        {
                            slots.push(Slot {
                                path,
                                kind,
                                range,
                                style,
                            });
                        }
                    }
                    node_done(&mut stack, end);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = place(&stack).path.filter(|p| !p.is_empty()) {
                    slots.push(Slot {
                        path,
                        kind: Kind::String,
                        range: start..end,
                        style: Style::Whole,
                    });
                }
                node_done(&mut stack, end);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A flow collection's span is its bracket; a block one's is
                // empty, at its first content.
                let flow = end > start;
                let place = place(&stack);
                // A block collection under a key is replaced from the key's
                // end (`key: <json>`): where it starts on the next line need
                // not be indented enough for a flow value.
                let start = if flow {
                    start
                } else {
                    place.key_end.unwrap_or(start)
                };
                let path = place.path;
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Mapping {
                        path,
                        key: None,
                        start,
                        last_end: end,
                        flow,
                    }
                } else {
                    Frame::Sequence {
                        path,
                        index: 0,
                        start,
                        last_end: end,
                        flow,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = stack.pop() else {
                    return Err("unbalanced collection events".into());
                };
                let (path, frame_start, last_end, flow, kind) = match frame {
                    Frame::Mapping {
                        path,
                        start,
                        last_end,
                        flow,
                        ..
                    } => (path, start, last_end, flow, Kind::Object),
                    Frame::Sequence {
                        path,
                        start,
                        last_end,
                        flow,
                        ..
                    } => (path, start, last_end, flow, Kind::Array),
                };
                // A block collection's end event sits at the next token, past
                // comments and blank lines: it ends with its last content.
                let node_end = if flow {
                    end
                } else {
                    trim_end(text, frame_start, last_end)
                };
                if let Some(path) = path.filter(|p| !p.is_empty()) {
                    let keyed = matches!(stack.last(), Some(Frame::Mapping { key: Some(_), .. }));
                    let style = if !flow && keyed {
                        Style::KeyedBlock
                    } else {
                        Style::Whole
                    };
                    slots.push(Slot {
                        path,
                        kind,
                        range: frame_start..node_end,
                        style,
                    });
                }
                node_done(&mut stack, node_end);
            }
        }
        prev_end = end.max(start);
    }
    Ok(slots)
}

/// Where the next node goes, given the innermost open collection.
fn place(stack: &[Frame]) -> Place {
    match stack.last() {
        None => Place {
            path: Some(Vec::new()),
            key_end: None,
        },
        Some(Frame::Mapping { path, key, .. }) => match key {
            Some((name, key_end)) => Place {
                path: path
                    .as_ref()
                    .zip(name.as_ref())
                    .map(|(p, k)| extend(p, k.clone())),
                key_end: Some(*key_end),
            },
            // A collection as a key: nothing in it is addressable.
            None => Place {
                path: None,
                key_end: None,
            },
        },
        Some(Frame::Sequence { path, index, .. }) => Place {
            path: path.as_ref().map(|p| extend(p, index.to_string())),
            key_end: None,
        },
    }
}

fn extend(path: &[String], next: String) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(next);
    p
}

/// A node just ended: the enclosing mapping expects a key again (or, after a
/// complex key, the value of a key that cannot be addressed); a sequence
/// moves to its next index.
fn node_done(stack: &mut [Frame], end: usize) {
    match stack.last_mut() {
        Some(Frame::Mapping { key, last_end, .. }) => {
            *key = match key {
                Some(_) => None,
                None => Some((None, end)),
            };
            *last_end = (*last_end).max(end);
        }
        Some(Frame::Sequence {
            index, last_end, ..
        }) => {
            *index += 1;
            *last_end = (*last_end).max(end);
        }
        None => {}
    }
}

fn trim_end(text: &str, start: usize, end: usize) -> usize {
    let end = end.max(start).min(text.len());
    start + text[start..end].trim_end().len()
}

/// The bytes to replace for a scalar whose span is `start..end`, and how.
/// Anchors and tags before the value (`&a`, `!!str`) are kept.
fn scalar_range(
    text: &str,
    start: usize,
    end: usize,
    prev_end: usize,
    style: ScalarStyle,
) -> Option<(Range<usize>, Style)> {
    match style {
        ScalarStyle::Literal | ScalarStyle::Folded => {
            // The span starts at the content; the indicator is between the
            // previous token and it.
            let header = block_header(text, prev_end, start)?;
            Some((header..trim_end(text, header, end), Style::Block))
        }
        _ if start == end => {
            // An empty value: insert after the `:` that may follow.
            let rest = &text[start..];
            let skipped = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            let at = if rest[skipped..].starts_with(':') {
                start + skipped + 1
            } else {
                start
            };
            Some((at..at, Style::Empty))
        }
        _ => {
            let value_start = skip_properties(text, start, end);
            let style = match style {
                ScalarStyle::SingleQuoted => Style::SingleQuoted,
                ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                _ => Style::Plain,
            };
            Some((value_start..end, style))
        }
    }
}

/// Past the anchors and tags at the start of a node's text.
fn skip_properties(text: &str, start: usize, end: usize) -> usize {
    let mut at = start;
    while at < end && matches!(text.as_bytes()[at], b'&' | b'!') {
        let rest = &text[at..end];
        let token = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let after = &rest[token..];
        at += token + (after.len() - after.trim_start().len());
    }
    at
}

/// The position of the `|`/`>` of a block scalar whose content starts at
/// `content`, scanning from the previous token's end over `:`, `-`,
/// anchors, tags, spaces and comments.
fn block_header(text: &str, from: usize, content: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = from.min(content);
    while at < content {
        match bytes[at] {
            b'|' | b'>' => return Some(at),
            b'#' => {
                while at < content && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            b'&' | b'!' => {
                while at < content && !bytes[at].is_ascii_whitespace() {
                    at += 1;
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// What a scalar is under YAML 1.2's core schema (a tag decides first).
fn scalar_kind(value: &str, style: ScalarStyle, tag: Option<&str>) -> Kind {
    match tag {
        Some("str") => return Kind::String,
        Some("int") | Some("float") => return Kind::Number,
        Some("bool") => return Kind::Bool,
        Some("null") => return Kind::Null,
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Kind::String;
    }
    match value {
        "" | "~" | "null" | "Null" | "NULL" => Kind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => Kind::Bool,
        _ if is_core_number(value) => Kind::Number,
        _ => Kind::String,
    }
}

fn is_core_number(v: &str) -> bool {
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(hex) = v.strip_prefix("0x") {
        return digits(hex, 16);
    }
    if let Some(oct) = v.strip_prefix("0o") {
        return digits(oct, 8);
    }
    let unsigned = v.strip_prefix(['-', '+']).unwrap_or(v);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(v, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() && digits(frac, 10))
                || (digits(int, 10) && (frac.is_empty() || digits(frac, 10)))
        }
        None => digits(mantissa, 10),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
    mantissa_ok && exponent_ok
}

/// The text replacing the YAML value of `slot` by `value`.
pub(super) fn render(slot: &Slot<Style>, value: &str) -> Result<String, String> {
    let text = match slot.kind {
        Kind::Number => number_text(value).unwrap_or_else(|| string(slot.style, value)),
        Kind::Bool => bool_text(value).map_or_else(|| string(slot.style, value), str::to_owned),
        Kind::String | Kind::Null => string(slot.style, value),
        Kind::Object | Kind::Array => {
            let trimmed = value.trim();
            serde_json::from_str::<serde::de::IgnoredAny>(trimmed).map_err(|e| {
                format!("the value is not valid JSON ({e}), which replacing a mapping or sequence needs")
            })?;
            // Raw line breaks and tabs in valid JSON are all outside strings,
            // so this keeps it one valid line.
            trimmed.replace(['\r', '\n', '\t'], " ")
        }
    };
    Ok(match slot.style {
        Style::Empty => format!(" {text}"),
        Style::KeyedBlock => format!(": {text}"),
        _ => text,
    })
}

/// A string value, in the slot's quoting style when that is safe.
fn string(style: Style, value: &str) -> String {
    let double = || serde_json::Value::String(value.to_owned()).to_string();
    match style {
        Style::Plain | Style::Empty | Style::Whole if safe_plain(value) => value.to_owned(),
        Style::SingleQuoted if !value.chars().any(char::is_control) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        _ => double(),
    }
}

/// Whether `value` can be written unquoted and still read back as the same
/// string, by YAML 1.2 and 1.1 readers, in block and flow context alike.
fn safe_plain(value: &str) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    if !(first.is_alphabetic() || first == '_' || first == '/') || value.ends_with([' ', ':']) {
        return false;
    }
    let chars_ok = value
        .chars()
        .all(|c| c.is_alphanumeric() || " _-./+=@%$():".contains(c));
    let lower = value.to_ascii_lowercase();
    let special_word = matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
    );
    chars_ok && !special_word && !value.contains(": ") && !value.contains("  ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::structured::{replace_structured, StructuredError, StructuredOutcome};
    use std::fs;

    fn replace(text: &str, pairs: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        fs::write(&file, text).unwrap();
        let vars: cuttle_vars::VariableDictionary = pairs.iter().copied().collect();
        replace_structured(dir.path(), &["*.yaml".into()], &vars).unwrap();
        fs::read_to_string(&file).unwrap()
    }

    #[test]
    fn yaml_scalars_are_replaced_in_place_keeping_comments_and_types() {
        let text = "\
# Service settings
Logging:
  Level: Info   # trailing comment
  Verbose: false
  Quoted: 'it''s'
  Double: \"x\"
Port: 80
Name: web
Servers:
  - Name: a
    Port: 1
  - Name: b
Empty:
Anchored: &anc 5
";
        let out = replace(
            text,
            &[
                ("Logging:Level", "Debug"),
                ("logging.verbose", "True"),
                ("Logging:Quoted", "O'Brien"),
                ("Logging:Double", "tab\there"),
                ("Port", "8080"),
                ("Name", "true"),
                ("Servers:1:Name", "b2"),
                ("Servers:0:Port", "not a port"),
                ("Empty", "filled"),
                ("Anchored", "6"),
                ("Nope", "x"),
            ],
        );
        assert_eq!(
            out,
            "\
# Service settings
Logging:
  Level: Debug   # trailing comment
  Verbose: true
  Quoted: 'O''Brien'
  Double: \"tab\\there\"
Port: 8080
Name: \"true\"
Servers:
  - Name: a
    Port: not a port
  - Name: b2
Empty: filled
Anchored: &anc 6
"
        );
    }

    #[test]
    fn yaml_collections_block_scalars_flow_and_documents() {
        let text = "\
Features:
  a: 1
  b: [x, y]
Hosts:
- one
- two
Script: |
  echo hi
  echo there
Flow: {k: v, n: 1}
After: 1
---
Other: 2
";
        let out = replace(
            text,
            &[
                ("Features", "{\n  \"c\": [1, 2]\n}"),
                ("Hosts", r#"["three"]"#),
                ("Script", "echo bye\n"),
                ("Flow:k", "w x"),
                ("Flow:n", "2"),
            ],
        );
        assert_eq!(
            out,
            "\
Features: {   \"c\": [1, 2] }
Hosts: [\"three\"]
Script: \"echo bye\\n\"
Flow: {k: w x, n: 2}
After: 1
---
Other: 2
"
        );
    }

    #[test]
    fn yaml_sequence_items_and_nested_sequences() {
        let text = "Servers:\n  - Name: a\n    Port: 1\n  - - x\n    - y\n";
        let out = replace(
            text,
            &[("Servers:0", r#"{"Name": "z"}"#), ("Servers:1:1", "yy")],
        );
        assert_eq!(out, "Servers:\n  - {\"Name\": \"z\"}\n  - - x\n    - yy\n");
    }

    #[test]
    fn yaml_every_document_is_addressed_and_crlf_kept() {
        let text = "Port: 1\r\n---\r\nPort: 2 # second\r\nName: \"x\"\r\n";
        let out = replace(text, &[("Port", "3"), ("Name", "é ü")]);
        assert_eq!(
            out,
            "Port: 3\r\n---\r\nPort: 3 # second\r\nName: \"é ü\"\r\n"
        );
    }

    #[test]
    fn invalid_yaml_fails_naming_the_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yml");
        let text = "a: [1, 2\nb: 3\n";
        fs::write(&file, text).unwrap();
        let vars: cuttle_vars::VariableDictionary = [("b", "4")].into_iter().collect();
        let err = replace_structured(dir.path(), &["*.yml".into()], &vars).unwrap_err();
        assert!(matches!(&err, StructuredError::Invalid { file: f, .. } if f == &file));
        assert!(err.to_string().contains("bad.yml"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), text);
    }

    #[test]
    fn yaml_non_json_collection_value_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        fs::write(&file, "A:\n  b: 1\n").unwrap();
        let vars: cuttle_vars::VariableDictionary = [("A", "b: 2")].into_iter().collect();
        let changes = replace_structured(dir.path(), &["c.yaml".into()], &vars).unwrap();
        assert!(matches!(
            changes[0].outcome,
            StructuredOutcome::Skipped { .. }
        ));
        assert_eq!(fs::read_to_string(&file).unwrap(), "A:\n  b: 1\n");
    }

    #[test]
    fn plain_safety_and_numbers() {
        assert!(safe_plain("Debug"));
        assert!(safe_plain("http://host:80/x"));
        for unsafe_ in [
            "", "yes", "No", "5", "-x", "a: b", "a #b", "[x]", "x,y", " x", "x ", "*a",
        ] {
            assert!(!safe_plain(unsafe_), "{unsafe_}");
        }
        for n in [
            "1", "-2", "+3.5", ".5", "1e3", "0x1F", "0o17", ".inf", "-.Inf", ".nan",
        ] {
            assert!(is_core_number(n), "{n}");
        }
        for s in ["1.2.3", "e3", "0x", "1_000", "--1", "."] {
            assert!(!is_core_number(s), "{s}");
        }
    }
}
