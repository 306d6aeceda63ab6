//! What the file features share: the step's target-file globs, walking the
//! package directory, and rewriting a file atomically.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A target-file pattern that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("target file pattern '{pattern}': {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// Compiles the step's target-file patterns, relative to the package root.
///
/// `*` and `?` stay within one directory, `**` crosses any number. Octopus
/// users write Windows separators, so `\` is read as `/` (there is then no
/// escaping). Patterns are case-sensitive. Absolute patterns and `..` are
/// refused: the features only touch the package's own files. Blank lines are
/// ignored (steps keep one pattern a line).
pub(crate) fn target_matcher(globs: &[String]) -> Result<GlobSet, PatternError> {
    let mut set = GlobSetBuilder::new();
    for raw in globs {
        let refuse = |reason: &str| PatternError {
            pattern: raw.clone(),
            reason: reason.to_owned(),
        };
        let mut pattern = raw.trim().replace('\\', "/");
        while let Some(rest) = pattern.strip_prefix("./") {
            pattern = rest.to_owned();
        }
        if pattern.is_empty() {
            continue;
        }
        if pattern.starts_with('/') || pattern.as_bytes().get(1) == Some(&b':') {
            return Err(refuse(
                "absolute patterns are not allowed; patterns are relative to the package directory",
            ));
        }
        if pattern.split('/').any(|c| c == "..") {
            return Err(refuse(
                "'..' is not allowed; patterns stay inside the package directory",
            ));
        }
        let glob = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .backslash_escape(false)
            .build()
            .map_err(|e| refuse(&e.kind().to_string()))?;
        set.add(glob);
    }
    set.build().map_err(|e| PatternError {
        pattern: globs.join(", "),
        reason: e.to_string(),
    })
}

/// The regular files under `root` whose relative path (with `/`) matches,
/// in a stable (sorted) order, as paths relative to `root`.
///
/// Symbolic links are neither followed nor returned: a link may point
/// outside the package, and its target, if inside, is visited in its place.
pub(crate) fn matching_files(root: &Path, set: &GlobSet) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if set.is_empty() {
        return Ok(found);
    }
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = fs::read_dir(root.join(&dir))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        // Pushed in reverse so directories pop in name order.
        for entry in entries.into_iter().rev() {
            let rel = dir.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(rel);
            } else if kind.is_file() && set.is_match(slash_path(&rel)) {
                found.push(rel);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `rel` with `/` separators, as patterns are written.
fn slash_path(rel: &Path) -> String {
    let parts: Vec<_> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// Replaces the content of the regular file `path` with `bytes` so readers
/// see either the old or the new file, never a half-written one: a temp file
/// beside it, given the original's permissions, synced, then renamed over.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let permissions = fs::metadata(path)?.permissions();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".cuttle-rewrite-")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().set_permissions(permissions)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(globs: &[&str]) -> GlobSet {
        let globs: Vec<String> = globs.iter().map(|g| g.to_string()).collect();
        target_matcher(&globs).unwrap()
    }

    #[test]
    fn globs_are_relative_and_star_stays_in_one_directory() {
        let s = set(&["*.json", "config/**/*.yml", ".\\web\\*.config"]);
        assert!(s.is_match("appsettings.json"));
        assert!(!s.is_match("sub/appsettings.json"));
        assert!(s.is_match("config/a.yml"));
        assert!(s.is_match("config/x/y/a.yml"));
        assert!(s.is_match("web/Web.config"));
        assert!(!s.is_match("web/sub/Web.config"));
    }

    #[test]
    fn globs_escaping_the_package_are_refused() {
        for bad in ["../x.json", "/etc/*.conf", "a/../../b", "C:\\x\\*.json"] {
            let err = target_matcher(&[bad.to_string()]).unwrap_err();
            assert_eq!(err.pattern, bad);
        }
        assert!(target_matcher(&["[".to_string()]).is_err());
    }

    #[test]
    fn walking_skips_symlinks_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("b/c/z.json"), "{}").unwrap();
        fs::write(root.join("a.json"), "{}").unwrap();
        fs::write(root.join("b/y.txt"), "").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("link.json")).unwrap();
        let found = matching_files(root, &set(&["**/*.json"])).unwrap();
        assert_eq!(
            found,
            vec![PathBuf::from("a.json"), PathBuf::from("b/c/z.json")]
        );
    }

    #[test]
    fn atomic_write_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.sh");
        fs::write(&file, "old").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o750)).unwrap();
        write_atomically(&file, b"new").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
