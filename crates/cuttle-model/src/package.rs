//! Packages in the built-in feed: what a pushed file is called, which archive
//! formats are accepted and how an archive is recognised and found whole.
//!
//! A package is identified by Octopus's file-name convention,
//! `<PackageId>.<Version><extension>` (`Acme.Web.1.2.3-beta.1.zip` is
//! `Acme.Web` 1.2.3-beta.1). Versions are those of [`crate::version_rule`]:
//! SemVer or up to four numeric parts, ordered by SemVer precedence. Package
//! ids compare case-insensitively and versions by precedence (`1.0` is
//! `1.0.0`; build metadata does not count), as NuGet does.
//!
//! The archive checks here are pure functions over bytes the caller reads
//! (the first bytes, the last bytes, or the whole stream fed in pieces), so
//! they hold no file and no whole archive in memory.

use crate::process::DeploymentProcess;
use crate::release::SelectedPackage;
use crate::version_rule::Version;
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A package version in the built-in feed. The file itself is kept by its
/// content (`Hash`); this is what is known about it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Package {
    /// `packages-<PackageId>.<Version>`, as Octopus names it.
    pub id: String,
    pub space_id: String,
    pub package_id: String,
    pub version: String,
    pub feed_id: String,
    /// `.zip`, `.tar.gz`, `.tgz`, `.tar`, `.tar.bz2` or `.nupkg`.
    pub file_extension: String,
    /// SHA-256 of the file, lower-case hex.
    pub hash: String,
    pub package_size_bytes: i64,
    pub published: Option<Timestamp>,
}

impl Package {
    /// The file name the package was pushed as, and is downloaded as.
    pub fn file_name(&self) -> String {
        format!(
            "{}.{}{}",
            self.package_id, self.version, self.file_extension
        )
    }

    /// The key two versions of a package clash on: the same id, any case,
    /// and the same version by precedence.
    pub fn version_key(&self) -> String {
        version_key(&self.version)
    }
}

/// The id Octopus gives a package version.
pub fn package_resource_id(package_id: &str, version: &str) -> String {
    format!("packages-{package_id}.{version}")
}

/// A version in a canonical text form: three numeric parts (four when the
/// fourth is not zero), the pre-release in lower case, no build metadata.
/// Versions that are equal by precedence have the same key.
pub fn version_key(version: &str) -> String {
    let without_build = version.split('+').next().unwrap_or("");
    let (core, pre) = match without_build.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (without_build, None),
    };
    let mut numbers: Vec<u64> = core.split('.').map(|n| n.parse().unwrap_or(0)).collect();
    numbers.resize(numbers.len().max(3), 0);
    if numbers.len() == 4 && numbers[3] == 0 {
        numbers.pop();
    }
    let mut key = numbers
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    if let Some(pre) = pre {
        key.push('-');
        key.push_str(&pre.to_ascii_lowercase());
    }
    key
}

/// Orders a feed's list: by package id (ignoring case), then newest version
/// first.
pub fn feed_order(a: &Package, b: &Package) -> Ordering {
    a.package_id
        .to_ascii_lowercase()
        .cmp(&b.package_id.to_ascii_lowercase())
        .then_with(|| compare_versions(&b.version, &a.version))
        .then_with(|| b.published.cmp(&a.published))
}

/// SemVer precedence of two version texts; text that does not parse (which
/// the feed never stores) sorts below any version.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

/// The archive formats the built-in feed accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageFormat {
    Zip,
    /// A NuGet package, which is a zip archive.
    NuGet,
    Tar,
    TarGz,
    TarBz2,
}

/// Extensions and their formats, the longer of two that share an ending
/// first.
const EXTENSIONS: [(&str, PackageFormat); 6] = [
    (".tar.gz", PackageFormat::TarGz),
    (".tgz", PackageFormat::TarGz),
    (".tar.bz2", PackageFormat::TarBz2),
    (".tar", PackageFormat::Tar),
    (".zip", PackageFormat::Zip),
    (".nupkg", PackageFormat::NuGet),
];

impl PackageFormat {
    /// What people call the format, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            PackageFormat::Zip => "a zip archive",
            PackageFormat::NuGet => "a NuGet package (a zip archive)",
            PackageFormat::Tar => "a tar archive",
            PackageFormat::TarGz => "a gzip-compressed tar archive",
            PackageFormat::TarBz2 => "a bzip2-compressed tar archive",
        }
    }

    pub fn is_zip(self) -> bool {
        matches!(self, PackageFormat::Zip | PackageFormat::NuGet)
    }
}

