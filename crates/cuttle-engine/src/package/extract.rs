//! Unpacking a package into a fresh directory.
//!
//! Packages come from people and build servers, so an archive is treated as
//! hostile until unpacked:
//! - its first bytes must be the signature of the format its name claims;
//! - entries that are absolute or contain `..` are refused (zip-slip), and
//!   nothing is ever written through a symbolic link, so no entry lands
//!   outside the extraction directory;
//! - symbolic links are kept (Node and Python packages are full of them) only
//!   when relative and pointing inside the directory: their target may start
//!   with `..` components, never climbing above the root, and has no `..`
//!   after a name. Absolute or escaping links are refused. Hard links (tar)
//!   must name a regular file extracted earlier;
//! - bytes are counted as they are written (headers lie), and for tars also
//!   as they are decompressed (a tar reader skips the data of entries it
//!   does not write, and reads GNU long names whole into memory), and
//!   extraction stops past [`ExtractLimits`]: a total, a ratio to the
//!   archive's size, a number of entries;
//! - everything is unpacked into a temp directory beside `dest` and renamed
//!   to `dest` only at the end, so a failure leaves no `dest` behind.
//!
//! File modes (executable bits) come from tar headers and from the Unix
//! attributes of zip entries; set-id and sticky bits are dropped and the
//! owner can always read and write (later steps rewrite and purge files).
//! Device files and FIFOs in tars are skipped and reported.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// The archive formats a package can come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchiveFormat {
    Zip,
    /// A zip whose packaging metadata (`[Content_Types].xml`, `_rels/`,
    /// `package/services/metadata/`, `.signature.p7s`) is skipped and whose
    /// percent-encoded names are decoded, as Octopus does.
    Nupkg,
    Tar,
    TarGz,
    TarBz2,
}

impl ArchiveFormat {
    /// The format a package file's name says it has (case-insensitive):
    /// `.zip`, `.nupkg`, `.tar`, `.tar.gz`/`.tgz`, `.tar.bz2`/`.tbz2`/`.tbz`.
    pub fn from_file_name(name: &str) -> Option<ArchiveFormat> {
        let name = name.to_ascii_lowercase();
        let formats = [
            (".tar.gz", ArchiveFormat::TarGz),
            (".tgz", ArchiveFormat::TarGz),
            (".tar.bz2", ArchiveFormat::TarBz2),
            (".tbz2", ArchiveFormat::TarBz2),
            (".tbz", ArchiveFormat::TarBz2),
            (".tar", ArchiveFormat::Tar),
            (".zip", ArchiveFormat::Zip),
            (".nupkg", ArchiveFormat::Nupkg),
        ];
        formats
            .into_iter()
            .find(|(ext, _)| name.ends_with(ext))
            .map(|(_, f)| f)
    }

    /// Whether `head` (the file's first bytes, up to 512) has the format's
    /// signature.
    fn signature_matches(self, head: &[u8]) -> bool {
        match self {
            ArchiveFormat::Zip | ArchiveFormat::Nupkg => {
                head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
            }
            ArchiveFormat::TarGz => head.starts_with(&[0x1f, 0x8b]),
            ArchiveFormat::TarBz2 => head.starts_with(b"BZh"),
            // POSIX `ustar\0` and GNU `ustar ` alike; pre-POSIX (v7) tars
            // have no signature and are refused.
            ArchiveFormat::Tar => head.get(257..262) == Some(b"ustar"),
        }
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveFormat::Zip => "zip",
            ArchiveFormat::Nupkg => "NuGet (zip)",
            ArchiveFormat::Tar => "tar",
            ArchiveFormat::TarGz => "gzip-compressed tar",
            ArchiveFormat::TarBz2 => "bzip2-compressed tar",
        })
    }
}

/// How much an archive may expand to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most bytes written in all. Default 10 GiB.
    pub max_total_bytes: u64,
    /// Most bytes written per byte of archive. Default 200: real packages
    /// stay far below (text compresses about 10:1), bombs far above.
    pub max_ratio: u64,
    /// Bytes written before `max_ratio` applies, so a tiny archive of a
    /// highly repetitive file is not taken for a bomb. Default 16 MiB.
    pub ratio_free_bytes: u64,
    /// Most entries (files, directories, links). Default 1,000,000.
    pub max_entries: u64,
}

impl ExtractLimits {
    /// The most bytes an archive of `compressed` bytes may expand to: past
    /// it, it is too large or a decompression bomb.
    pub fn allowed(&self, compressed: u64) -> u64 {
        let by_ratio = compressed.saturating_mul(self.max_ratio);
        self.max_total_bytes
            .min(self.ratio_free_bytes.max(by_ratio))
    }
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_total_bytes: 10 << 30,
            max_ratio: 200,
            ratio_free_bytes: 16 << 20,
            max_entries: 1_000_000,
        }
    }
}

