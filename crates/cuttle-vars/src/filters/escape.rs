//! Escaping for HTML, XML, JSON, URIs, YAML and Java properties, and
//! Markdown to HTML.

use super::{fits, no_options, require, FilterError, FilterResult, Output};
use std::collections::VecDeque;

/// The most memory Markdown's parser is allowed per byte of its input,
/// counted against the output budget (measured: up to about 100 bytes, for
/// a line feed every other byte).
const MARKDOWN_BYTES_PER_INPUT_BYTE: usize = 64;
use pulldown_cmark::{Alignment, CowStr, Event, Options, Parser, Tag, TagEnd};

/// Every escape makes its result in an [`Output`], which stops it at the
/// budget: escaping multiplies some characters up to twelve times.
pub(super) fn apply(f: &str, input: Option<&str>, args: &[String], limit: usize) -> FilterResult {
    no_options(f, args)?;
    let s = require(f, input)?;
    let mut out = Output::new(limit);
    out.reserve(s.len())?;
    match f {
        "htmlescape" => map_chars(s, |c| html_entity(c, true), &mut out)?,
        "xmlescape" => map_chars(s, |c| html_entity(c, false), &mut out)?,
        "jsonescape" => map_chars(s, json_escape, &mut out)?,
        "uriescape" => percent_encode(
            s,
            |b| is_unreserved(b) || b":/?#[]@!$&'()*+,;=".contains(&b),
            &mut out,
        )?,
        "uridataescape" => percent_encode(s, is_unreserved, &mut out)?,
        "yamlsinglequoteescape" => yaml_single_quote(s, &mut out)?,
        "yamldoublequoteescape" => yaml_double_quote(s, &mut out)?,
        "propertieskeyescape" => properties(s, true, &mut out)?,
        "propertiesvalueescape" => properties(s, false, &mut out)?,
        "markdown" | "markdowntohtml" => markdown(s, &mut out)?,
        _ => return Err(FilterError::Unknown(f.to_owned())),
    }
    Ok(Some(out.into_string()))
}

type Built = Result<(), FilterError>;

/// Applies a per-char replacement (`None` keeps the char).
fn map_chars(s: &str, f: impl Fn(char) -> Option<&'static str>, out: &mut Output) -> Built {
    for c in s.chars() {
        match f(c) {
            Some(r) => out.push_str(r)?,
            None => out.push(c)?,
        }
    }
    Ok(())
}

fn html_entity(c: char, html: bool) -> Option<&'static str> {
    Some(match c {
        '&' => "&amp;",
        '<' => "&lt;",
        '>' => "&gt;",
        '"' => "&quot;",
        '\'' => "&apos;",
        '/' if html => "&#x2F;",
        _ => return None,
    })
}

/// Deliberately minimal, like Octostache's: other control chars pass through.
fn json_escape(c: char) -> Option<&'static str> {
    Some(match c {
        '"' => "\\\"",
        '\r' => "\\r",
        '\n' => "\\n",
        '\t' => "\\t",
        '\\' => "\\\\",
        _ => return None,
    })
}

/// RFC 3986 unreserved characters.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Percent-encodes the UTF-8 bytes that `keep` rejects, with uppercase hex
/// as .NET's `Uri.EscapeDataString`/`EscapeUriString` do (`%` included).
fn percent_encode(s: &str, keep: impl Fn(u8) -> bool, out: &mut Output) -> Built {
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b))?;
        } else {
            out.push_str(&format!("%{b:02X}"))?;
        }
    }
    Ok(())
}

/// In a single-quoted YAML scalar a line break folds into a space, so every
/// run of line breaks gets one more (`\r\n` when the run starts with `\r`).
fn yaml_single_quote(s: &str, out: &mut Output) -> Built {
    let quoted = |out: &mut Output, text: &str| -> Built {
        for (i, part) in text.split('\'').enumerate() {
            if i > 0 {
                out.push_str("''")?;
            }
            out.push_str(part)?;
        }
        Ok(())
    };
    let mut rest = s;
    while let Some(pos) = rest.find(['\r', '\n']) {
        quoted(out, &rest[..pos])?;
        let run = &rest[pos..];
        let len = newline_run_len(run);
        if len == 0 {
            // A lone `\r` is not a line break here; keep it.
            out.push('\r')?;
            rest = &run[1..];
            continue;
        }
        out.push_str(if run.starts_with('\r') { "\r\n" } else { "\n" })?;
        out.push_str(&run[..len])?;
        rest = &run[len..];
    }
    quoted(out, rest)
}

/// Length of the leading run of `\n` / `\r\n` line breaks.
fn newline_run_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'\n') {
            i += 1;
        } else if b.get(i) == Some(&b'\r') && b.get(i + 1) == Some(&b'\n') {
            i += 2;
        } else {
            return i;
        }
    }
}