/// What a package file name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFileName {
    pub package_id: String,
    pub version: String,
    /// As given, in lower case (`.tar.gz`).
    pub extension: String,
    pub format: PackageFormat,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackageNameError {
    #[error("'{0}' is not a package file the built-in feed accepts: the name must end with .zip, .tar.gz, .tgz, .tar, .tar.bz2 or .nupkg")]
    UnknownExtension(String),
    #[error("The file name '{0}' has no version: name the file <PackageId>.<Version><extension>, as in Acme.Web.1.2.3.zip")]
    NoVersion(String),
    #[error("'{version}' in the file name '{name}' is not a valid version: use SemVer such as 1.2.3 or 1.2.3-beta.1, or four numbers such as 1.2.3.4")]
    InvalidVersion { name: String, version: String },
    #[error("'{id}' in the file name '{name}' is not a valid package id: use letters, digits, '.', '-' and '_' (at most 100 characters, not starting or ending with '.')")]
    InvalidPackageId { name: String, id: String },
}

/// Splits a package file name into id, version and extension. Any directory
/// part a client sent is ignored. The version starts at the first `.<digit>`
/// after which the rest is a version and before which a valid id stands, so
/// ids may contain numbers (`Acme.2Web.1.0.0.zip` is `Acme.2Web` 1.0.0).
pub fn parse_file_name(raw: &str) -> Result<PackageFileName, PackageNameError> {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or(raw).trim();
    let lower = name.to_ascii_lowercase();
    let Some((extension, format)) = EXTENSIONS
        .iter()
        .find(|(ext, _)| lower.ends_with(ext) && lower.len() > ext.len())
    else {
        return Err(PackageNameError::UnknownExtension(name.to_owned()));
    };
    let stem = &name[..name.len() - extension.len()];
    let candidates: Vec<usize> = stem
        .char_indices()
        .zip(stem.chars().skip(1))
        .filter(|((_, c), next)| *c == '.' && next.is_ascii_digit())
        .map(|((i, _), _)| i)
        .collect();
    for &dot in &candidates {
        let (id, version) = (&stem[..dot], &stem[dot + 1..]);
        if is_valid_version(version) && is_valid_package_id(id) {
            return Ok(PackageFileName {
                package_id: id.to_owned(),
                version: version.to_owned(),
                extension: (*extension).to_owned(),
                format: *format,
            });
        }
    }
    let Some(&first) = candidates.first() else {
        return Err(PackageNameError::NoVersion(name.to_owned()));
    };
    let (id, version) = (&stem[..first], &stem[first + 1..]);
    if is_valid_version(version) {
        Err(PackageNameError::InvalidPackageId {
            name: name.to_owned(),
            id: id.to_owned(),
        })
    } else {
        Err(PackageNameError::InvalidVersion {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }
}

/// NuGet's rules for ids, which also keep them safe in URLs and file names.
pub fn is_valid_package_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && !id.ends_with('.')
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A version the feed can order; its text may only use characters that are
/// safe in ids, URLs and file names.
pub fn is_valid_version(version: &str) -> bool {
    version.len() <= 100
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        && Version::parse(version).is_some()
}

/// Whether a release's package selection picks this package version: the
/// selection names an action of the release's process (and a package
/// reference of it, or its primary package), and that reference is the
/// package. The feed of the reference is not compared: the built-in feed is
/// the only one there is.
pub fn selection_uses_package(
    process: &DeploymentProcess,
    selected: &SelectedPackage,
    package_id: &str,
    version: &str,
) -> bool {
    let same_version = match (Version::parse(&selected.version), Version::parse(version)) {
        (Some(a), Some(b)) => a == b,
        _ => selected.version.eq_ignore_ascii_case(version),
    };
    if !same_version {
        return false;
    }
    let reference = selected.package_reference_name.as_deref().unwrap_or("");
    process
        .steps
        .iter()
        .flat_map(|s| &s.actions)
        .filter(|a| a.name.eq_ignore_ascii_case(&selected.action_name))
        .any(|action| {
            let by_reference = action
                .packages
                .iter()
                .filter(|p| p.name.eq_ignore_ascii_case(reference))
                .any(|p| p.package_id.eq_ignore_ascii_case(package_id));
            // Older processes name their one package in a property.
            let by_property = reference.is_empty()
                && action
                    .property("Octopus.Action.Package.PackageId")
                    .is_some_and(|p| p.eq_ignore_ascii_case(package_id));
            by_reference || by_property
        })
}

// ---- recognising archives ----

/// How many leading bytes [`check_magic`] needs (the tar magic is at 257).
pub const HEAD_LEN: usize = 512;
/// How many trailing bytes [`check_zip_end`] needs: the end-of-central-
/// directory record (22 bytes) and the longest comment it may carry.
pub const ZIP_TAIL_LEN: usize = 22 + 65_535;
/// How many trailing bytes [`check_bzip2_end`] needs.
pub const BZIP2_TAIL_LEN: usize = 11;

const ZIP_LOCAL: &[u8] = b"PK\x03\x04";
const ZIP_END: &[u8] = b"PK\x05\x06";
const ZIP64_LOCATOR: &[u8] = b"PK\x06\x07";

/// Checks that the file starts as its format does: zip `PK\x03\x04` (or
/// `PK\x05\x06`, an empty zip), gzip `1f 8b 08`, bzip2 `BZh1`..`BZh9` then a
/// block or end-of-stream marker, tar `ustar` at offset 257 (or a zero block:
/// an empty archive). `head` is the first [`HEAD_LEN`] bytes or the whole
/// file if shorter.
pub fn check_magic(format: PackageFormat, head: &[u8]) -> Result<(), String> {
    let ok = match format {
        PackageFormat::Zip | PackageFormat::NuGet => {
            head.starts_with(ZIP_LOCAL) || head.starts_with(ZIP_END)
        }
        PackageFormat::TarGz => head.starts_with(&[0x1f, 0x8b, 0x08]),
        PackageFormat::TarBz2 => {
            head.len() >= 10
                && head.starts_with(b"BZh")
                && (b'1'..=b'9').contains(&head[3])
                && (head[4..10] == BZIP2_BLOCK || head[4..10] == BZIP2_END)
        }
        PackageFormat::Tar => is_tar_head(head),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "The file is not {}: its first bytes are not those of that format",
            format.describe()
        ))
    }
}

