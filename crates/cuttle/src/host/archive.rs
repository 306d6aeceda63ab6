//! A deleted instance's data, kept as one `.tar.gz` under the host's
//! `archive/` directory.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Packs `dir` (an instance's data directory, its database closed) into
/// `archive_dir/NAME-YYYYMMDDTHHMMSSZ.tar.gz`, written under a temporary
/// name and renamed once whole, so a file with the final name is never
/// half written. Returns its path.
pub fn pack(dir: &Path, archive_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    // Archives hold instances' master keys: the host's alone to read.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(archive_dir)
        .with_context(|| format!("could not create {}", archive_dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let path = archive_dir.join(format!("{name}-{stamp}.tar.gz"));
    let partial = archive_dir.join(format!(".{name}-{stamp}.tar.gz.partial"));
    let written = (|| -> anyhow::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        tar.append_dir_all(name, dir)?;
        let file = tar.into_inner()?.finish()?;
        file.sync_all()?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("could not archive {}", dir.display())));
    }
    std::fs::rename(&partial, &path)
        .with_context(|| format!("could not finish {}", path.display()))?;
    Ok(path)
}
