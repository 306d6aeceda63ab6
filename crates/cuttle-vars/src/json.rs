//! Values that are JSON, read as structure: `#{Config.Items[0].Name}`.
//!
//! Octostache hands values to Json.NET, whose reader is lenient: property
//! names may be unquoted, strings single-quoted, comments and trailing commas
//! are allowed. Object keys keep their order (iteration depends on it). This
//! module is a small parser with those rules, and Json.NET's ways of turning
//! a member back into text: scalars as plain text (`True`, `15.21`, empty for
//! `null`), objects and arrays as compact JSON.

use std::fmt::Write as _;

use crate::calc::format_number;

/// Json.NET's default maximum depth; deeper documents are invalid.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// An integer literal, kept as written (minus a leading `+`).
    Integer(String),
    Float(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// A member of a parsed value, as the evaluator sees it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Member {
    /// The member's text.
    Text(String),
    /// One entry when iterating an object: the item is the key, with
    /// `.Key` and `.Value` children.
    Entry { key: String, value: String },
}

/// Parses `text` as a JSON object or array; anything else is `None`.
pub(crate) fn parse_structure(text: &str) -> Option<Json> {
    let mut reader = Reader {
        src: text.as_bytes(),
        text,
        pos: 0,
    };
    reader.skip_trivia()?;
    if !matches!(reader.peek(), Some(b'{' | b'[')) {
        return None;
    }
    let value = reader.value(0)?;
    reader.skip_trivia()?;
    (reader.pos == reader.src.len()).then_some(value)
}

/// `value.property` / `value[property]`: an object's property (case-sensitive;
/// a missing one is empty text) or an array's element (out of range is empty
/// text). `None` when `text` is not an object or array, or an array is
/// indexed by something that is not an integer.
pub(crate) fn lookup(text: &str, property: &str) -> Option<String> {
    match parse_structure(text)? {
        Json::Object(members) => Some(
            members
                .iter()
                .rev()
                .find(|(k, _)| k == property)
                .map_or_else(String::new, |(_, v)| v.as_text()),
        ),
        Json::Array(items) => {
            let index = property.trim().parse::<i64>().ok()?;
            Some(
                usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get(i))
                    .map_or_else(String::new, Json::as_text),
            )
        }
        _ => None,
    }
}

/// The items of an array, or the entries of an object; `None` when `text`
/// is neither.
pub(crate) fn members(text: &str) -> Option<Vec<Member>> {
    Some(match parse_structure(text)? {
        Json::Array(items) => items.iter().map(|v| Member::Text(v.as_text())).collect(),
        Json::Object(entries) => entries
            .into_iter()
            .map(|(key, value)| Member::Entry {
                key,
                value: value.as_text(),
            })
            .collect(),
        _ => return None,
    })
}

impl Json {
    /// Scalars as Json.NET's `Value<string>()`, structures as compact JSON.
    pub fn as_text(&self) -> String {
        match self {
            Json::Null => String::new(),
            Json::Bool(true) => "True".into(),
            Json::Bool(false) => "False".into(),
            Json::Integer(digits) => digits.clone(),
            Json::Float(v) => format_number(*v),
            Json::String(s) => s.clone(),
            Json::Array(_) | Json::Object(_) => {
                let mut out = String::new();
                self.write_compact(&mut out);
                out
            }
        }
    }

