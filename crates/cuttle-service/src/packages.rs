//! The built-in package feed: pushing, listing, downloading and deleting
//! package versions.
//!
//! Files are kept content-addressed in the instance's blob store
//! (`packages/<sha256>`: by default `<data dir>/packages/<sha256>`, or an
//! S3-compatible bucket), so the same content pushed twice is stored once. A
//! push streams to a temporary file in `packages/tmp/` (of the data directory,
//! or of the blob directory) while hashing it, never holding the package in
//! memory; once the whole file is there it is checked (its format, and that
//! it is not truncated), published under its hash (renamed into place, or
//! streamed to the bucket) and recorded. A push that fails, or whose client
//! goes away, leaves no file behind: the temporary file is removed when its
//! [`Upload`] is dropped, and a bucket upload that fails is never completed.

use crate::actor::Actor;
use crate::resources::audit_changed;
use crate::{Instance, Result, ServiceError};
use cuttle_engine::package::ExtractLimits;
use cuttle_model::ids::BUILTIN_FEED_ID;
use cuttle_model::package::{
    self, check_bzip2_end, check_magic, check_tar_ends, check_zip_end, feed_order,
    package_resource_id, selection_uses_package, Package, PackageFileName, PackageFormat, TarShape,
    BZIP2_TAIL_LEN, HEAD_LEN, ZIP_CENTRAL, ZIP_TAIL_LEN,
};
use cuttle_model::{Project, Release, Timestamp};
use cuttle_store::blobs::{BlobError, Blobs};
use cuttle_store::packages::PackageQuery;
use cuttle_store::{ProcessSnapshot, Store};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Serialises the steps that pair a content-addressed file with the rows
/// that use it (publishing a file and recording it; deleting a row and the
/// file no row uses any more), so that a delete cannot remove a file that a
/// push is recording at the same moment. One per instance, as its packages
/// directory is.
pub type PackageFiles = std::sync::Arc<tokio::sync::Mutex<()>>;

/// Temporary files older than this are left over from a server that
/// stopped mid-push, and are removed when the next push begins.
const STALE_UPLOAD: Duration = Duration::from_secs(24 * 3600);

/// Large enough that writing a package is a few hundred system calls per
/// hundred megabytes, small enough not to matter in memory.
const WRITE_BUFFER: usize = 1 << 20;

/// Octopus's words for a push of a version the feed has, which clients
/// look for in the error.
pub const PACKAGE_EXISTS: &str = "A package with the same name and version already exists.";

/// What to do when the pushed version exists already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverwriteMode {
    FailIfExists,
    OverwriteExisting,
    IgnoreIfExists,
}

impl OverwriteMode {
    /// From `overwriteMode`, or the older `replace=true` (which means
    /// `OverwriteExisting`); `FailIfExists` when neither is given.
    pub fn from_query(overwrite_mode: Option<&str>, replace: Option<&str>) -> Result<Self> {
        match overwrite_mode.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) if m.eq_ignore_ascii_case("FailIfExists") => Ok(Self::FailIfExists),
            Some(m) if m.eq_ignore_ascii_case("OverwriteExisting") => Ok(Self::OverwriteExisting),
            Some(m) if m.eq_ignore_ascii_case("IgnoreIfExists") => Ok(Self::IgnoreIfExists),
            Some(m) => Err(ServiceError::bad_request(format!(
                "overwriteMode '{m}' is not one of FailIfExists, OverwriteExisting, IgnoreIfExists"
            ))),
            None if replace.is_some_and(is_true) => Ok(Self::OverwriteExisting),
            None => Ok(Self::FailIfExists),
        }
    }
}

/// A query flag, as .NET clients write them (`true`, `True`).
pub fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// Where an installation keeps its package files.
pub fn packages_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("packages")
}

/// Where pushes in progress are written.
pub fn upload_dir(data_dir: &Path) -> PathBuf {
    packages_dir(data_dir).join("tmp")
}