/// `\uXXXX` for each UTF-16 unit, as .NET escapes a char at a time.
fn push_u_escapes(out: &mut Output, c: char) -> Built {
    let mut buf = [0u16; 2];
    for unit in c.encode_utf16(&mut buf) {
        out.push_str(&format!("\\u{unit:04x}"))?;
    }
    Ok(())
}

fn yaml_double_quote(s: &str, out: &mut Output) -> Built {
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r")?,
            '\n' => out.push_str("\\n")?,
            '\t' => out.push_str("\\t")?,
            '\\' => out.push_str("\\\\")?,
            '"' => out.push_str("\\\"")?,
            ' '..='~' => out.push(c)?,
            _ => push_u_escapes(out, c)?,
        }
    }
    Ok(())
}

/// Java properties: keys also escape space, `:` and `=`; values only a
/// leading space. Chars from U+00FF up become `\uXXXX` (Octostache's bound).
fn properties(s: &str, key: bool, out: &mut Output) -> Built {
    for (i, c) in s.chars().enumerate() {
        match c {
            ' ' if key || i == 0 => out.push_str("\\ ")?,
            ':' if key => out.push_str("\\:")?,
            '=' if key => out.push_str("\\=")?,
            '\\' => out.push_str("\\\\")?,
            '\r' => out.push_str("\\r")?,
            '\n' => out.push_str("\\n")?,
            '\t' => out.push_str("\\t")?,
            c if u32::from(c) < 0xFF => out.push(c)?,
            _ => push_u_escapes(out, c)?,
        }
    }
    Ok(())
}

/// Markdown to HTML in the style of Markdig with pipe tables, emphasis
/// extras and auto-links (what Octostache uses): tables are written one tag
/// per line and bare `http://`, `https://`, `ftp://`, `mailto:` and `www.`
/// addresses become links.
fn markdown(s: &str, out: &mut Output) -> Built {
    // The parser holds a tree of its whole input, up to about a hundred
    // bytes per input byte: refuse input whose parse alone could pass the
    // budget (1 MiB of Markdown under the default 64 MiB).
    fits(
        s.len().saturating_mul(MARKDOWN_BYTES_PER_INPUT_BYTE),
        out.limit(),
    )?;
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_SUPERSCRIPT
        | Options::ENABLE_SUBSCRIPT;
    // Events are made as the writer asks for them, never all held at once.
    let mut parser = Parser::new_ext(s.trim(), options);
    let mut pending: VecDeque<Event<'_>> = VecDeque::new();
    let mut events: Vec<Event<'_>> = Vec::new();
    let mut aligns: Vec<Alignment> = Vec::new();
    let mut cell = 0usize;
    let mut in_head = false;
    // Inside links, code and raw HTML text is never auto-linked.
    let mut no_autolink = 0usize;
    let stream = std::iter::from_fn(|| loop {
        if let Some(ev) = pending.pop_front() {
            return Some(ev);
        }
        match parser.next()? {
            Event::Start(Tag::Table(a)) => {
                aligns = a;
                events.push(Event::Html("<table>\n".into()));
            }
            Event::End(TagEnd::Table) => events.push(Event::Html("</tbody>\n</table>\n".into())),
            Event::Start(Tag::TableHead) => {
                in_head = true;
                cell = 0;
                events.push(Event::Html("<thead>\n<tr>\n".into()));
            }
            Event::End(TagEnd::TableHead) => {
                in_head = false;
                events.push(Event::Html("</tr>\n</thead>\n<tbody>\n".into()));
            }
            Event::Start(Tag::TableRow) => {
                cell = 0;
                events.push(Event::Html("<tr>\n".into()));
            }
            Event::End(TagEnd::TableRow) => events.push(Event::Html("</tr>\n".into())),
            Event::Start(Tag::TableCell) => {
                let tag = if in_head { "th" } else { "td" };
                let style = match aligns.get(cell) {
                    Some(Alignment::Left) => " style=\"text-align: left;\"",
                    Some(Alignment::Center) => " style=\"text-align: center;\"",
                    Some(Alignment::Right) => " style=\"text-align: right;\"",
                    _ => "",
                };
                events.push(Event::Html(format!("<{tag}{style}>").into()));
            }
            Event::End(TagEnd::TableCell) => {
                let tag = if in_head { "th" } else { "td" };
                cell += 1;
                events.push(Event::Html(format!("</{tag}>\n").into()));
            }
            Event::Start(
                t @ (Tag::Link { .. } | Tag::Image { .. } | Tag::CodeBlock(_) | Tag::HtmlBlock),
            ) => {
                no_autolink += 1;
                events.push(Event::Start(t));
            }
            Event::End(
                t @ (TagEnd::Link | TagEnd::Image | TagEnd::CodeBlock | TagEnd::HtmlBlock),
            ) => {
                no_autolink = no_autolink.saturating_sub(1);
                events.push(Event::End(t));
            }
            Event::Text(text) if no_autolink == 0 => autolink(text, &mut events),
            other => events.push(other),
        }
        pending.extend(events.drain(..));
    });
    // The writer fails only when the budget is spent.
    if pulldown_cmark::html::write_html_fmt(&mut *out, stream).is_err() {
        return Err(FilterError::TooLarge { limit: out.limit() });
    }
    out.push('\n')
}

