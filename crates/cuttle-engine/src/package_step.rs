//! "Deploy a package" on an agent: the package, already in the agent's file
//! cache, is extracted into a fresh directory and prepared in Octopus's
//! order: `PreDeploy.sh`, variables substituted in the listed files, values
//! replaced in the listed JSON and YAML files, `Deploy.sh`, `PostDeploy.sh`,
//! then the step's own script if it has one. The installation directory and
//! the package's id and version become output variables.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cuttle_protocol::messages::PackageStep;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::helpers::{read_variables_file, VARIABLES_FILE};
use crate::package::{self, ArchiveFormat, ExtractLimits};
use crate::sandbox::Sandbox;
use crate::script::{run_script, OutputLine, OutputStream, ScriptOutcome, ScriptSpec, Syntax};

/// The scripts a package may carry, in the order they run; the substitutions
/// happen between the first and the second.
const PRE_DEPLOY: &str = "PreDeploy.sh";
const DEPLOY: &str = "Deploy.sh";
const POST_DEPLOY: &str = "PostDeploy.sh";

/// What a package step needs from the script request around it.
pub struct PackageRun<'a> {
    pub step: PackageStep,
    /// The agent's file cache, holding the package by its hash.
    pub files_root: &'a Path,
    /// Where packages are installed when the step names no root.
    pub default_root: &'a Path,
    /// The script request's own working directory: each phase gets a fresh
    /// subdirectory of it for its helper files.
    pub work_dir: &'a Path,
    pub bootstrap: Option<String>,
    /// The script request's files (the variables file among them).
    pub files: Vec<(String, String)>,
    /// The step's own script, run last in the installation directory.
    pub body: String,
    pub timeout: Duration,
    pub sandbox: Arc<Sandbox>,
}

