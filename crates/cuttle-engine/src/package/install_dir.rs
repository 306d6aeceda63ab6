//! Where a package is installed.
//!
//! As in Octopus, a package is always extracted into a fresh directory,
//! `<application root>/<environment>/<package id>/<version>` (`_1`, `_2`, …
//! appended when that version was deployed there before). A step with a
//! custom installation directory then has it purged (unless configured not
//! to, and except what the exclusions name) and the extracted files copied
//! into it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::files::{target_matcher, PatternError};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("refusing to purge {dir}: {reason}")]
    UnsafePurge { dir: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Conflict { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The directory to extract a package into: `<app_root>/<environment>/
/// <package_id>/<version>`, or `<version>_1`, `<version>_2`, … (the first
/// that does not exist) when it is there already. It is not created.
///
/// Each name is made safe as one path component: characters other than
/// letters, digits, `.`, `-`, `_` and `+` (so `/`, `\`, spaces, controls)
/// become `_`, a name of dots only (`..`) or nothing becomes underscores,
/// and names are cut to 200 bytes.
pub fn install_dir(app_root: &Path, environment: &str, package_id: &str, version: &str) -> PathBuf {
    let base = app_root
        .join(component(environment))
        .join(component(package_id));
    let version = component(version);
    let first = base.join(&version);
    if fs::symlink_metadata(&first).is_err() {
        return first;
    }
    (1u64..)
        .map(|n| base.join(format!("{version}_{n}")))
        .find(|candidate| fs::symlink_metadata(candidate).is_err())
        .unwrap_or(first)
}

fn component(name: &str) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.chars().all(|c| c == '.') {
        safe = "_".repeat(safe.len().max(1));
    }
    if safe.len() > 200 {
        let mut end = 200;
        while !safe.is_char_boundary(end) {
            end -= 1;
        }
        safe.truncate(end);
    }
    safe
}

/// Empties the custom installation directory `dir` (which stays), except
/// the entries matching `exclusions` (globs relative to `dir`, as in
/// [`super::substitute_files`]: a matching directory is kept whole, and a
/// directory is kept while it holds anything kept). Symbolic links are
/// removed, never followed. A missing `dir` is nothing to purge.
///
/// Returns the paths removed, relative to `dir`. Refuses a relative path and
/// a file system root.
pub fn purge_dir(dir: &Path, exclusions: &[String]) -> Result<Vec<PathBuf>, InstallError> {
    if !dir.is_absolute() || dir.parent().is_none() {
        return Err(InstallError::UnsafePurge {
            dir: dir.to_owned(),
            reason: "the directory must be an absolute path below the file system root".into(),
        });
    }
    let keep = target_matcher(exclusions)?;
    let mut removed = Vec::new();
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_err(dir)(e)),
        Ok(_) => {}
    }
    purge_inside(dir, Path::new(""), &keep, &mut removed)?;
    Ok(removed)
}

/// Purges `root/rel`'s contents; true when it ended up empty.
fn purge_inside(
    root: &Path,
    rel: &Path,
    keep: &globset::GlobSet,
    removed: &mut Vec<PathBuf>,
) -> Result<bool, InstallError> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    entries.sort_by_key(|e| e.file_name());
    let mut empty = true;
    for entry in entries {
        let child = rel.join(entry.file_name());
        let path = root.join(&child);
        if keep.is_match(&child) {
            empty = false;
            continue;
        }
        let kind = entry.file_type().map_err(io_err(&path))?;
        if kind.is_dir() {
            if purge_inside(root, &child, keep, removed)? {
                fs::remove_dir(&path).map_err(io_err(&path))?;
                removed.push(child);
            } else {
                empty = false;
            }
        } else {
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed.push(child);
        }
    }
    Ok(empty)
}