/// Splits `text` around bare addresses and emits them as links.
fn autolink<'a>(text: CowStr<'a>, events: &mut Vec<Event<'a>>) {
    let s: &str = &text;
    let mut i = 0;
    let mut pieces: Vec<(usize, usize, String)> = Vec::new();
    while i < s.len() {
        if !s.is_char_boundary(i) {
            i += 1;
            continue;
        }
        // A link starts at the beginning or after a non-alphanumeric char.
        let boundary_ok = s[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let rest = &s[i..];
        let prefix = ["http://", "https://", "ftp://", "mailto:", "www."]
            .into_iter()
            .find(|p| {
                boundary_ok
                    && rest.len() > p.len()
                    && rest
                        .get(..p.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(p))
            });
        if let Some(p) = prefix {
            let mut end = rest
                .find(|c: char| c.is_whitespace() || c == '<')
                .unwrap_or(rest.len());
            // Trailing punctuation belongs to the sentence, not the address.
            while end > p.len()
                && rest[..end].ends_with(['.', ',', ';', ':', '!', '?', '*', '_', '~', '\'', '"'])
            {
                end -= 1;
            }
            if end > p.len()
                && rest[..end].ends_with(')')
                && rest[..end].matches('(').count() < rest[..end].matches(')').count()
            {
                end -= 1;
            }
            if end > p.len() {
                let url = &rest[..end];
                let href = if p == "www." {
                    format!("http://{url}")
                } else {
                    url.to_owned()
                };
                pieces.push((i, i + end, href));
                i += end;
                continue;
            }
        }
        i += 1;
    }
    if pieces.is_empty() {
        events.push(Event::Text(text));
        return;
    }
    let mut pos = 0;
    for (start, end, href) in pieces {
        if start > pos {
            events.push(Event::Text(s[pos..start].to_owned().into()));
        }
        let label = html_text(&s[start..end]);
        events.push(Event::Html(
            format!("<a href=\"{}\">{label}</a>", html_attr(&href)).into(),
        ));
        pos = end;
    }
    if pos < s.len() {
        events.push(Event::Text(s[pos..].to_owned().into()));
    }
}

fn html_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_attr(s: &str) -> String {
    html_text(s).replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::super::apply;

    fn ok(f: &str, input: &str) -> String {
        apply(f, Some(input), &[])
            .expect("filter failed")
            .expect("no value")
    }

    #[test]
    fn escapes() {
        assert_eq!(
            ok("HtmlEscape", "<a href='/x'>"),
            "&lt;a href=&apos;&#x2F;x&apos;&gt;"
        );
        assert_eq!(ok("UriDataEscape", "é%"), "%C3%A9%25");
        assert_eq!(ok("UriEscape", "a b?c=d#e"), "a%20b?c=d#e");
        assert_eq!(
            ok("YamlDoubleQuoteEscape", "😀\u{0}"),
            "\\ud83d\\ude00\\u0000"
        );
        assert_eq!(ok("PropertiesValueEscape", "a\u{ff}"), "a\\u00ff");
        assert_eq!(ok("YamlSingleQuoteEscape", "a\rb'"), "a\rb''");
        assert!(apply("HtmlEscape", None, &[]).is_err());
        assert!(apply("HtmlEscape", Some("x"), &["y".into()]).is_err());
    }

    #[test]
    fn markdown_autolinks_outside_links_and_code() {
        assert_eq!(
            ok("Markdown", "see www.x.com."),
            "<p>see <a href=\"http://www.x.com\">www.x.com</a>.</p>\n\n"
        );
        assert_eq!(
            ok("Markdown", "`http://x.y`"),
            "<p><code>http://x.y</code></p>\n\n"
        );
        assert_eq!(ok("Markdown", "~~a~~"), "<p><del>a</del></p>\n\n");
        assert_eq!(ok("Markdown", "é日😀 wwwé"), "<p>é日😀 wwwé</p>\n\n");
    }
}