/// Runs the package step, sending every line (the phases' output and
/// Cuttle's own account of what it did) to `on_line`.
pub async fn run(
    run: PackageRun<'_>,
    cancel: CancellationToken,
    on_line: &(dyn Fn(OutputStream, OutputLine) + Send + Sync),
) -> Result<ScriptOutcome, String> {
    let deadline = Instant::now() + run.timeout;
    let step = &run.step;
    let say = |text: String| on_line(OutputStream::Stdout, OutputLine::whole(text));
    if !cuttle_protocol::messages::valid_file_hash(&step.hash) {
        return Err(format!("'{}' is not a package hash", step.hash));
    }
    let archive = run.files_root.join(&step.hash);
    if !archive.is_file() {
        return Err(format!(
            "the package {} {} is not in this agent's file cache",
            step.package_id, step.version
        ));
    }
    let format = ArchiveFormat::from_file_name(&step.file_name).ok_or_else(|| {
        format!(
            "'{}' is not a package file name this agent can extract",
            step.file_name
        )
    })?;

    if !step.script_file.is_empty() {
        // A script from a package: a throw-away extraction, nothing else.
        let dir = run.work_dir.join("package");
        extract_for_script(&archive, step, &dir).await?;
        let spec = ScriptSpec {
            syntax: Syntax::Bash,
            body: script_body(&dir, &step.script_file),
            work_dir: run.work_dir.join("script"),
            env: vec![],
            timeout: run.timeout,
            bootstrap: run.bootstrap.clone(),
            files: run.files.clone(),
            sandbox: run.sandbox.clone(),
        };
        return run_script(spec, cancel, on_line)
            .await
            .map_err(|e| e.to_string());
    }
    let dir = install(&run, &archive, format, &say).await?;
    // Scripts cd into it from their own directories; a custom directory
    // may have been given relative to the agent's.
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let variables = run
        .files
        .iter()
        .find(|(name, _)| name == VARIABLES_FILE)
        .map(|(_, text)| read_variables_file(text))
        .unwrap_or_default();

    let phase = |name: &'static str, body: String| {
        let run = &run;
        let dir = dir.clone();
        let cancel = cancel.clone();
        async move {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(ScriptOutcome::TimedOut);
            }
            let spec = ScriptSpec {
                syntax: Syntax::Bash,
                body: format!("cd {}\n{body}", shell_quote(&dir)),
                work_dir: run.work_dir.join(name),
                env: vec![],
                timeout: remaining,
                bootstrap: run.bootstrap.clone(),
                files: run.files.clone(),
                sandbox: run.sandbox.clone(),
            };
            run_script(spec, cancel, on_line)
                .await
                .map_err(|e| e.to_string())
        }
    };

    if dir.join(PRE_DEPLOY).is_file() {
        say(format!("Running {PRE_DEPLOY}"));
        let outcome = phase("pre-deploy", format!(". ./{PRE_DEPLOY}")).await?;
        if outcome != ScriptOutcome::Exited(0) {
            return Ok(outcome);
        }
    }

    let (root, globs) = (dir.clone(), step.substitute_in_files.clone());
    let dict = variables.clone();
    if !globs.is_empty() {
        let substituted =
            tokio::task::spawn_blocking(move || package::substitute_files(&root, &globs, &dict))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        for line in describe_substitution(&dir, &substituted) {
            say(line);
        }
    }
    let (root, globs) = (dir.clone(), step.structured_files.clone());
    if !globs.is_empty() {
        let changed = tokio::task::spawn_blocking(move || {
            package::replace_structured(&root, &globs, &variables)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        for line in describe_structured(&dir, &changed) {
            say(line);
        }
    }

    for (file, name) in [(DEPLOY, "deploy"), (POST_DEPLOY, "post-deploy")] {
        if dir.join(file).is_file() {
            say(format!("Running {file}"));
            let outcome = phase(name, format!(". ./{file}")).await?;
            if outcome != ScriptOutcome::Exited(0) {
                return Ok(outcome);
            }
        }
    }
    if !run.body.trim().is_empty() {
        let outcome = phase("script", run.body.clone()).await?;
        if outcome != ScriptOutcome::Exited(0) {
            return Ok(outcome);
        }
    }
    if step.versions_to_keep > 0 {
        let (step, dir, files_root) = (step.clone(), dir.clone(), run.files_root.to_path_buf());
        let custom = !run.step.custom_installation_directory.trim().is_empty();
        let pruned = tokio::task::spawn_blocking(move || prune(&step, &dir, custom, &files_root))
            .await
            .map_err(|e| e.to_string())?;
        for line in pruned {
            say(line);
        }
    }
    // The server reads these as output variables, as if a script set them.
    let path = dir.to_string_lossy().into_owned();
    for (name, value) in [
        (
            "Octopus.Action.Package.InstallationDirectoryPath",
            path.as_str(),
        ),
        ("Package.InstallationDirectoryPath", path.as_str()),
        ("Octopus.Action.Package.PackageId", step.package_id.as_str()),
        (
            "Octopus.Action.Package.PackageVersion",
            step.version.as_str(),
        ),
    ] {
        say(format!(
            "##octopus[setVariable name='{}' value='{}' sensitive='{}']",
            B64.encode(name),
            B64.encode(value),
            B64.encode("False")
        ));
    }
    Ok(ScriptOutcome::Exited(0))
}

/// Extracts a package whose script is to run into `dir`, and checks the
/// script is there.
pub async fn extract_for_script(
    archive: &Path,
    step: &PackageStep,
    dir: &Path,
) -> Result<(), String> {
    let format = ArchiveFormat::from_file_name(&step.file_name).ok_or_else(|| {
        format!(
            "'{}' is not a package file name that can be extracted",
            step.file_name
        )
    })?;
    let (archive, to) = (archive.to_path_buf(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        package::extract(&archive, format, &to, &ExtractLimits::default())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    if !dir.join(&step.script_file).is_file() {
        return Err(format!(
            "The package {} {} has no file {}",
            step.package_id, step.version, step.script_file
        ));
    }
    Ok(())
}

/// The Bash that runs a script file of an extracted package, from its root.
pub fn script_body(dir: &Path, script_file: &str) -> String {
    format!(
        "cd {}
. {}",
        shell_quote(dir),
        shell_quote(Path::new(&format!("./{script_file}")))
    )
}

/// Extracts the package where the step says, and says where.
async fn install(
    run: &PackageRun<'_>,
    archive: &Path,
    format: ArchiveFormat,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<PathBuf, String> {
    let step = &run.step;
    let custom = step.custom_installation_directory.trim();
    let (archive, limits) = (archive.to_path_buf(), ExtractLimits::default());
    if !custom.is_empty() {
        // Extracted beside it first, so a bad archive leaves it as it was.
        let target = PathBuf::from(custom);
        let staging = run.work_dir.join("extracted");
        let purge = step.purge_custom_directory;
        let (from, to) = (staging.clone(), target.clone());
        let report = tokio::task::spawn_blocking(move || {
            let report =
                package::extract(&archive, format, &from, &limits).map_err(|e| e.to_string())?;
            if purge {
                package::purge_dir(&to, &[]).map_err(|e| e.to_string())?;
            }
            package::copy_tree(&from, &to).map_err(|e| e.to_string())?;
            Ok::<_, String>(report)
        })
        .await
        .map_err(|e| e.to_string())??;
        say(format!(
            "Extracted {} files ({} bytes) of {} {} into {}{}",
            report.files,
            report.bytes,
            step.package_id,
            step.version,
            target.display(),
            if step.purge_custom_directory {
                ", emptied first"
            } else {
                ""
            }
        ));
        return Ok(target);
    }
    let root = if step.application_root.trim().is_empty() {
        run.default_root.to_path_buf()
    } else {
        PathBuf::from(step.application_root.trim())
    };
    let dest = package::install_dir(&root, &step.environment, &step.package_id, &step.version);
    let to = dest.clone();
    let report =
        tokio::task::spawn_blocking(move || package::extract(&archive, format, &to, &limits))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    say(format!(
        "Extracted {} files ({} bytes) of {} {} into {}",
        report.files,
        report.bytes,
        step.package_id,
        step.version,
        dest.display()
    ));
    Ok(dest)
}

/// Keeps the newest `versions_to_keep` extracted versions of the package
/// (by modification time; not in a custom directory, which holds one) and
/// as many of its versions in the file cache (by version order); the one
/// just deployed always stays. Returns what it says about it; a file that
/// cannot be removed is reported, not fatal.
fn prune(step: &PackageStep, installed: &Path, custom: bool, files_root: &Path) -> Vec<String> {
    let keep = step.versions_to_keep as usize;
    let mut said = vec![];
    if let (false, Some(parent)) = (custom, installed.parent()) {
        let mut versions: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .filter(|(_, p)| p != installed)
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        let old: Vec<PathBuf> = versions
            .into_iter()
            .skip(keep.saturating_sub(1))
            .map(|(_, p)| p)
            .collect();
        let mut removed = vec![];
        for dir in old {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed.push(
                    dir.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                Err(e) => said.push(format!("Could not remove {}: {e}", dir.display())),
            }
        }
        if !removed.is_empty() {
            said.push(format!(
                "Removed {} older extracted version{} of {} (keeping {keep}): {}",
                removed.len(),
                if removed.len() == 1 { "" } else { "s" },
                step.package_id,
                removed.join(", ")
            ));
        }
    }
    let cached: Vec<&String> = step
        .version_hashes
        .iter()
        .filter(|h| **h != step.hash)
        .filter(|h| cuttle_protocol::messages::valid_file_hash(h))
        .filter(|h| files_root.join(h.as_str()).is_file())
        .collect();
    let mut removed = 0;
    for hash in cached.into_iter().skip(keep.saturating_sub(1)) {
        match std::fs::remove_file(files_root.join(hash)) {
            Ok(()) => removed += 1,
            Err(e) => said.push(format!("Could not remove the cached package {hash}: {e}")),
        }
    }
    if removed > 0 {
        said.push(format!(
            "Removed {removed} older cached file{} of {} (keeping {keep} versions)",
            if removed == 1 { "" } else { "s" },
            step.package_id
        ));
    }
    said
}

/// One line per matched file, relative to the installation directory.
fn describe_substitution(root: &Path, done: &[package::SubstitutedFile]) -> Vec<String> {
    if done.is_empty() {
        return vec!["No file matched the files to substitute variables in".into()];
    }
    done.iter()
        .map(|f| {
            let name = f.path.strip_prefix(root).unwrap_or(&f.path).display();
            match &f.outcome {
                package::Substitution::Rendered {
                    changed,
                    diagnostic,
                } => format!(
                    "Substituted variables in {name}{}{}",
                    if *changed { "" } else { " (nothing to change)" },
                    diagnostic
                        .as_deref()
                        .map(|d| format!("; {d}"))
                        .unwrap_or_default()
                ),
                package::Substitution::Skipped { reason } => {
                    format!("Left {name} as it was: {reason}")
                }
            }
        })
        .collect()
}

/// One line per variable that addressed a key.
fn describe_structured(root: &Path, changes: &[package::StructuredChange]) -> Vec<String> {
    if changes.is_empty() {
        return vec!["No variable named a key of the structured configuration files".into()];
    }
    changes
        .iter()
        .map(|c| {
            let name = c.file.strip_prefix(root).unwrap_or(&c.file).display();
            match &c.outcome {
                package::StructuredOutcome::Replaced => {
                    format!(
                        "Replaced {} in {name} with the variable {}",
                        c.key, c.variable
                    )
                }
                package::StructuredOutcome::Skipped { reason } => {
                    format!("Left {} in {name} as it was: {reason}", c.key)
                }
            }
        })
        .collect()
}

/// A path as one shell word.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}