fn is_tar_head(head: &[u8]) -> bool {
    head.len() >= HEAD_LEN
        && (&head[257..262] == b"ustar" || head[..HEAD_LEN].iter().all(|b| *b == 0))
}

/// Where a zip archive's central directory is, from its end record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZipEnd {
    pub entries: u64,
    /// `None` for a ZIP64 archive, whose real offset is elsewhere.
    pub central_directory_offset: Option<u64>,
}

/// Finds a zip archive's end-of-central-directory record, which a truncated
/// archive lacks: it must be in the last bytes, its comment must reach
/// exactly to the end of the file, and the central directory it points at
/// must lie before it. `tail` is the last [`ZIP_TAIL_LEN`] bytes (or the
/// whole file), `len` the file's length.
pub fn check_zip_end(tail: &[u8], len: u64) -> Result<ZipEnd, String> {
    let truncated = || {
        "The zip archive is truncated or damaged: its end-of-central-directory record is missing"
            .to_owned()
    };
    if tail.len() < 22 || (tail.len() as u64) > len {
        return Err(truncated());
    }
    let tail_start = len - tail.len() as u64;
    let u16_at = |i: usize| u16::from_le_bytes([tail[i], tail[i + 1]]) as u64;
    let u32_at =
        |i: usize| u32::from_le_bytes([tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]) as u64;
    // The last record whose comment ends the file; a comment may itself
    // contain the signature, hence the search from the end.
    let found = (0..=tail.len() - 22)
        .rev()
        .find(|&i| &tail[i..i + 4] == ZIP_END && i + 22 + u16_at(i + 20) as usize == tail.len());
    let at = found.ok_or_else(truncated)?;
    let entries = u16_at(at + 10);
    let cd_size = u32_at(at + 12);
    let cd_offset = u32_at(at + 16);
    let zip64 = entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF;
    if zip64 {
        let has_locator = at >= 20 && &tail[at - 20..at - 16] == ZIP64_LOCATOR;
        return if has_locator {
            Ok(ZipEnd {
                entries,
                central_directory_offset: None,
            })
        } else {
            Err(truncated())
        };
    }
    if cd_offset + cd_size > tail_start + at as u64 {
        return Err(
            "The zip archive is truncated or damaged: its central directory lies outside the file"
                .into(),
        );
    }
    Ok(ZipEnd {
        entries,
        central_directory_offset: (entries > 0).then_some(cd_offset),
    })
}