/// What was extracted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractReport {
    pub files: u64,
    pub directories: u64,
    /// Symbolic and hard links.
    pub links: u64,
    /// Bytes written, all files together.
    pub bytes: u64,
    /// Entries not extracted, each with why (nupkg metadata, device files).
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{file} is not a {expected} archive: its first bytes are not that format's signature")]
    NotA {
        expected: ArchiveFormat,
        file: PathBuf,
    },
    #[error("{file} is damaged or truncated, or uses an unsupported feature: {reason}")]
    Corrupt { file: PathBuf, reason: String },
    #[error("{file}: entry '{entry}' was refused: {reason}")]
    UnsafeEntry {
        file: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{file} expands to more than {limit} bytes; extraction was stopped")]
    TooLarge { file: PathBuf, limit: u64 },
    #[error("{file} looks like a decompression bomb: it expands to more than {ratio} times its size of {compressed} bytes; extraction was stopped")]
    Bomb {
        file: PathBuf,
        ratio: u64,
        compressed: u64,
    },
    #[error("{file} has more than {limit} entries; extraction was stopped")]
    TooManyEntries { file: PathBuf, limit: u64 },
    #[error("cannot extract into {dest}: it already exists")]
    DestinationExists { dest: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Longest symbolic link target read from a zip (Linux's `PATH_MAX`).
const PATH_MAX: u64 = 4096;

type Result<T, E = ExtractError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Extracts `archive`, which must be in `format`, into the directory `dest`,
/// which must not exist yet (its parents are created).
///
/// On error nothing is left at `dest`: the entries go to a temp directory
/// beside it, renamed to `dest` only once all of them are written, and
/// removed otherwise.
pub fn extract(
    archive: &Path,
    format: ArchiveFormat,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractReport> {
    let mut file = File::open(archive).map_err(io_err(archive))?;
    let compressed = file.metadata().map_err(io_err(archive))?.len();
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .map_err(io_err(archive))?;
    if !format.signature_matches(&head) {
        return Err(ExtractError::NotA {
            expected: format,
            file: archive.to_owned(),
        });
    }
    drop(file);

    if fs::symlink_metadata(dest).is_ok() {
        return Err(ExtractError::DestinationExists {
            dest: dest.to_owned(),
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let temp = tempfile::Builder::new()
        .prefix(".cuttle-extract-")
        .tempdir_in(parent)
        .map_err(io_err(parent))?;

    let mut unpacker = Unpacker {
        archive,
        root: temp.path().to_owned(),
        limits,
        compressed,
        expanded: 0,
        inflated: Rc::default(),
        entries: 0,
        real_dirs: HashSet::new(),
        dir_modes: Vec::new(),
        report: ExtractReport::default(),
    };
    // On error `temp` is dropped here, removing whatever was written.
    match format {
        ArchiveFormat::Zip => unpacker.zip(false)?,
        ArchiveFormat::Nupkg => unpacker.zip(true)?,
        ArchiveFormat::Tar => unpacker.tar(open_buffered(archive)?)?,
        ArchiveFormat::TarGz => {
            unpacker.tar(flate2::read::MultiGzDecoder::new(open_buffered(archive)?))?
        }
        ArchiveFormat::TarBz2 => {
            unpacker.tar(bzip2::read::MultiBzDecoder::new(open_buffered(archive)?))?
        }
    }
    unpacker.apply_dir_modes()?;
    let report = unpacker.report;

    if fs::symlink_metadata(dest).is_ok() {
        return Err(ExtractError::DestinationExists {
            dest: dest.to_owned(),
        });
    }
    let staged = temp.keep();
    if let Err(e) = fs::rename(&staged, dest) {
        let _ = fs::remove_dir_all(&staged);
        return Err(io_err(dest)(e));
    }
    Ok(report)
}

fn open_buffered(archive: &Path) -> Result<BufReader<File>> {
    File::open(archive)
        .map(|f| BufReader::with_capacity(256 << 10, f))
        .map_err(io_err(archive))
}

/// The extraction in progress, into `root` (the temp directory).
struct Unpacker<'a> {
    archive: &'a Path,
    root: PathBuf,
    limits: &'a ExtractLimits,
    compressed: u64,
    /// Bytes written so far, which the limits apply to.
    expanded: u64,
    /// Bytes of a tar taken from its (decompressed) stream so far, which
    /// the limits apply to as well: counted by [`Metered`].
    inflated: Rc<Cell<u64>>,
    entries: u64,
    /// Directories (relative) known to be real directories made here: never
    /// symlinks, and never replaced, so entries below them are safe to write.
    real_dirs: HashSet<PathBuf>,
    /// Directory modes, applied once every entry is written (a read-only
    /// directory could not be filled).
    dir_modes: Vec<(PathBuf, u32)>,
    report: ExtractReport,
}

impl Unpacker<'_> {
    fn corrupt(&self, reason: impl fmt::Display) -> ExtractError {
        ExtractError::Corrupt {
            file: self.archive.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ExtractError {
        ExtractError::UnsafeEntry {
            file: self.archive.to_owned(),
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn count_entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                file: self.archive.to_owned(),
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Counts `n` more bytes about to be written, failing past the limits.
    fn account(&mut self, n: u64) -> Result<()> {
        self.expanded = self.expanded.saturating_add(n);
        self.within_limits(self.expanded)
    }

    /// The limit a failed read ran into, if that is why it failed.
    fn over_limit(&self) -> Option<ExtractError> {
        self.within_limits(self.inflated.get().max(self.expanded))
            .err()
    }

    /// A tar stream's error: the limit it ran into, or damage.
    fn stream_error(&self, reason: impl fmt::Display) -> ExtractError {
        self.over_limit().unwrap_or_else(|| self.corrupt(reason))
    }

    fn within_limits(&self, bytes: u64) -> Result<()> {
        if bytes > self.limits.max_total_bytes {
            return Err(ExtractError::TooLarge {
                file: self.archive.to_owned(),
                limit: self.limits.max_total_bytes,
            });
        }
        if bytes > self.limits.ratio_free_bytes
            && bytes > self.compressed.saturating_mul(self.limits.max_ratio)
        {
            return Err(ExtractError::Bomb {
                file: self.archive.to_owned(),
                ratio: self.limits.max_ratio,
                compressed: self.compressed,
            });
        }
        Ok(())
    }

    /// The entry's path relative to the root, or why it is refused; `None`
    /// for an entry naming the root itself (`./`).
    fn relative(&self, entry: &str, path: &Path) -> Result<Option<PathBuf>> {
        let mut rel = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(self.refuse(entry, "its path contains '..'"));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(entry, "its path is absolute"));
                }
            }
        }
        Ok((!rel.as_os_str().is_empty()).then_some(rel))
    }

    /// Makes sure every directory above `rel` is a real directory made
    /// here, creating missing ones: an entry is never written through a
    /// symbolic link.
    fn parents(&mut self, entry: &str, rel: &Path) -> Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut dir = PathBuf::new();
        for part in parent.components() {
            dir.push(part);
            if self.real_dirs.contains(&dir) {
                continue;
            }
            let full = self.root.join(&dir);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(
                        entry,
                        format!(
                            "it would be written through the symbolic link '{}'",
                            dir.display()
                        ),
                    ));
                }
                Ok(_) => {
                    return Err(self.refuse(
                        entry,
                        format!("'{}' is a file, not a directory", dir.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&full).map_err(io_err(&full))?;
                    set_mode(&full, 0o755)?;
                }
                Err(e) => return Err(io_err(&full)(e)),
            }
            self.real_dirs.insert(dir.clone());
        }
        Ok(())
    }

    /// Frees `rel` for a new file or link: a later entry of the same name
    /// replaces an earlier file or link (tar's append semantics), never a
    /// directory.
    fn clear(&self, entry: &str, rel: &Path) -> Result<()> {
        let full = self.root.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {
                Err(self.refuse(entry, "an earlier entry made a directory of the same name"))
            }
            Ok(_) => fs::remove_file(&full).map_err(io_err(&full)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&full)(e)),
        }
    }

    fn dir(&mut self, entry: &str, rel: PathBuf, mode: u32) -> Result<()> {
        self.parents(entry, &rel)?;
        let full = self.root.join(&rel);
        if !self.real_dirs.contains(&rel) {
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(self.refuse(
                        entry,
                        "an earlier entry made a file or link of the same name",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&full).map_err(io_err(&full))?;
                    self.report.directories += 1;
                }
                Err(e) => return Err(io_err(&full)(e)),
            }
            self.real_dirs.insert(rel.clone());
        }
        self.dir_modes.push((full, mode & 0o777 | 0o700));
        Ok(())
    }

    fn file(&mut self, entry: &str, rel: PathBuf, mode: u32, data: &mut dyn Read) -> Result<()> {
        self.parents(entry, &rel)?;
        self.clear(entry, &rel)?;
        let full = self.root.join(&rel);
        // `create_new` never follows a symlink at the final component.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&full)
            .map_err(io_err(&full))?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let reason = format!("reading entry '{entry}': {e}");
                    return Err(self.stream_error(reason));
                }
            };
            self.account(n as u64)?;
            self.report.bytes += n as u64;
            out.write_all(&buf[..n]).map_err(io_err(&full))?;
        }
        out.set_permissions(fs::Permissions::from_mode(mode & 0o777 | 0o600))
            .map_err(io_err(&full))?;
        self.report.files += 1;
        Ok(())
    }

    fn symlink(&mut self, entry: &str, rel: PathBuf, target: &Path) -> Result<()> {
        // How deep the link sits decides how many leading `..` it may use.
        let depth = rel.components().count() - 1;
        let mut ups = 0;
        let mut names = 0;
        for component in target.components() {
            match component {
                Component::Normal(_) => names += 1,
                Component::CurDir => {}
                Component::ParentDir if names == 0 => ups += 1,
                Component::ParentDir => {
                    return Err(self.refuse(
                        entry,
                        format!(
                            "symbolic link to '{}': '..' after a name is not allowed",
                            target.display()
                        ),
                    ));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(
                        entry,
                        format!(
                            "symbolic link to the absolute path '{}' points outside the package",
                            target.display()
                        ),
                    ));
                }
            }
        }
        if ups > depth {
            return Err(self.refuse(
                entry,
                format!(
                    "symbolic link to '{}' points outside the package",
                    target.display()
                ),
            ));
        }
        if target.as_os_str().is_empty() {
            return Err(self.refuse(entry, "symbolic link with an empty target"));
        }
        self.parents(entry, &rel)?;
        self.clear(entry, &rel)?;
        let full = self.root.join(&rel);
        std::os::unix::fs::symlink(target, &full).map_err(io_err(&full))?;
        self.report.links += 1;
        Ok(())
    }

    fn hard_link(&mut self, entry: &str, rel: PathBuf, target: &Path) -> Result<()> {
        let target_name = target.to_string_lossy();
        let outside = || {
            self.refuse(
                entry,
                format!("hard link to '{target_name}' points outside the package"),
            )
        };
        let target_rel = match self.relative(&target_name, target) {
            Ok(Some(rel)) => rel,
            _ => return Err(outside()),
        };
        // The source must be a regular file reached through real directories
        // only; a hard link to a symlink would carry its target elsewhere.
        let parents_real = target_rel
            .parent()
            .is_none_or(|p| p.as_os_str().is_empty() || self.real_dirs.contains(p));
        let source = self.root.join(&target_rel);
        let is_file = fs::symlink_metadata(&source).is_ok_and(|m| m.is_file());
        if !parents_real || !is_file {
            return Err(self.refuse(
                entry,
                format!(
                    "hard link to '{target_name}', which is not a regular file extracted earlier"
                ),
            ));
        }
        self.parents(entry, &rel)?;
        self.clear(entry, &rel)?;
        let full = self.root.join(&rel);
        fs::hard_link(&source, &full).map_err(io_err(&full))?;
        self.report.links += 1;
        Ok(())
    }

    fn apply_dir_modes(&mut self) -> Result<()> {
        for (dir, mode) in self.dir_modes.drain(..).rev() {
            set_mode(&dir, mode)?;
        }
        Ok(())
    }

    fn zip(&mut self, nupkg: bool) -> Result<()> {
        let reader = open_buffered(self.archive)?;
        let mut zip = zip::ZipArchive::new(reader).map_err(|e| self.corrupt(e))?;
        if zip.len() as u64 > self.limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                file: self.archive.to_owned(),
                limit: self.limits.max_entries,
            });
        }
        for index in 0..zip.len() {
            let mut file = zip.by_index(index).map_err(|e| self.corrupt(e))?;
            self.count_entry()?;
            // Zips made on Windows may use `\`; a Unix name with `\` is rare.
            let raw = file.name().replace('\\', "/");
            let name = if nupkg { percent_decode(&raw) } else { raw };
            if nupkg && is_nupkg_metadata(&name) {
                self.report
                    .skipped
                    .push(format!("{name}: NuGet packaging metadata"));
                continue;
            }
            let Some(rel) = self.relative(&name, Path::new(&name))? else {
                continue;
            };
            let mode = file.unix_mode();
            if file.is_dir() {
                self.dir(&name, rel, mode.unwrap_or(0o755))?;
            } else if file.is_symlink() {
                let mut target = Vec::new();
                (&mut file)
                    .take(PATH_MAX + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| self.corrupt(format!("reading entry '{name}': {e}")))?;
                if target.len() as u64 > PATH_MAX {
                    return Err(self.refuse(&name, "symbolic link target is too long"));
                }
                let target = String::from_utf8(target)
                    .map_err(|_| self.refuse(&name, "symbolic link target is not UTF-8"))?;
                self.symlink(&name, rel, Path::new(&target))?;
            } else {
                self.file(&name, rel, mode.unwrap_or(0o644), &mut file)?;
            }
        }
        Ok(())
    }

    fn tar<R: Read>(&mut self, reader: R) -> Result<()> {
        use tar::EntryType;
        let metered = Metered {
            inner: reader,
            read: self.inflated.clone(),
            allowed: self.limits.allowed(self.compressed),
        };
        let mut archive = tar::Archive::new(metered);
        let entries = archive.entries().map_err(|e| self.stream_error(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.stream_error(e))?;
            let path = entry.path().map_err(|e| self.stream_error(e))?.into_owned();
            let name = path.to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            if matches!(
                kind,
                EntryType::XGlobalHeader
                    | EntryType::XHeader
                    | EntryType::GNULongName
                    | EntryType::GNULongLink
            ) {
                continue;
            }
            self.count_entry()?;
            let Some(rel) = self.relative(&name, &path)? else {
                continue;
            };
            let mode = entry.header().mode().unwrap_or(0o644);
            match kind {
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    self.file(&name, rel, mode, &mut entry)?;
                }
                EntryType::Directory => self.dir(&name, rel, mode)?,
                EntryType::Symlink | EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(|e| self.stream_error(e))?
                        .ok_or_else(|| self.refuse(&name, "link without a target"))?
                        .into_owned();
                    if kind == EntryType::Symlink {
                        self.symlink(&name, rel, &target)?;
                    } else {
                        self.hard_link(&name, rel, &target)?;
                    }
                }
                other => self
                    .report
                    .skipped
                    .push(format!("{name}: unsupported entry type {other:?}")),
            }
        }
        // Read the rest of the stream so a truncated or damaged compressed
        // tail (gzip's and bzip2's checksums) is noticed; the meter counts it.
        let mut rest = archive.into_inner();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match rest.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.stream_error(e)),
            }
        }
        Ok(())
    }
}