/// Where this instance's pushes are written: beside the package files in a
/// blob directory (so that publishing one is a rename), else in the data
/// directory.
fn uploads_of(inst: &Instance) -> PathBuf {
    let root = inst.blobs.directory_root();
    upload_dir(root.unwrap_or(&inst.config.data_dir))
}

/// A blob store's failure, as the service reports it: a store that does not
/// answer is a temporary condition the caller may retry.
pub(crate) fn blob_error(e: BlobError) -> ServiceError {
    match e {
        BlobError::Unavailable { .. } => {
            tracing::error!(error = %e, "the blob store failed");
            ServiceError::Unavailable(format!(
                "The package could not be stored or read: {e}. Try again once the blob store answers."
            ))
        }
        // Said, not hidden as an internal error: the operator's store has
        // other content under a package's name.
        BlobError::Damaged { .. } => {
            tracing::error!(error = %e, "the blob store returned damaged content");
            ServiceError::Unavailable(format!("The package could not be read: {e}"))
        }
        BlobError::Local { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            io_error("store", Path::new("packages"), source)
        }
        e => ServiceError::Internal(e.to_string()),
    }
}

/// A file removed when this is dropped, unless it has been moved away.
struct TempFile {
    path: PathBuf,
    moved: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.moved {
            // Synchronous, so that it happens even when the push's future is
            // dropped because its client went away.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A package being pushed: written to a temporary file and hashed as its
/// pieces arrive. Dropping it before [`push`] removes the file.
pub struct Upload {
    name: PackageFileName,
    file: tokio::io::BufWriter<tokio::fs::File>,
    hasher: Sha256,
    size: u64,
    // Last, so the file is closed before it is removed.
    temp: TempFile,
}

impl Upload {
    /// Starts a push of a file called `file_name`, which must follow the
    /// `<PackageId>.<Version><extension>` convention; it is checked here, so
    /// that a badly named package is refused before it is sent.
    pub async fn begin(inst: &Instance, file_name: &str) -> Result<Upload> {
        let name = package::parse_file_name(file_name)
            .map_err(|e| ServiceError::bad_request(e.to_string()))?;
        let tmp = uploads_of(inst);
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| io_error("create the package directory", &tmp, e))?;
        if let Some(dir) = tmp.parent() {
            restrict(dir);
        }
        remove_stale_uploads(&tmp).await;
        let path = tmp.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| io_error("create", &path, e))?;
        Ok(Upload {
            name,
            file: tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: Sha256::new(),
            size: 0,
            temp: TempFile { path, moved: false },
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| io_error("write", &self.temp.path, e))
    }

    pub fn file_name(&self) -> String {
        format!(
            "{}.{}{}",
            self.name.package_id, self.name.version, self.name.extension
        )
    }
}

/// What a push did.
#[derive(Debug)]
pub enum Pushed {
    Created(Package),
    /// An existing version was replaced (`OverwriteExisting`).
    Replaced(Package),
    /// The version existed and was kept (`IgnoreIfExists`).
    Existing(Package),
}

impl Pushed {
    pub fn package(&self) -> &Package {
        match self {
            Pushed::Created(p) | Pushed::Replaced(p) | Pushed::Existing(p) => p,
        }
    }
}

/// Completes a push whose content has all been written: checks the file,
/// then stores it under its hash and records the version, unless `mode`
/// says otherwise for a version that exists.
pub async fn push(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    upload: Upload,
    mode: OverwriteMode,
) -> Result<Pushed> {
    check_quota(inst, &upload).await?;
    let (store, caller, space_id) = (inst.store.clone(), caller.clone(), space_id.to_owned());
    let (files, blobs) = (inst.package_files.clone(), inst.blobs.clone());
    // The file is complete: it is published or refused even if the client
    // stops waiting, never left half recorded.
    run_to_end(finish_push(
        store, files, blobs, caller, space_id, upload, mode,
    ))
    .await
}

/// Refuses a push that would take an instance on a host past its storage
/// quota. The pushed file is already in the data directory (as an upload),
/// so what the directory holds now is what it would hold after.
async fn check_quota(inst: &Instance, upload: &Upload) -> Result<()> {
    let quota = inst
        .hosted_storage_quota
        .load(std::sync::atomic::Ordering::SeqCst);
    if quota == 0 {
        return Ok(());
    }
    let (dir, temp) = (inst.config.data_dir.clone(), upload.temp.path.clone());
    let (on_disk, written) = tokio::task::spawn_blocking(move || {
        let written = std::fs::metadata(&temp).map(|m| m.len()).unwrap_or(0);
        (directory_size(&dir), written)
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("measuring the data directory: {e}")))?;
    // The upload's last bytes may still be in its buffer.
    let used = on_disk + upload.size.saturating_sub(written);
    if used > quota {
        const MIB: f64 = 1024.0 * 1024.0;
        return Err(ServiceError::Conflict(format!(
            "The package {} ({:.1} MiB) would take this instance past its storage quota of              {:.0} MiB ({:.1} MiB with it); nothing was stored. Delete packages no release              needs, or ask for a larger quota.",
            upload.file_name(),
            upload.size as f64 / MIB,
            quota as f64 / MIB,
            used as f64 / MIB,
        )));
    }
    Ok(())
}

/// Bytes of the files under `dir`, links not followed.
fn directory_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(std::result::Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => directory_size(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

async fn finish_push(
    store: Store,
    files: PackageFiles,
    blobs: Blobs,
    caller: Actor,
    space_id: String,
    mut upload: Upload,
    mode: OverwriteMode,
) -> Result<Pushed> {
    let path = upload.temp.path.clone();
    upload
        .file
        .flush()
        .await
        .map_err(|e| io_error("write", &path, e))?;
    upload
        .file
        .get_ref()
        .sync_all()
        .await
        .map_err(|e| io_error("write", &path, e))?;
    let hash = hex::encode(upload.hasher.finalize_reset());
    let (format, size) = (upload.name.format, upload.size);
    let checked_path = path.clone();
    let checked = tokio::task::spawn_blocking(move || verify(&checked_path, format, size))
        .await
        .map_err(|e| ServiceError::Internal(format!("checking a package: {e}")))?;
    if let Err(why) = checked {
        return Err(ServiceError::bad_request(format!(
            "The package {} was refused: {why}",
            upload.file_name()
        )));
    }

    let name = &upload.name;
    let pushed = Package {
        id: package_resource_id(&name.package_id, &name.version),
        space_id: space_id.clone(),
        package_id: name.package_id.clone(),
        version: name.version.clone(),
        feed_id: BUILTIN_FEED_ID.into(),
        file_extension: name.extension.clone(),
        hash: hash.clone(),
        package_size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        published: Some(Timestamp::now()),
    };
    // A copy to a bucket takes as long as the package is large: it is made
    // before the lock and the transaction, neither held while it runs.
    if !blobs.publish_moves() {
        blobs
            .publish_package(&path, &hash, size)
            .await
            .map_err(blob_error)?;
    }

    let _files = files.lock().await;
    let stored = blobs.publish_moves();
    let mut tx = store.begin().await?;
    let existing = tx
        .package_by_version(&space_id, &pushed.package_id, &pushed.version_key())
        .await?;
    match (&existing, mode) {
        (Some(old), OverwriteMode::FailIfExists) => {
            drop(tx);
            if !stored {
                remove_if_unused(&store, &blobs, &hash).await;
            }
            return Err(ServiceError::AlreadyExists {
                octopus: PACKAGE_EXISTS,
                detail: format!(
                    "A package with the same ID and version already exists: {} {}. Push it with overwriteMode=OverwriteExisting to replace it, or IgnoreIfExists to keep it",
                    old.package_id, old.version
                ),
            });
        }
        (Some(old), OverwriteMode::IgnoreIfExists) => {
            let old = old.clone();
            drop(tx);
            if !stored {
                remove_if_unused(&store, &blobs, &hash).await;
            }
            return Ok(Pushed::Existing(old));
        }
        _ => {}
    }
    // In a directory the file is renamed into place now, under the lock. A
    // copied blob is there unless a delete of the last version that had the
    // same content removed it since; then it is copied again.
    let republish = match stored {
        true => true,
        false => !blobs.has_package(&hash).await.map_err(blob_error)?,
    };
    if republish {
        blobs
            .publish_package(&path, &hash, size)
            .await
            .map_err(blob_error)?;
    }
    upload.temp.moved = blobs.publish_moves();
    let recorded: Result<()> = async {
        if let Some(old) = &existing {
            tx.delete_package(&space_id, &old.id).await?;
        }
        tx.insert_package(&pushed).await?;
        let (category, verb) = match &existing {
            Some(_) => ("Modified", "replaced"),
            None => ("Created", "pushed"),
        };
        audit_changed(
            &mut tx,
            &caller,
            Some(&space_id),
            category,
            format!(
                "package {} {} was {verb}",
                pushed.package_id, pushed.version
            ),
            vec![pushed.id.clone()],
            existing.as_ref(),
            Some(&pushed),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = recorded {
        // The file may already have been someone else's; it stays if so.
        remove_if_unused(&store, &blobs, &hash).await;
        return Err(e);
    }
    match existing {
        Some(old) => {
            if old.hash != pushed.hash {
                remove_if_unused(&store, &blobs, &old.hash).await;
            }
            Ok(Pushed::Replaced(pushed))
        }
        None => Ok(Pushed::Created(pushed)),
    }
}

/// Runs a future as a task of its own and waits for it, so that it runs to
/// the end even when the request that waits for it is dropped.
pub(crate) async fn run_to_end<T: Send + 'static>(
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| ServiceError::Internal(format!("a package operation failed: {e}")))?
}

/// Removes a content file that no package version uses any more. Called
/// with the instance's [`PackageFiles`] lock held.
pub(crate) async fn remove_if_unused(store: &Store, blobs: &Blobs, hash: &str) {
    match store.package_hash_in_use(hash).await {
        Ok(false) => {
            if let Err(e) = blobs.delete_package(hash).await {
                tracing::warn!(hash, error = %e, "could not remove an unused package file");
            }
        }
        Ok(true) => {}
        Err(e) => {
            tracing::warn!(hash, error = %e, "could not tell whether a package file is still used")
        }
    }
}

/// Checks that a file is what its extension says and is whole: its first
/// bytes, then its end (zip's end-of-central-directory record, bzip2's
/// end-of-stream marker, tar's end-of-archive blocks), and for `.tar.gz`
/// the whole stream, unpacked without keeping it, which also checks gzip's
/// checksum and the tar inside, and that it stays within the expansion
/// limits an agent extracts it with (a bomb would never deploy, so it is
/// refused here, before it is kept), as a zip's entries must say they do.
/// Blocking.
fn verify(path: &Path, format: PackageFormat, len: u64) -> std::result::Result<(), String> {
    let unreadable = |e: std::io::Error| format!("it could not be read back: {e}");
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let head = read_at(&mut file, 0, HEAD_LEN.min(len as usize)).map_err(unreadable)?;
    check_magic(format, &head)?;
    let tail_of = |file: &mut std::fs::File, n: usize| {
        let n = (n as u64).min(len);
        read_at(file, len - n, n as usize).map_err(unreadable)
    };
    match format {
        PackageFormat::Zip | PackageFormat::NuGet => {
            let tail = tail_of(&mut file, ZIP_TAIL_LEN)?;
            let end = check_zip_end(&tail, len)?;
            if let Some(offset) = end.central_directory_offset {
                let signature = read_at(&mut file, offset, 4).map_err(unreadable)?;
                if signature != ZIP_CENTRAL {
                    return Err("The zip archive is damaged: its central directory is not where its end record says".into());
                }
            }
            check_zip_sizes(file, len)
        }
        PackageFormat::TarBz2 => check_bzip2_end(&tail_of(&mut file, BZIP2_TAIL_LEN)?),
        PackageFormat::Tar => check_tar_ends(&head, &tail_of(&mut file, 512)?, len),
        PackageFormat::TarGz => {
            file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
            let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
            let mut shape = TarShape::default();
            let mut buf = vec![0u8; 64 * 1024];
            let limits = ExtractLimits::default();
            let allowed = limits.allowed(len);
            let mut inflated = 0u64;
            loop {
                match gz.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        inflated += n as u64;
                        if inflated > allowed {
                            return Err(expansion_refused(&limits, len));
                        }
                        shape.feed(&buf[..n])
                    }
                    Err(e) => return Err(format!("The gzip stream is truncated or damaged ({e})")),
                }
            }
            shape.finish()
        }
    }
}

/// Refuses a zip whose entries say they expand past what an agent
/// extracts. The sizes are the central directory's, so nothing is
/// inflated; an archive that lies about them is stopped by extraction.
fn check_zip_sizes(file: std::fs::File, len: u64) -> std::result::Result<(), String> {
    let damaged = |e: zip::result::ZipError| format!("The zip archive is damaged ({e})");
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(damaged)?;
    let limits = ExtractLimits::default();
    if zip.len() as u64 > limits.max_entries {
        return Err(format!(
            "it has more than {} entries, more than an agent extracts",
            limits.max_entries
        ));
    }
    let mut declared = 0u64;
    for index in 0..zip.len() {
        let entry = zip.by_index_raw(index).map_err(damaged)?;
        declared = declared.saturating_add(entry.size());
        if declared > limits.allowed(len) {
            return Err(expansion_refused(&limits, len));
        }
    }
    Ok(())
}

/// Why a package expanding past `limits.allowed(len)` is refused, in the
/// words extraction would use.
fn expansion_refused(limits: &ExtractLimits, len: u64) -> String {
    if limits.allowed(len) >= limits.max_total_bytes {
        format!(
            "it expands to more than {} bytes, more than an agent extracts",
            limits.max_total_bytes
        )
    } else {
        format!(
            "it looks like a decompression bomb: it expands to more than {} times \
             its size of {len} bytes, more than an agent extracts",
            limits.max_ratio
        )
    }
}

/// Reads up to `n` bytes at `offset` (fewer only at the end of the file).
fn read_at(file: &mut std::fs::File, offset: u64, n: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(n);
    file.by_ref().take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn io_error(doing: &str, path: &Path, e: std::io::Error) -> ServiceError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        tracing::error!(path = %path.display(), "the package store's disk is full");
        return ServiceError::Unavailable(
            "The server's storage is full, so the package was not saved. Try again once space \
             has been freed."
                .into(),
        );
    }
    ServiceError::Internal(format!(
        "Could not {doing} the package file {}: {e}",
        path.display()
    ))
}