/// The signature a zip central directory starts with.
pub const ZIP_CENTRAL: &[u8] = b"PK\x01\x02";

const BZIP2_BLOCK: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
const BZIP2_END: [u8; 6] = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];

/// Checks that a bzip2 stream ends as a whole one does: with the 48-bit
/// end-of-stream marker and the 32-bit stream checksum, then at most 7 bits
/// of padding. The marker is not byte-aligned, so it is looked for at each
/// of the 8 bit offsets it may have. This finds truncation without
/// decompressing; a stream damaged in its middle is found only when it is
/// unpacked. `tail` is the last [`BZIP2_TAIL_LEN`] bytes.
pub fn check_bzip2_end(tail: &[u8]) -> Result<(), String> {
    let tail = &tail[tail.len().saturating_sub(BZIP2_TAIL_LEN)..];
    let bits = tail
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let marker = u128::from_be_bytes({
        let mut m = [0u8; 16];
        m[10..].copy_from_slice(&BZIP2_END);
        m
    });
    let available = tail.len() * 8;
    let whole = (0..8).any(|pad| {
        pad + 32 + 48 <= available && (bits >> (pad + 32)) & ((1u128 << 48) - 1) == marker
    });
    if whole {
        Ok(())
    } else {
        Err("The bzip2 stream is truncated: it does not end with an end-of-stream marker".into())
    }
}

/// Checks the shape of a tar stream fed to it in pieces (a plain tar file,
/// or the unpacked content of a compressed one), keeping only its first and
/// last block: it starts with a ustar header (or is empty), it is a whole
/// number of 512-byte blocks, and it ends with the zero block that closes an
/// archive, which a truncated one lacks.
#[derive(Debug, Default)]
pub struct TarShape {
    head: Vec<u8>,
    tail: Vec<u8>,
    len: u64,
}

impl TarShape {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.head.len() < HEAD_LEN {
            let n = (HEAD_LEN - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
        }
        if bytes.len() >= HEAD_LEN {
            self.tail.clear();
            bytes = &bytes[bytes.len() - HEAD_LEN..];
        }
        self.tail.extend_from_slice(bytes);
        let excess = self.tail.len().saturating_sub(HEAD_LEN);
        self.tail.drain(..excess);
    }

    pub fn finish(&self) -> Result<(), String> {
        check_tar_ends(&self.head, &self.tail, self.len)
    }
}