/// A tar's decompressed stream, counted into `read` as the tar reader
/// takes it, and cut off (an error) once past `allowed` bytes, so no entry,
/// written or not, makes extraction read or hold more.
struct Metered<R> {
    inner: R,
    read: Rc<Cell<u64>>,
    allowed: u64,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let so_far = self.read.get();
        let past = || io::Error::other("the archive expands past its limits");
        if so_far > self.allowed {
            return Err(past());
        }
        // One byte past the limit is enough to know it was passed.
        let room = usize::try_from(self.allowed - so_far + 1).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let n = self.inner.read(&mut buf[..want])?;
        self.read.set(so_far + n as u64);
        if so_far + n as u64 > self.allowed {
            return Err(past());
        }
        Ok(n)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// NuGet's packaging files, which are not the package's content.
fn is_nupkg_metadata(name: &str) -> bool {
    name == "[Content_Types].xml"
        || name == ".signature.p7s"
        || name.starts_with("_rels/")
        || name.starts_with("package/services/metadata/")
}

/// NuGet percent-encodes names (`a%20b.txt`); decoded before the name is
/// checked, so `%2E%2E` is refused like `..`. Names that do not decode to
/// UTF-8 are kept as written.
fn percent_decode(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The directory's entries, to check that nothing was left behind.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_700_000_000);
        header
    }