/// Package files are the owner's alone, like the rest of the data directory.
fn restrict(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
}

/// Removes what pushes and backups interrupted by a stop left behind.
async fn remove_stale_uploads(tmp: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(tmp).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        let stale = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_UPLOAD);
        if stale && meta.is_dir() {
            // A backup's spool, left by a process that stopped mid-backup.
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        } else if stale {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

// ---- reading ----

/// The feed's list filters, besides paging.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PackageFilters {
    /// Part of the package id, in any case.
    pub filter: Option<String>,
    /// Exactly this package id, in any case.
    #[serde(
        rename = "nuGetPackageId",
        alias = "packageId",
        alias = "nugetPackageId"
    )]
    pub package_id: Option<String>,
    /// `true`: only the newest version of each package.
    pub latest: Option<String>,
}

/// A space's package versions, by package id and newest version first.
pub async fn list_packages(
    store: &Store,
    space_id: &str,
    filters: &PackageFilters,
    ids: Vec<String>,
) -> Result<Vec<Package>> {
    let q = PackageQuery {
        space_id: space_id.to_owned(),
        filter: filters.filter.clone(),
        package_id: filters.package_id.clone(),
        ids,
    };
    let mut all = store.packages(&q).await?;
    all.sort_by(feed_order);
    if filters.latest.as_deref().is_some_and(is_true) {
        all.dedup_by(|later, first| later.package_id.eq_ignore_ascii_case(&first.package_id));
    }
    Ok(all)
}