/// Copies the extracted package `src` into `dest` (created if missing),
/// replacing files of the same name and keeping modes; symbolic links are
/// copied as links. Returns how many files and links were copied.
///
/// A file or link in `dest` is removed before its replacement is written, so
/// the copy never writes through a link it finds there.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<u64, InstallError> {
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let mut copied = 0;
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let from_dir = src.join(&rel);
        for entry in fs::read_dir(&from_dir).map_err(io_err(&from_dir))? {
            let entry = entry.map_err(io_err(&from_dir))?;
            let child = rel.join(entry.file_name());
            let from = src.join(&child);
            let to = dest.join(&child);
            let kind = entry.file_type().map_err(io_err(&from))?;
            let existing = fs::symlink_metadata(&to).ok();
            if kind.is_dir() {
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(_) => {
                        fs::remove_file(&to).map_err(io_err(&to))?;
                        fs::create_dir(&to).map_err(io_err(&to))?;
                    }
                    None => fs::create_dir(&to).map_err(io_err(&to))?,
                }
                let mode = fs::metadata(&from).map_err(io_err(&from))?.permissions();
                fs::set_permissions(&to, mode).map_err(io_err(&to))?;
                pending.push(child);
                continue;
            }
            match existing {
                Some(m) if m.is_dir() => {
                    return Err(InstallError::Conflict {
                        path: to,
                        reason: "a directory is in the way of a file of the package".into(),
                    });
                }
                Some(_) => fs::remove_file(&to).map_err(io_err(&to))?,
                None => {}
            }
            if kind.is_symlink() {
                let target = fs::read_link(&from).map_err(io_err(&from))?;
                std::os::unix::fs::symlink(&target, &to).map_err(io_err(&to))?;
            } else {
                // `fs::copy` keeps the permission bits.
                fs::copy(&from, &to).map_err(io_err(&to))?;
            }
            copied += 1;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn install_dir_is_root_env_id_version_then_suffixed() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let first = install_dir(r, "Production", "Acme.Web", "1.2.3");
        assert_eq!(first, r.join("Production/Acme.Web/1.2.3"));
        fs::create_dir_all(&first).unwrap();
        let second = install_dir(r, "Production", "Acme.Web", "1.2.3");
        assert_eq!(second, r.join("Production/Acme.Web/1.2.3_1"));
        fs::create_dir_all(&second).unwrap();
        assert_eq!(
            install_dir(r, "Production", "Acme.Web", "1.2.3"),
            r.join("Production/Acme.Web/1.2.3_2")
        );
        // Other versions are unaffected.
        assert_eq!(
            install_dir(r, "Production", "Acme.Web", "1.2.4"),
            r.join("Production/Acme.Web/1.2.4")
        );
    }

    #[test]
    fn install_dir_components_are_sanitised() {
        let r = Path::new("/apps");
        assert_eq!(
            install_dir(r, "../..", "a/b\\c", ".."),
            PathBuf::from("/apps/.._../a_b_c/__")
        );
        assert_eq!(
            install_dir(r, "Prod EU", "Pkg", "1.0.0+build.5"),
            PathBuf::from("/apps/Prod_EU/Pkg/1.0.0+build.5")
        );
        assert_eq!(install_dir(r, "", "x", "."), PathBuf::from("/apps/_/x/_"));
        let long = "é".repeat(300);
        let dir = install_dir(r, &long, "x", "1");
        let env = dir.components().nth(2).unwrap().as_os_str().len();
        assert!(env <= 200);
    }

    #[test]
    fn purge_keeps_exclusions_and_removes_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("site");
        fs::create_dir_all(d.join("logs/old")).unwrap();
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::write(d.join("logs/old/a.log"), "").unwrap();
        fs::write(d.join("bin/app"), "").unwrap();
        fs::write(d.join("web.config"), "").unwrap();
        fs::write(d.join("keep.json"), "").unwrap();
        let outside = root.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("precious"), "").unwrap();
        std::os::unix::fs::symlink(&outside, d.join("link")).unwrap();

        let removed = purge_dir(&d, &["logs/**".into(), "keep.json".into()]).unwrap();
        assert!(d.join("logs/old/a.log").exists());
        assert!(d.join("keep.json").exists());
        assert!(!d.join("bin").exists());
        assert!(!d.join("web.config").exists());
        assert!(fs::symlink_metadata(d.join("link")).is_err());
        assert!(outside.join("precious").exists(), "links are not followed");
        assert!(removed.contains(&PathBuf::from("bin/app")));
        assert!(d.is_dir());

        assert!(purge_dir(&root.path().join("missing"), &[])
            .unwrap()
            .is_empty());
        assert!(matches!(
            purge_dir(Path::new("/"), &[]),
            Err(InstallError::UnsafePurge { .. })
        ));
        assert!(matches!(
            purge_dir(Path::new("relative"), &[]),
            Err(InstallError::UnsafePurge { .. })
        ));
    }

    #[test]
    fn copy_tree_overwrites_keeps_modes_and_links() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("src");
        let dest = root.path().join("dest");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/run"), "new").unwrap();
        fs::set_permissions(src.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("bin/run", src.join("run")).unwrap();
        fs::create_dir_all(dest.join("bin")).unwrap();
        fs::write(dest.join("bin/run"), "old").unwrap();
        fs::write(dest.join("other"), "kept").unwrap();
        // A link in the destination is replaced, not written through.
        let victim = root.path().join("victim");
        fs::write(&victim, "safe").unwrap();
        std::os::unix::fs::symlink(&victim, dest.join("run")).unwrap();

        assert_eq!(copy_tree(&src, &dest).unwrap(), 2);
        assert_eq!(fs::read_to_string(dest.join("bin/run")).unwrap(), "new");
        let mode = fs::metadata(dest.join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(dest.join("run")).unwrap(),
            PathBuf::from("bin/run")
        );
        assert_eq!(fs::read_to_string(dest.join("other")).unwrap(), "kept");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "safe");
    }
}
