//! `Md5`, `Sha1`, `Sha256`, `Sha384`, `Sha512` `[utf8|unicode|base64] [bytes]`
//! (options in either order): lowercase hex of the digest, optionally only
//! its first `bytes` bytes.

use super::encoding::{decode_base64, encode_text, text_encoding};
use super::{parse_int, require, FilterError, FilterResult};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// How the input text becomes bytes.
#[derive(Clone, Copy)]
enum Source {
    Text(super::encoding::TextEncoding),
    Base64,
}

fn source(name: &str) -> Option<Source> {
    if name.eq_ignore_ascii_case("base64") {
        Some(Source::Base64)
    } else {
        text_encoding(name).map(Source::Text)
    }
}

/// A positive size option.
fn size(s: &str) -> Option<usize> {
    parse_int(s)
        .filter(|&n| n > 0)
        .and_then(|n| usize::try_from(n).ok())
}

fn options(f: &str, args: &[String]) -> Result<(Source, Option<usize>), FilterError> {
    let bad = || FilterError::bad(f, "expects [utf8|unicode|base64] [size > 0]");
    let utf8 = Source::Text(super::encoding::TextEncoding::Utf8);
    match args {
        [] => Ok((utf8, None)),
        [a] => match size(a) {
            Some(n) => Ok((utf8, Some(n))),
            None => Ok((source(a).ok_or_else(bad)?, None)),
        },
        [a, b] => match size(a) {
            Some(n) => Ok((source(b).ok_or_else(bad)?, Some(n))),
            None => Ok((source(a).ok_or_else(bad)?, Some(size(b).ok_or_else(bad)?))),
        },
        _ => Err(bad()),
    }
}

pub(super) fn apply(f: &str, input: Option<&str>, args: &[String]) -> FilterResult {
    let s = require(f, input)?;
    let (src, size) = options(f, args)?;
    let bytes = match src {
        Source::Text(enc) => encode_text(s, enc),
        Source::Base64 => {
            decode_base64(s).ok_or_else(|| FilterError::bad(f, "input is not base64"))?
        }
    };
    let digest: Vec<u8> = match f {
        "md5" => Md5::digest(&bytes).to_vec(),
        "sha1" => Sha1::digest(&bytes).to_vec(),
        "sha256" => Sha256::digest(&bytes).to_vec(),
        "sha384" => Sha384::digest(&bytes).to_vec(),
        "sha512" => Sha512::digest(&bytes).to_vec(),
        _ => return Err(FilterError::Unknown(f.to_owned())),
    };
    let keep = size.unwrap_or(digest.len()).min(digest.len());
    Ok(Some(hex::encode(&digest[..keep])))
}

#[cfg(test)]
mod tests {
    use super::super::apply;

    fn run(f: &str, input: &str, args: &[&str]) -> Option<String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        apply(f, Some(input), &args).ok().flatten()
    }

    #[test]
    fn options_and_sizes() {
        assert_eq!(
            run("Md5", "", &[]).as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(run("SHA1", "", &["2", "UTF-8"]).as_deref(), Some("da39"));
        assert_eq!(
            run("sha256", "", &["2147483647"]).map(|s| s.len()),
            Some(64)
        );
        assert_eq!(run("Md5", "bar", &["0"]), None);
        assert_eq!(run("Md5", "bar", &["base64"]), None);
        assert_eq!(run("Md5", "bar", &["utf8", "1", "x"]), None);
        assert!(apply("Md5", None, &[]).is_err());
    }
}