pub async fn get_package(store: &Store, space_id: &str, id: &str) -> Result<Package> {
    store
        .package(space_id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("package", id))
}

/// A package version and its file, opened for reading.
pub async fn open_package(
    inst: &Instance,
    space_id: &str,
    id: &str,
) -> Result<(Package, tokio::fs::File)> {
    let package = get_package(&inst.store, space_id, id).await?;
    let path = inst
        .blobs
        .local_file(&package.hash)
        .await
        .map_err(blob_error)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io_error("open", &path, e))?;
    Ok((package, file))
}

// ---- deleting ----

/// The releases that deploy this package version: those whose
/// `SelectedPackages` pick it for an action of their frozen process.
pub async fn releases_using(store: &Store, package: &Package) -> Result<Vec<Release>> {
    let mut each = releases_using_each(store, std::slice::from_ref(package)).await?;
    Ok(each.pop().unwrap_or_default())
}

/// The releases using each of `packages` (of one space), in one pass over
/// the releases that select packages: a package's page lists every version
/// without reading the releases once per version.
pub async fn releases_using_each(store: &Store, packages: &[Package]) -> Result<Vec<Vec<Release>>> {
    let mut using = vec![Vec::new(); packages.len()];
    let Some(first) = packages.first() else {
        return Ok(using);
    };
    for release in store.releases_selecting_packages(&first.space_id).await? {
        let Some(snapshot) = store
            .get::<ProcessSnapshot>(&release.project_deployment_process_snapshot_id)
            .await?
        else {
            continue;
        };
        for (package, users) in packages.iter().zip(&mut using) {
            let uses = release.selected_packages.iter().any(|s| {
                selection_uses_package(&snapshot.0, s, &package.package_id, &package.version)
            });
            if uses {
                users.push(release.clone());
            }
        }
    }
    Ok(using)
}

