//! "Substitute Variables in Templates": the files the step lists are
//! rendered with the Octostache language and written back.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cuttle_vars::{PreparedTemplate, RenderOptions, VariableDictionary, VarsError};

use super::files::{matching_files, target_matcher, write_atomically, PatternError};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// One file the patterns matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubstitutedFile {
    /// The file, `root` joined with its relative path.
    pub path: PathBuf,
    pub outcome: Substitution,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Substitution {
    /// Rendered; written back only when the text changed.
    Rendered {
        changed: bool,
        /// What Octostache reports about the file, to log as a warning: the
        /// tokens it could not evaluate (left in the file as written), or
        /// why the file did not parse as a template (then left unchanged).
        diagnostic: Option<String>,
    },
    /// Left untouched, with why: the file is not UTF-8 text (a binary file
    /// matched by a broad pattern must not be mangled).
    Skipped { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SubstituteError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("substituting variables in {file}: {source}")]
    Render {
        file: PathBuf,
        #[source]
        source: VarsError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Renders every file under `root` whose relative path matches one of
/// `globs` against `vars`, writing each changed file back atomically with its
/// mode kept.
///
/// Patterns are relative to `root`: `*` and `?` stay within a directory,
/// `**` crosses directories, `\` is read as `/`, matching is
/// case-sensitive, and absolute patterns or `..` are refused. Symbolic links
/// are not followed.
///
/// Tokens that cannot be evaluated are left as written, as in scripts, and
/// reported in the file's diagnostic. A pattern that matches nothing is not
/// an error. A UTF-8 byte order mark is kept. Files that are not UTF-8 are
/// skipped and reported. An evaluation failure (a reference cycle, a size or
/// work limit) fails naming the file; files before it were already written.
pub fn substitute_files(
    root: &Path,
    globs: &[String],
    vars: &VariableDictionary,
) -> Result<Vec<SubstitutedFile>, SubstituteError> {
    let set = target_matcher(globs)?;
    let files = matching_files(root, &set).map_err(|source| SubstituteError::Io {
        path: root.to_owned(),
        source,
    })?;
    let options = RenderOptions::default();
    let mut results = Vec::with_capacity(files.len());
    for rel in files {
        let path = root.join(rel);
        let io_err = |source| SubstituteError::Io {
            path: path.clone(),
            source,
        };
        let bytes = fs::read(&path).map_err(io_err)?;
        let (bom, body) = match bytes.strip_prefix(UTF8_BOM) {
            Some(body) => (UTF8_BOM, body),
            None => (&[][..], &bytes[..]),
        };
        let Ok(text) = std::str::from_utf8(body) else {
            results.push(SubstitutedFile {
                path,
                outcome: Substitution::Skipped {
                    reason: "not UTF-8 text".into(),
                },
            });
            continue;
        };
        let rendered = PreparedTemplate::new(text, &options)
            .render(vars)
            .map_err(|source| SubstituteError::Render {
                file: path.clone(),
                source,
            })?;
        let mut diagnostic = rendered.diagnostic();
        let new_text = match rendered.text {
            Some(t) => t,
            None => {
                // Only `| null` at the very end does this; keep the file.
                diagnostic = Some("the template evaluated to no value; file left unchanged".into());
                text.to_owned()
            }
        };
        let changed = new_text != text;
        if changed {
            let mut out = Vec::with_capacity(bom.len() + new_text.len());
            out.extend_from_slice(bom);
            out.extend_from_slice(new_text.as_bytes());
            write_atomically(&path, &out).map_err(io_err)?;
        }
        results.push(SubstitutedFile {
            path,
            outcome: Substitution::Rendered {
                changed,
                diagnostic,
            },
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn vars() -> VariableDictionary {
        [
            ("Greeting", "Hello"),
            ("Db.Server", "db01"),
            ("Port", "8080"),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn substitutes_matching_files_in_nested_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("config/prod")).unwrap();
        fs::write(
            root.join("config/app.conf"),
            "server=#{Db.Server}:#{Port}\n",
        )
        .unwrap();
        fs::write(
            root.join("config/prod/deep.conf"),
            "#{Greeting}, #{Missing}!",
        )
        .unwrap();
        fs::write(root.join("config/notes.txt"), "#{Greeting}").unwrap();
        fs::write(root.join("top.conf"), "#{Greeting}").unwrap();
        fs::set_permissions(
            root.join("config/app.conf"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();

        let globs = vec!["config/**/*.conf".to_string(), "nothing/*.xml".to_string()];
        let results = substitute_files(root, &globs, &vars()).unwrap();
        let paths: Vec<_> = results.iter().map(|r| r.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                root.join("config/app.conf"),
                root.join("config/prod/deep.conf")
            ]
        );
        assert_eq!(
            fs::read_to_string(root.join("config/app.conf")).unwrap(),
            "server=db01:8080\n"
        );
        // Unresolved tokens stay as written and are reported.
        assert_eq!(
            fs::read_to_string(root.join("config/prod/deep.conf")).unwrap(),
            "Hello, #{Missing}!"
        );
        match &results[1].outcome {
            Substitution::Rendered {
                changed: true,
                diagnostic: Some(d),
            } => assert!(d.contains("#{Missing}"), "{d}"),
            other => panic!("{other:?}"),
        }
        // Unmatched files are untouched; modes are kept.
        assert_eq!(
            fs::read_to_string(root.join("config/notes.txt")).unwrap(),
            "#{Greeting}"
        );
        assert_eq!(
            fs::read_to_string(root.join("top.conf")).unwrap(),
            "#{Greeting}"
        );
        let mode = fs::metadata(root.join("config/app.conf"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn no_match_is_not_an_error_and_binary_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(substitute_files(root, &["*.conf".into()], &vars())
            .unwrap()
            .is_empty());
        let binary = [0xff, 0xfe, b'#', b'{', 0x00, 0x80];
        fs::write(root.join("logo.bin"), binary).unwrap();
        fs::write(root.join("bom.txt"), b"\xEF\xBB\xBF#{Greeting}").unwrap();
        let results = substitute_files(root, &["*".into()], &vars()).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(
            fs::read(root.join("bom.txt")).unwrap(),
            b"\xEF\xBB\xBFHello"
        );
        assert!(matches!(results[1].outcome, Substitution::Skipped { .. }));
        assert_eq!(fs::read(root.join("logo.bin")).unwrap(), binary);
    }

    #[test]
    fn unchanged_files_are_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain.txt");
        fs::write(&file, "no tokens").unwrap();
        let before = fs::metadata(&file).unwrap();
        let results = substitute_files(dir.path(), &["*.txt".into()], &vars()).unwrap();
        assert_eq!(
            results[0].outcome,
            Substitution::Rendered {
                changed: false,
                diagnostic: None
            }
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&file).unwrap().ino(), before.ino());
    }

    #[test]
    fn evaluation_failure_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("loop.txt"), "#{A}").unwrap();
        let vars: VariableDictionary = [("A", "#{B}"), ("B", "#{A}")].into_iter().collect();
        match substitute_files(dir.path(), &["loop.txt".into()], &vars) {
            Err(e @ SubstituteError::Render { .. }) => {
                assert!(e.to_string().contains("loop.txt"), "{e}");
            }
            // A cycle may also be reported as unresolved; then the file stays.
            Ok(r) => assert!(matches!(
                r[0].outcome,
                Substitution::Rendered {
                    diagnostic: Some(_),
                    ..
                }
            )),
            Err(e) => panic!("{e}"),
        }
    }
}