    /// Writes `name` and `link` into the header as raw bytes: the builder's
    /// own setters refuse `..` and absolute paths, which these tests need.
    fn raw_entry(
        builder: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        name: &str,
        link: &str,
        data: &[u8],
    ) {
        let mut header = tar_header(kind, 0o644, data.len() as u64);
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    fn good_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let dir = tar_header(tar::EntryType::Directory, 0o750, 0);
        b.append_data(&mut dir.clone(), "bin/", io::empty())
            .unwrap();
        let script = b"#!/bin/sh\necho hi\n";
        let mut h = tar_header(tar::EntryType::Regular, 0o755, script.len() as u64);
        b.append_data(&mut h, "bin/run.sh", &script[..]).unwrap();
        let mut h = tar_header(tar::EntryType::Regular, 0o644, 5);
        b.append_data(&mut h, "docs/readme.txt", &b"hello"[..])
            .unwrap();
        let mut h = tar_header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "latest", "bin/run.sh").unwrap();
        let mut h = tar_header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "docs/up", "../bin").unwrap();
        let mut h = tar_header(tar::EntryType::Link, 0o644, 0);
        b.append_link(&mut h, "copy.txt", "docs/readme.txt")
            .unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn bzip(data: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zip_archive(entries: &[(&str, ZipKind<'_>)]) -> Vec<u8> {
        use zip::write::SimpleFileOptions;
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, kind) in entries {
            match kind {
                ZipKind::File(data, mode) => {
                    let options = SimpleFileOptions::default()
                        .compression_method(zip::CompressionMethod::Deflated)
                        .unix_permissions(*mode);
                    w.start_file(*name, options).unwrap();
                    w.write_all(data).unwrap();
                }
                ZipKind::Dir => w
                    .add_directory(*name, SimpleFileOptions::default())
                    .unwrap(),
                ZipKind::Link(target) => w
                    .add_symlink(*name, *target, SimpleFileOptions::default())
                    .unwrap(),
            }
        }
        w.finish().unwrap().into_inner()
    }

    enum ZipKind<'a> {
        File(&'a [u8], u32),
        Dir,
        Link(&'a str),
    }

    struct Case {
        _dir: tempfile::TempDir,
        archive: PathBuf,
        dest: PathBuf,
        outside: PathBuf,
    }

    fn case(name: &str, bytes: &[u8]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join(name);
        fs::write(&archive, bytes).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        Case {
            dest: dir.path().join("apps/Production/Acme/1.0.0"),
            archive,
            outside,
            _dir: dir,
        }
    }

    impl Case {
        fn extract(&self, format: ArchiveFormat) -> Result<ExtractReport> {
            extract(&self.archive, format, &self.dest, &ExtractLimits::default())
        }

        /// After a failure: no destination, no temp directory, nothing
        /// written outside.
        fn assert_clean(&self) {
            assert!(fs::symlink_metadata(&self.dest).is_err(), "dest exists");
            if let Some(parent) = self.dest.parent().filter(|p| p.exists()) {
                assert!(listing(parent).is_empty(), "{:?}", listing(parent));
            }
            assert!(listing(&self.outside).is_empty());
            let root = self.archive.parent().unwrap();
            for stray in ["evil", "evil.txt"] {
                assert!(!root.join(stray).exists());
                assert!(!root.join("apps").join(stray).exists());
            }
        }
    }

    #[test]
    fn formats_from_file_names() {
        use ArchiveFormat::*;
        let cases = [
            ("Acme.Web.1.0.0.zip", Some(Zip)),
            ("Acme.Web.1.0.0.nupkg", Some(Nupkg)),
            ("a.TAR", Some(Tar)),
            ("a.tar.gz", Some(TarGz)),
            ("a.tgz", Some(TarGz)),
            ("a.tar.bz2", Some(TarBz2)),
            ("a.gz", None),
            ("a.rar", None),
        ];
        for (name, expected) in cases {
            assert_eq!(ArchiveFormat::from_file_name(name), expected, "{name}");
        }
    }

    #[test]
    fn tar_formats_extract_with_modes_and_links() {
        let tar = good_tar();
        for (name, bytes, format) in [
            ("p.tar", tar.clone(), ArchiveFormat::Tar),
            ("p.tar.gz", gzip(&tar), ArchiveFormat::TarGz),
            ("p.tar.bz2", bzip(&tar), ArchiveFormat::TarBz2),
        ] {
            let c = case(name, &bytes);
            let report = c.extract(format).unwrap();
            let d = &c.dest;
            assert_eq!(
                fs::read_to_string(d.join("docs/readme.txt")).unwrap(),
                "hello"
            );
            assert_eq!(mode(&d.join("bin/run.sh")), 0o755, "{name}");
            assert_eq!(mode(&d.join("docs/readme.txt")), 0o644);
            assert_eq!(mode(&d.join("bin")), 0o750);
            assert_eq!(
                fs::read_link(d.join("latest")).unwrap(),
                Path::new("bin/run.sh")
            );
            assert!(fs::read_to_string(d.join("docs/up/run.sh"))
                .unwrap()
                .contains("echo hi"));
            assert_eq!(fs::read_to_string(d.join("copy.txt")).unwrap(), "hello");
            assert_eq!((report.files, report.links), (2, 3), "{name}: {report:?}");
            assert_eq!(report.bytes, 23);
            // Only the destination is left beside it: no temp directory.
            assert_eq!(listing(d.parent().unwrap()), vec!["1.0.0"]);
        }
    }

    #[test]
    fn zip_extracts_with_modes_and_links() {
        let bytes = zip_archive(&[
            ("bin/", ZipKind::Dir),
            ("bin/run.sh", ZipKind::File(b"#!/bin/sh\n", 0o755)),
            ("web\\web.config", ZipKind::File(b"<config/>", 0o640)),
            ("run", ZipKind::Link("bin/run.sh")),
        ]);
        let c = case("p.zip", &bytes);
        let report = c.extract(ArchiveFormat::Zip).unwrap();
        assert_eq!(mode(&c.dest.join("bin/run.sh")), 0o755);
        assert_eq!(mode(&c.dest.join("web/web.config")), 0o640);
        assert_eq!(
            fs::read_link(c.dest.join("run")).unwrap(),
            Path::new("bin/run.sh")
        );
        assert_eq!((report.files, report.directories, report.links), (2, 1, 1));
    }

    #[test]
    fn nupkg_skips_packaging_metadata_and_decodes_names() {
        let bytes = zip_archive(&[
            ("[Content_Types].xml", ZipKind::File(b"<Types/>", 0o644)),
            ("_rels/.rels", ZipKind::File(b"<Relationships/>", 0o644)),
            (
                "package/services/metadata/core-properties/1.psmdcp",
                ZipKind::File(b"<x/>", 0o644),
            ),
            ("Acme.Web.nuspec", ZipKind::File(b"<package/>", 0o644)),
            ("content/a%20b.txt", ZipKind::File(b"spaced", 0o644)),
        ]);
        let c = case("Acme.Web.1.0.0.nupkg", &bytes);
        let report = c.extract(ArchiveFormat::Nupkg).unwrap();
        assert_eq!(listing(&c.dest), vec!["Acme.Web.nuspec", "content"]);
        assert_eq!(
            fs::read_to_string(c.dest.join("content/a b.txt")).unwrap(),
            "spaced"
        );
        assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
    }

    #[test]
    fn archive_that_is_not_what_its_extension_says() {
        let zip = zip_archive(&[("a.txt", ZipKind::File(b"a", 0o644))]);
        let c = case("p.tar.gz", &zip);
        let err = c.extract(ArchiveFormat::TarGz).unwrap_err();
        assert!(
            matches!(&err, ExtractError::NotA { expected: ArchiveFormat::TarGz, file } if file == &c.archive),
            "{err:?}"
        );
        assert!(err.to_string().contains("p.tar.gz"), "{err}");
        c.assert_clean();

        let c = case("p.zip", b"just some text, not a zip at all");
        assert!(matches!(
            c.extract(ArchiveFormat::Zip),
            Err(ExtractError::NotA { .. })
        ));
        let c = case("p.tar", &gzip(&good_tar()));
        assert!(matches!(
            c.extract(ArchiveFormat::Tar),
            Err(ExtractError::NotA { .. })
        ));
        let c = case("p.tar.bz2", &gzip(&good_tar()));
        assert!(matches!(
            c.extract(ArchiveFormat::TarBz2),
            Err(ExtractError::NotA { .. })
        ));
        c.assert_clean();
    }

    #[test]
    fn truncated_archives_fail_clearly_and_leave_nothing() {
        // Incompressible content, so the cut falls inside the file's data.
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar_header(tar::EntryType::Regular, 0o644, noise.len() as u64);
        b.append_data(&mut h, "data.bin", &noise[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let zip = zip_archive(&[
            ("a.bin", ZipKind::File(&noise, 0o644)),
            ("b.bin", ZipKind::File(&noise, 0o644)),
        ]);
        for (name, full, format) in [
            ("p.tar.gz", gzip(&tar), ArchiveFormat::TarGz),
            ("p.tar.bz2", bzip(&tar), ArchiveFormat::TarBz2),
            ("p.tar", tar.clone(), ArchiveFormat::Tar),
            ("p.zip", zip.clone(), ArchiveFormat::Zip),
        ] {
            let c = case(name, &full[..full.len() / 2]);
            let err = c.extract(format).unwrap_err();
            assert!(
                matches!(err, ExtractError::Corrupt { .. }),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
            c.assert_clean();
        }
        // Cut inside the gzip trailer, after the tar's end: still noticed.
        let gz = gzip(&tar);
        let c = case("tail.tar.gz", &gz[..gz.len() - 4]);
        assert!(matches!(
            c.extract(ArchiveFormat::TarGz),
            Err(ExtractError::Corrupt { .. })
        ));
        c.assert_clean();
    }

    #[test]
    fn tar_entries_escaping_the_directory_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let absolute = outside.path().join("evil");
        let absolute = absolute.to_str().unwrap();
        for (name, link, kind) in [
            ("../evil", "", tar::EntryType::Regular),
            ("docs/../../evil", "", tar::EntryType::Regular),
            (absolute, "", tar::EntryType::Regular),
            ("etc", "/etc", tar::EntryType::Symlink),
            ("up", "../outside", tar::EntryType::Symlink),
            ("docs/sneaky", "x/../../..", tar::EntryType::Symlink),
            ("passwd", "/etc/passwd", tar::EntryType::Link),
            ("hard", "../outside/x", tar::EntryType::Link),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar_header(tar::EntryType::Regular, 0o644, 2);
            b.append_data(&mut h, "docs/ok.txt", &b"ok"[..]).unwrap();
            raw_entry(&mut b, kind, name, link, b"evil");
            let c = case("p.tar.gz", &gzip(&b.into_inner().unwrap()));
            let err = c.extract(ArchiveFormat::TarGz).unwrap_err();
            match &err {
                ExtractError::UnsafeEntry { entry, .. } => assert_eq!(entry, name),
                other => panic!("{name}: {other:?}"),
            }
            c.assert_clean();
            assert!(listing(outside.path()).is_empty(), "{name}");
        }
    }

    #[test]
    fn nothing_is_written_through_a_symlink() {
        // `link` -> `docs` is inside and allowed; `link/x` would be written
        // through it, which is refused whatever the link points to.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar_header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, "docs/", io::empty()).unwrap();
        let mut h = tar_header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "link", "docs").unwrap();
        raw_entry(&mut b, tar::EntryType::Regular, "link/x.txt", "", b"x");
        let c = case("p.tar", &b.into_inner().unwrap());
        let err = c.extract(ArchiveFormat::Tar).unwrap_err();
        assert!(err.to_string().contains("symbolic link 'link'"), "{err}");
        c.assert_clean();
    }

    #[test]
    fn zip_slip_entries_and_escaping_links_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let absolute = outside.path().join("evil");
        let absolute = absolute.to_str().unwrap().to_owned();
        for (name, kind) in [
            ("../evil", ZipKind::File(b"x", 0o644)),
            ("..\\evil", ZipKind::File(b"x", 0o644)),
            (absolute.as_str(), ZipKind::File(b"x", 0o644)),
            ("etc", ZipKind::Link("/etc")),
            ("up", ZipKind::Link("../../outside")),
        ] {
            let bytes = zip_archive(&[("ok.txt", ZipKind::File(b"ok", 0o644)), (name, kind)]);
            let c = case("p.zip", &bytes);
            let err = c.extract(ArchiveFormat::Zip).unwrap_err();
            assert!(
                matches!(err, ExtractError::UnsafeEntry { .. }),
                "{name}: {err:?}"
            );
            c.assert_clean();
            assert!(listing(outside.path()).is_empty(), "{name}");
        }
        // Encoded `..` in a nupkg is decoded first, then refused.
        let bytes = zip_archive(&[("%2E%2E/evil", ZipKind::File(b"x", 0o644))]);
        let c = case("p.nupkg", &bytes);
        assert!(matches!(
            c.extract(ArchiveFormat::Nupkg),
            Err(ExtractError::UnsafeEntry { .. })
        ));
        c.assert_clean();
    }

    #[test]
    fn zip_bomb_is_stopped_past_the_ratio() {
        let zeros = vec![0u8; 50 << 20];
        let bytes = zip_archive(&[("zeros.bin", ZipKind::File(&zeros, 0o644))]);
        assert!(bytes.len() < 1 << 20, "{}", bytes.len());
        let c = case("bomb.zip", &bytes);
        let limits = ExtractLimits {
            max_ratio: 100,
            ratio_free_bytes: 1 << 20,
            ..ExtractLimits::default()
        };
        let err = extract(&c.archive, ArchiveFormat::Zip, &c.dest, &limits).unwrap_err();
        assert!(
            matches!(err, ExtractError::Bomb { ratio: 100, .. }),
            "{err:?}"
        );
        c.assert_clean();

        // The same archive within a generous ratio extracts.
        let limits = ExtractLimits {
            max_ratio: 100_000,
            ..ExtractLimits::default()
        };
        let report = extract(&c.archive, ArchiveFormat::Zip, &c.dest, &limits).unwrap();
        assert_eq!(report.bytes, 50 << 20);
    }

    /// A `.tar.gz` of `header` followed by `mib` MiB of zeros (its data,
    /// then whatever a tar reader makes of zero blocks) and a tar end, as
    /// concatenated gzip members, so building it costs one MiB's compression.
    fn tar_gz_bomb(header: Option<&tar::Header>, mib: u64) -> Vec<u8> {
        let member = gzip(&[0u8; 1 << 20]);
        let mut out = match header {
            Some(h) => gzip(h.as_bytes()),
            None => gzip(&good_tar()),
        };
        for _ in 0..mib {
            out.extend_from_slice(&member);
        }
        out.extend_from_slice(&gzip(&[0u8; 1024]));
        out
    }

    #[test]
    fn fault_tar_gz_bombs_are_stopped_whatever_holds_the_zeros() {
        let limits = ExtractLimits {
            max_ratio: 100,
            ratio_free_bytes: 1 << 20,
            ..ExtractLimits::default()
        };
        let size = 64 << 20;
        let mut regular = tar_header(tar::EntryType::Regular, 0o644, size);
        regular.as_old_mut().name[..9].copy_from_slice(b"zeros.bin");
        // A GNU long name is read into memory whole by the tar reader.
        let mut long_name = tar_header(tar::EntryType::GNULongName, 0o644, size);
        long_name.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        // A FIFO's data is skipped, never written: only reading sees it.
        let fifo = tar_header(tar::EntryType::Fifo, 0o644, size);
        let mut cases = vec![];
        for (what, header) in [
            ("a regular file", Some(&regular)),
            ("a GNU long name", Some(&long_name)),
            ("a FIFO's data", Some(&fifo)),
            ("the stream past the tar's end", None),
        ] {
            let mut header = header.cloned();
            if let Some(h) = header.as_mut() {
                h.set_cksum();
            }
            cases.push((what, tar_gz_bomb(header.as_ref(), 64)));
        }
        let mut wrong = vec![];
        for (what, bytes) in cases {
            assert!(bytes.len() < 1 << 20, "{what}: {} bytes", bytes.len());
            let c = case("bomb.tar.gz", &bytes);
            match extract(&c.archive, ArchiveFormat::TarGz, &c.dest, &limits) {
                Err(ExtractError::Bomb { ratio: 100, .. }) => {}
                other => {
                    wrong.push(format!("{what}: {other:?}"));
                    continue;
                }
            }
            c.assert_clean();
        }
        assert!(wrong.is_empty(), "not stopped as bombs: {wrong:#?}");
    }

    #[test]
    fn size_and_entry_limits() {
        let tar = good_tar();
        let c = case("p.tar.gz", &gzip(&tar));
        let small = ExtractLimits {
            max_total_bytes: 10,
            ..ExtractLimits::default()
        };
        let err = extract(&c.archive, ArchiveFormat::TarGz, &c.dest, &small).unwrap_err();
        assert!(
            matches!(err, ExtractError::TooLarge { limit: 10, .. }),
            "{err:?}"
        );
        c.assert_clean();
        let few = ExtractLimits {
            max_entries: 3,
            ..ExtractLimits::default()
        };
        let err = extract(&c.archive, ArchiveFormat::TarGz, &c.dest, &few).unwrap_err();
        assert!(
            matches!(err, ExtractError::TooManyEntries { limit: 3, .. }),
            "{err:?}"
        );
        c.assert_clean();
    }

    #[test]
    fn existing_destination_is_refused() {
        let c = case("p.tar", &good_tar());
        fs::create_dir_all(&c.dest).unwrap();
        fs::write(c.dest.join("old"), "old").unwrap();
        let err = c.extract(ArchiveFormat::Tar).unwrap_err();
        assert!(
            matches!(err, ExtractError::DestinationExists { .. }),
            "{err:?}"
        );
        assert_eq!(listing(&c.dest), vec!["old"]);
    }
}