/// Deletes a package version, unless a release deploys it; its file goes
/// when no other version (in any space) has the same content.
pub async fn delete_package(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<()> {
    let store = inst.store.clone();
    let package = get_package(&store, space_id, id).await?;
    let using = releases_using(&store, &package).await?;
    if !using.is_empty() {
        let mut names = vec![];
        for r in &using {
            let project = store.get::<Project>(&r.project_id).await?;
            let project = project.map_or_else(|| r.project_id.clone(), |p| p.name);
            names.push(format!("{} of {project}", r.version));
        }
        return Err(ServiceError::Conflict(format!(
            "The package {} {} cannot be deleted: the releases {} deploy it; delete those releases first",
            package.package_id,
            package.version,
            names.join(", ")
        )));
    }
    let blobs = inst.blobs.clone();
    let caller = caller.clone();
    let files = inst.package_files.clone();
    run_to_end(async move {
        let _files = files.lock().await;
        let mut tx = store.begin().await?;
        tx.delete_package(&package.space_id, &package.id).await?;
        audit_changed(
            &mut tx,
            &caller,
            Some(&package.space_id),
            "Deleted",
            format!(
                "package {} {} was deleted",
                package.package_id, package.version
            ),
            vec![package.id.clone()],
            Some(&package),
            None,
        )
        .await?;
        tx.commit().await?;
        remove_if_unused(&store, &blobs, &package.hash).await;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_modes() {
        let m =
            |mode: Option<&str>, replace: Option<&str>| OverwriteMode::from_query(mode, replace);
        assert_eq!(m(None, None).ok(), Some(OverwriteMode::FailIfExists));
        assert_eq!(
            m(None, Some("True")).ok(),
            Some(OverwriteMode::OverwriteExisting)
        );
        assert_eq!(
            m(None, Some("false")).ok(),
            Some(OverwriteMode::FailIfExists)
        );
        assert_eq!(
            m(Some("ignoreifexists"), Some("true")).ok(),
            Some(OverwriteMode::IgnoreIfExists)
        );
        assert!(m(Some("Sometimes"), None).is_err());
    }
}