    fn write_compact(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Integer(digits) => out.push_str(digits),
            Json::Float(v) => {
                if v.is_finite() {
                    let text = format_number(*v);
                    out.push_str(&text);
                    // Json.NET always writes a decimal point for a double.
                    if !text.contains(['.', 'E']) {
                        out.push_str(".0");
                    }
                } else {
                    let name = if v.is_nan() {
                        "NaN"
                    } else if *v > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    };
                    write_string(out, name);
                }
            }
            Json::String(s) => write_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_compact(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    value.write_compact(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Reader<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// Skips whitespace and comments; `None` on an unterminated comment.
    fn skip_trivia(&mut self) -> Option<()> {
        loop {
            let rest = self.text.get(self.pos..)?;
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with("//") {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else if let Some(body) = trimmed.strip_prefix("/*") {
                self.pos += 2 + body.find("*/")? + 2;
            } else {
                return Some(());
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.skip_trivia()?;
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' | b'\'' => self.string().map(Json::String),
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
            _ => {
                let rest = self.text.get(self.pos..)?;
                for (word, value) in [
                    ("true", Json::Bool(true)),
                    ("false", Json::Bool(false)),
                    ("null", Json::Null),
                    ("undefined", Json::Null),
                    ("NaN", Json::Float(f64::NAN)),
                    ("Infinity", Json::Float(f64::INFINITY)),
                ] {
                    if rest.starts_with(word) && !rest[word.len()..].starts_with(is_name_char) {
                        self.pos += word.len();
                        return Some(value);
                    }
                }
                None
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        self.pos += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.peek()? == b'}' {
                self.pos += 1;
                return Some(Json::Object(members));
            }
            let key = match self.peek()? {
                b'"' | b'\'' => self.string()?,
                _ => self.unquoted_name()?,
            };
            self.skip_trivia()?;
            if self.peek()? != b':' {
                return None;
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            // A repeated key replaces the earlier value in place.
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some(existing) => existing.1 = value,
                None => members.push((key, value)),
            }
            self.skip_trivia()?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {}
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Json> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.peek()? == b']' {
                self.pos += 1;
                return Some(Json::Array(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_trivia()?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {}
                _ => return None,
            }
        }
    }

    fn unquoted_name(&mut self) -> Option<String> {
        let rest = self.text.get(self.pos..)?;
        let len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(rest[..len].to_owned())
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.text.get(self.pos..)?.chars().next()?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.text.get(self.pos..)?;
            let mut chars = rest.chars();
            let c = chars.next()?;
            self.pos += c.len_utf8();
            if c == quote {
                return Some(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = chars.next()?;
            self.pos += e.len_utf8();
            match e {
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex = self.text.get(self.pos..self.pos + 4)?;
                    let unit = u32::from_str_radix(hex, 16).ok()?;
                    self.pos += 4;
                    // Unpaired surrogates become U+FFFD rather than failing.
                    out.push(char::from_u32(unit).unwrap_or_else(|| self.low_surrogate(unit)));
                }
                '"' | '\'' | '\\' | '/' => out.push(e),
                _ => return None,
            }
        }
    }

    /// Completes a UTF-16 surrogate pair written as two `\u` escapes.
    fn low_surrogate(&mut self, high: u32) -> char {
        if (0xD800..0xDC00).contains(&high) {
            if let Some(hex) = self
                .text
                .get(self.pos..self.pos + 6)
                .and_then(|s| s.strip_prefix("\\u"))
            {
                if let Ok(low @ 0xDC00..=0xDFFF) = u32::from_str_radix(hex, 16) {
                    self.pos += 6;
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    return char::from_u32(code).unwrap_or('\u{FFFD}');
                }
            }
        }
        '\u{FFFD}'
    }

    fn number(&mut self) -> Option<Json> {
        let rest = self.text.get(self.pos..)?;
        if let Some(after_sign) = rest.strip_prefix('-') {
            if after_sign.starts_with("Infinity") {
                self.pos += 9;
                return Some(Json::Float(f64::NEG_INFINITY));
            }
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')))
            .unwrap_or(rest.len());
        let literal = &rest[..len];
        let body = literal.strip_prefix('+').unwrap_or(literal);
        let digits = body.strip_prefix('-').unwrap_or(body);
        let value = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            Json::Integer(body.to_owned())
        } else if let Some(hex) = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            let v = i64::from_str_radix(hex, 16).ok()?;
            Json::Integer(if body.starts_with('-') {
                (-v).to_string()
            } else {
                v.to_string()
            })
        } else if digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
            && digits.bytes().any(|b| b.is_ascii_digit())
        {
            Json::Float(body.parse::<f64>().ok()?)
        } else {
            return None;
        };
        self.pos += len;
        Some(value)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_documents() {
        assert_eq!(
            lookup("{Name: \"x\", Value: 12}", "Value").as_deref(),
            Some("12")
        );
        assert_eq!(lookup("{'a': 'b' /* c */, }", "a").as_deref(), Some("b"));
        assert_eq!(
            lookup("{\"Foo\": {\"Bar\":\"11\"}}", "Foo").as_deref(),
            Some("{\"Bar\":\"11\"}")
        );
        assert_eq!(lookup("{Bar: null}", "Bar").as_deref(), Some(""));
        assert_eq!(lookup("{Bar: 1}", "Missing").as_deref(), Some(""));
        assert_eq!(lookup("[2,3,5,8]", "4").as_deref(), Some(""));
        assert_eq!(lookup("[2,3,5,8]", "-1").as_deref(), Some(""));
        assert_eq!(lookup("[2,3,5,8]", "x"), None);
        assert_eq!(lookup("{Name: NoComma}", "Name"), None);
        assert_eq!(lookup("{a: 1}}, b", "a"), None);
        assert_eq!(lookup("12", "a"), None);
        assert_eq!(lookup("{a: true, b: 1.50}", "a").as_deref(), Some("True"));
        assert_eq!(lookup("{a: true, b: 1.50}", "b").as_deref(), Some("1.5"));
        assert_eq!(
            lookup("{a: [1.0, \"x\\ny\"]}", "a").as_deref(),
            Some("[1.0,\"x\\ny\"]")
        );
    }

    #[test]
    fn entries_keep_order() {
        let m = members("{\"Small\": \"11.5\",  Large: 15.21}").unwrap();
        assert_eq!(
            m,
            vec![
                Member::Entry {
                    key: "Small".into(),
                    value: "11.5".into()
                },
                Member::Entry {
                    key: "Large".into(),
                    value: "15.21".into()
                },
            ]
        );
    }

    #[test]
    fn deep_documents_are_invalid_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(members(&deep), None);
    }
}
