//! `ToBase64` / `FromBase64` with `utf8` (default) or `unicode` (UTF-16LE).

use super::{fits, require, FilterError, FilterResult};
use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Like .NET's `Convert.FromBase64String`: padding required, unused trailing
/// bits ignored.
const DOTNET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TextEncoding {
    Utf8,
    Utf16Le,
}

/// `utf8`/`utf-8`/`unicode`, any case.
pub(super) fn text_encoding(name: &str) -> Option<TextEncoding> {
    match name.to_lowercase().as_str() {
        "utf8" | "utf-8" => Some(TextEncoding::Utf8),
        "unicode" => Some(TextEncoding::Utf16Le),
        _ => None,
    }
}

pub(super) fn encode_text(s: &str, enc: TextEncoding) -> Vec<u8> {
    match enc {
        TextEncoding::Utf8 => s.as_bytes().to_vec(),
        TextEncoding::Utf16Le => s.encode_utf16().flat_map(u16::to_le_bytes).collect(),
    }
}

/// Decodes base64 text, skipping the white space .NET skips.
pub(super) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
        .collect();
    DOTNET_BASE64.decode(compact).ok()
}

pub(super) fn apply(f: &str, input: Option<&str>, args: &[String], limit: usize) -> FilterResult {
    let s = require(f, input)?;
    let enc = match args {
        [] => TextEncoding::Utf8,
        [name] => text_encoding(name)
            .ok_or_else(|| FilterError::bad(f, format!("unknown encoding '{name}'")))?,
        _ => return Err(FilterError::bad(f, "expects at most one option")),
    };
    if f == "tobase64" {
        // The size is known before encoding: refuse before building it.
        let bytes = match enc {
            TextEncoding::Utf8 => s.len(),
            TextEncoding::Utf16Le => s.encode_utf16().count().saturating_mul(2),
        };
        fits(bytes.div_ceil(3).saturating_mul(4), limit)?;
        return Ok(Some(DOTNET_BASE64.encode(encode_text(s, enc))));
    }
    let bytes = decode_base64(s).ok_or_else(|| FilterError::bad(f, "input is not base64"))?;
    // Invalid sequences become U+FFFD, as .NET's decoders do.
    Ok(Some(match enc {
        TextEncoding::Utf8 => String::from_utf8_lossy(&bytes).into_owned(),
        TextEncoding::Utf16Le => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]]))
                .collect();
            let mut out = String::from_utf16_lossy(&units);
            if bytes.len() % 2 == 1 {
                out.push('\u{FFFD}');
            }
            out
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::super::apply;

    fn ok(f: &str, input: &str, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        apply(f, Some(input), &args)
            .expect("filter failed")
            .expect("no value")
    }

    #[test]
    fn round_trips() {
        assert_eq!(ok("ToBase64", "Foo Bar", &[]), "Rm9vIEJhcg==");
        assert_eq!(ok("ToBase64", "A", &["unicode"]), "QQA=");
        assert_eq!(ok("FromBase64", "QQA=", &["Unicode"]), "A");
        assert_eq!(ok("FromBase64", "Rm9v IEJh\ncg==", &[]), "Foo Bar");
        assert_eq!(ok("FromBase64", "/w==", &[]), "\u{FFFD}");
        assert!(apply("FromBase64", Some("bar"), &[]).is_err());
        assert!(apply("ToBase64", Some("x"), &["latin1".into()]).is_err());
        assert!(apply("ToBase64", None, &[]).is_err());
    }
}