/// The checks of [`TarShape`] on a tar file read directly: `head` is its
/// first [`HEAD_LEN`] bytes, `tail` its last 512, `len` its length.
pub fn check_tar_ends(head: &[u8], tail: &[u8], len: u64) -> Result<(), String> {
    if !is_tar_head(head) {
        return Err(
            "The archive does not hold a tar archive: there is no tar header where it starts"
                .into(),
        );
    }
    if !len.is_multiple_of(512) || len < 1024 || tail.len() < 512 || tail.iter().any(|b| *b != 0) {
        return Err(
            "The tar archive is truncated: it does not end with the end-of-archive blocks".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{Action, PackageReference, Step};

    fn parsed(name: &str) -> (String, String, String) {
        let p = parse_file_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        (p.package_id, p.version, p.extension)
    }

    #[test]
    fn file_names_follow_the_octopus_convention() {
        let t = |id: &str, v: &str, e: &str| (id.to_owned(), v.to_owned(), e.to_owned());
        assert_eq!(
            parsed("Acme.Web.1.2.3-beta.1.zip"),
            t("Acme.Web", "1.2.3-beta.1", ".zip")
        );
        assert_eq!(parsed("Hello.1.0.0.tar.gz"), t("Hello", "1.0.0", ".tar.gz"));
        assert_eq!(parsed("Hello.1.0.0.TGZ"), t("Hello", "1.0.0", ".tgz"));
        assert_eq!(parsed("Hello.1.2.3.4.tar"), t("Hello", "1.2.3.4", ".tar"));
        assert_eq!(parsed("a.b.2.0.tar.bz2"), t("a.b", "2.0", ".tar.bz2"));
        assert_eq!(
            parsed("Acme.2Web.1.0.0.nupkg"),
            t("Acme.2Web", "1.0.0", ".nupkg")
        );
        assert_eq!(
            parsed("C:\\out\\Acme.1.0.0+sha.5.zip"),
            t("Acme", "1.0.0+sha.5", ".zip")
        );
        assert_eq!(parsed("../../x/Acme.1.0.0.zip"), t("Acme", "1.0.0", ".zip"));
        // Five parts cannot be a version; the id takes the first.
        assert_eq!(parsed("Acme.1.2.3.4.5.zip"), t("Acme.1", "2.3.4.5", ".zip"));
    }

    #[test]
    fn bad_file_names_say_what_is_wrong() {
        assert!(matches!(
            parse_file_name("Acme.Web.zip"),
            Err(PackageNameError::NoVersion(_))
        ));
        assert!(matches!(
            parse_file_name("Acme.Web.1.2.x.zip"),
            Err(PackageNameError::InvalidVersion { version, .. }) if version == "1.2.x"
        ));
        assert!(matches!(
            parse_file_name("Acme.Web.1.2.3-beta..1.zip"),
            Err(PackageNameError::InvalidVersion { .. })
        ));
        assert!(matches!(
            parse_file_name("Acme Web.1.0.0.zip"),
            Err(PackageNameError::InvalidPackageId { .. })
        ));
        assert!(matches!(
            parse_file_name("Acme.1.0.0.rar"),
            Err(PackageNameError::UnknownExtension(_))
        ));
        assert!(matches!(
            parse_file_name(".zip"),
            Err(PackageNameError::UnknownExtension(_))
        ));
        assert!(matches!(
            parse_file_name("Acme.v1.zip"),
            Err(PackageNameError::NoVersion(_))
        ));
        let message = parse_file_name("Acme.Web.zip").unwrap_err().to_string();
        assert!(message.contains("no version"), "{message}");
    }

    #[test]
    fn version_keys_match_equal_versions() {
        assert_eq!(version_key("1.0"), "1.0.0");
        assert_eq!(version_key("1.0.0.0"), "1.0.0");
        assert_eq!(version_key("1.2.3.4"), "1.2.3.4");
        assert_eq!(version_key("1.0.0-Beta.1+sha"), "1.0.0-beta.1");
        assert_eq!(version_key("1.0.0+sha"), version_key("1.0.0"));
    }

    #[test]
    fn feed_order_is_by_id_then_newest() {
        let p = |id: &str, v: &str| Package {
            package_id: id.into(),
            version: v.into(),
            ..Default::default()
        };
        let mut list = [
            p("b", "1.0.0"),
            p("A", "1.9.0-beta"),
            p("a", "1.10.0"),
            p("A", "1.9.0"),
        ];
        list.sort_by(feed_order);
        let got: Vec<_> = list.iter().map(|p| p.version.as_str()).collect();
        assert_eq!(got, ["1.10.0", "1.9.0", "1.9.0-beta", "1.0.0"]);
    }

    #[test]
    fn magic_bytes() {
        assert!(check_magic(PackageFormat::Zip, b"PK\x03\x04rest").is_ok());
        assert!(check_magic(PackageFormat::NuGet, b"PK\x05\x06").is_ok());
        assert!(check_magic(PackageFormat::Zip, b"\x1f\x8b\x08").is_err());
        assert!(check_magic(PackageFormat::TarGz, b"\x1f\x8b\x08\x00").is_ok());
        assert!(check_magic(PackageFormat::TarGz, b"PK\x03\x04").is_err());
        assert!(check_magic(
            PackageFormat::TarBz2,
            b"BZh9\x17\x72\x45\x38\x50\x90\0\0\0\0"
        )
        .is_ok());
        assert!(check_magic(PackageFormat::TarBz2, b"BZh0\x17\x72\x45\x38\x50\x90").is_err());
        let mut tar = vec![0u8; 512];
        assert!(check_magic(PackageFormat::Tar, &tar).is_ok());
        tar[0] = b'a';
        assert!(check_magic(PackageFormat::Tar, &tar).is_err());
        tar[257..262].copy_from_slice(b"ustar");
        assert!(check_magic(PackageFormat::Tar, &tar).is_ok());
        assert!(check_magic(PackageFormat::Tar, b"short").is_err());
    }

    #[test]
    fn zip_end_records() {
        let empty = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        assert_eq!(
            check_zip_end(empty, 22),
            Ok(ZipEnd {
                entries: 0,
                central_directory_offset: None
            })
        );
        assert!(check_zip_end(&empty[..21], 21).is_err());
        // A comment must reach exactly to the end of the file.
        let mut commented = empty.to_vec();
        commented[20] = 3;
        commented.extend_from_slice(b"abc");
        assert!(check_zip_end(&commented, 25).is_ok());
        assert!(check_zip_end(&commented[..24], 24).is_err());
        // A central directory beyond the record is damage.
        let mut far = empty.to_vec();
        far[10] = 1;
        far[16] = 200;
        assert!(check_zip_end(&far, 22).is_err());
    }

    #[test]
    fn bzip2_ends() {
        let empty = b"BZh9\x17\x72\x45\x38\x50\x90\0\0\0\0";
        assert!(check_bzip2_end(empty).is_ok());
        assert!(check_bzip2_end(&empty[..13]).is_err());
        // The same marker, shifted by 3 bits (3 bits of padding at the end).
        let mut bits: u128 = (0x1772_4538_5090u128 << 32 | 0xDEAD_BEEF) << 3;
        bits |= 0b101u128 << 83; // stream bits before the marker
        let shifted = bits.to_be_bytes();
        assert!(check_bzip2_end(&shifted[5..]).is_ok());
        assert!(check_bzip2_end(&shifted[5..15]).is_err());
    }

    #[test]
    fn tar_shapes() {
        let mut header = vec![0u8; 512];
        header[257..262].copy_from_slice(b"ustar");
        let mut whole = header.clone();
        whole.extend(vec![7u8; 512]);
        whole.extend(vec![0u8; 1024]);
        let mut shape = TarShape::default();
        for chunk in whole.chunks(100) {
            shape.feed(chunk);
        }
        assert!(shape.finish().is_ok());
        let mut cut = TarShape::default();
        cut.feed(&whole[..1024]);
        assert!(cut.finish().is_err());
        let mut odd = TarShape::default();
        odd.feed(&whole[..2000]);
        assert!(odd.finish().is_err());
        let mut not_tar = TarShape::default();
        not_tar.feed(&[1u8; 2048]);
        assert!(not_tar.finish().is_err());
        let mut empty = TarShape::default();
        empty.feed(&[0u8; 1024]);
        assert!(empty.finish().is_ok());
    }

    #[test]
    fn selections_name_packages_through_the_process() {
        let process = DeploymentProcess {
            steps: vec![Step {
                actions: vec![
                    Action {
                        name: "Deploy web".into(),
                        packages: vec![PackageReference {
                            name: String::new(),
                            package_id: "Acme.Web".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                    Action {
                        name: "Old style".into(),
                        properties: [(
                            "Octopus.Action.Package.PackageId".to_owned(),
                            serde_json::json!("Acme.Old"),
                        )]
                        .into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let sel = |action: &str, version: &str| SelectedPackage {
            action_name: action.into(),
            step_name: None,
            package_reference_name: None,
            version: version.into(),
        };
        assert!(selection_uses_package(
            &process,
            &sel("Deploy web", "1.0"),
            "acme.web",
            "1.0.0"
        ));
        assert!(!selection_uses_package(
            &process,
            &sel("Deploy web", "1.0.1"),
            "Acme.Web",
            "1.0.0"
        ));
        assert!(!selection_uses_package(
            &process,
            &sel("Deploy web", "1.0.0"),
            "Acme.Api",
            "1.0.0"
        ));
        assert!(selection_uses_package(
            &process,
            &sel("Old style", "2.0.0"),
            "Acme.Old",
            "2.0.0"
        ));
        let named = SelectedPackage {
            package_reference_name: Some("other".into()),
            ..sel("Deploy web", "1.0.0")
        };
        assert!(!selection_uses_package(
            &process, &named, "Acme.Web", "1.0.0"
        ));
    }
}
