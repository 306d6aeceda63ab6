//! The server's side of "Deploy a package" (`Octopus.TentaclePackage`):
//! which package file the release chose for the action, getting it to each
//! target (skipped when cached, a delta from an earlier version when that
//! is smaller), and what the agent is to do with it.

use std::path::PathBuf;

use cuttle_model::package::{compare_versions, Package};
use cuttle_model::{Action, Release};
use cuttle_protocol::messages::PackageStep;
use cuttle_protocol::Agents;
use cuttle_store::blobs::Blobs;
use cuttle_store::packages::PackageQuery;
use cuttle_store::Store;
use cuttle_vars::VariableDictionary;

use crate::log::ActivityLog;
use crate::remote::{upload_file, AgentTarget, ConnectionLimits};

const PROP_FEATURES: &str = "Octopus.Action.EnabledFeatures";
const PROP_SCRIPT_FILE_NAME: &str = "Octopus.Action.Script.ScriptFileName";
const PROP_SUBSTITUTE_ENABLED: &str = "Octopus.Action.SubstituteInFiles.Enabled";
const PROP_SUBSTITUTE_TARGETS: &str = "Octopus.Action.SubstituteInFiles.TargetFiles";
const PROP_STRUCTURED_ENABLED: &str = "Octopus.Action.StructuredConfigurationVariables.Enabled";
const PROP_STRUCTURED_TARGETS: &str = "Octopus.Action.Package.JsonConfigurationVariablesTargets";
const PROP_CUSTOM_DIRECTORY: &str = "Octopus.Action.Package.CustomInstallationDirectory";
const PROP_PURGE_CUSTOM: &str =
    "Octopus.Action.Package.CustomInstallationDirectoryShouldBePurgedBeforeDeployment";
const FEATURE_SUBSTITUTE: &str = "Octopus.Features.SubstituteInFiles";
const FEATURE_STRUCTURED: &str = "Octopus.Features.JsonConfigurationVariables";
const FEATURE_CUSTOM_DIRECTORY: &str = "Octopus.Features.CustomDirectory";

/// The package version an action deploys, and where the server keeps it.
#[derive(Clone, Debug)]
pub struct ResolvedPackage {
    pub package: Package,
    pub path: PathBuf,
    /// Earlier versions' hashes, newest first: bases for a delta.
    pub bases: Vec<String>,
    /// Every version's hash, newest first: what the agent's retention
    /// counts as versions of this package.
    pub version_hashes: Vec<String>,
}

/// The package the release chose for this action (its primary package).
pub async fn resolve(
    store: &Store,
    packages: &Blobs,
    release: &Release,
    action: &Action,
) -> Result<ResolvedPackage, String> {
    let reference = action
        .packages
        .iter()
        .find(|p| p.name.is_empty())
        .or_else(|| action.packages.first())
        .ok_or_else(|| format!("The action '{}' names no package to deploy", action.name))?;
    let selected = release
        .selected_packages
        .iter()
        .find(|s| {
            s.action_name.eq_ignore_ascii_case(&action.name)
                && s.package_reference_name
                    .as_deref()
                    .unwrap_or("")
                    .eq_ignore_ascii_case(&reference.name)
        })
        .ok_or_else(|| {
            format!(
                "The release {} chose no version of {} for '{}'; create a new release",
                release.version, reference.package_id, action.name
            )
        })?;
    let mut versions = store
        .packages(&PackageQuery {
            space_id: release.space_id.clone(),
            package_id: Some(reference.package_id.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    versions.sort_by(|a, b| compare_versions(&b.version, &a.version));
    let position = versions
        .iter()
        .position(|p| compare_versions(&p.version, &selected.version).is_eq())
        .ok_or_else(|| {
            format!(
                "The package {} version {} that the release chose is no longer in the built-in feed",
                reference.package_id, selected.version
            )
        })?;
    let package = versions[position].clone();
    let bases = versions[position + 1..]
        .iter()
        .map(|p| p.hash.clone())
        .filter(|h| *h != package.hash)
        .collect();
    let version_hashes = versions.iter().map(|p| p.hash.clone()).collect();
    // From a bucket, a local copy (fetched once into the cache) to send or unpack.
    let path = packages.local_file(&package.hash).await.map_err(|e| {
        format!(
            "The package {} version {} could not be read: {e}",
            package.package_id, package.version
        )
    })?;
    Ok(ResolvedPackage {
        path,
        package,
        bases,
        version_hashes,
    })
}

/// Gets the package into the agent's cache, saying how in the target's log.
pub async fn deliver(
    agents: &Agents,
    agent: &AgentTarget<'_>,
    limits: ConnectionLimits,
    resolved: &ResolvedPackage,
    log: &ActivityLog,
) -> Result<(), String> {
    let p = &resolved.package;
    let size = u64::try_from(p.package_size_bytes).unwrap_or(0);
    let upload = upload_file(
        agents,
        agent,
        limits,
        &resolved.path,
        &p.hash,
        size,
        &resolved.bases,
    )
    .await
    .map_err(|e| format!("The package could not be sent to {}: {e}", agent.name))?;
    let what = format!("{} {}", p.package_id, p.version);
    if upload.cached {
        log.info(format!(
            "{} already has {what} ({}); nothing was sent",
            agent.name,
            bytes(size)
        ));
        return Ok(());
    }
    let share = if size == 0 {
        0.0
    } else {
        upload.sent_bytes as f64 * 100.0 / size as f64
    };
    match upload.delta_from {
        Some(basis) => log.info(format!(
            "Sent {what} to {} as a delta from the version it had ({}): {} of {} ({share:.1}%, {} bytes)",
            agent.name,
            &basis[..12.min(basis.len())],
            bytes(upload.sent_bytes),
            bytes(size),
            upload.sent_bytes
        )),
        None => log.info(format!(
            "Sent {what} to {}: {} ({} bytes){}",
            agent.name,
            bytes(upload.sent_bytes),
            upload.sent_bytes,
            if upload.resumes > 0 {
                format!(", resumed {} times", upload.resumes)
            } else {
                String::new()
            }
        )),
    }
    Ok(())
}

/// What the agent is to do with the package, from the action's properties
/// (themselves templates, rendered with the step's variables).
pub fn step(
    action: &Action,
    resolved: &ResolvedPackage,
    environment: &str,
    dict: &VariableDictionary,
) -> PackageStep {
    let property = |name: &str| {
        let raw = action.property(name).unwrap_or_default();
        cuttle_vars::render(&raw, dict)
            .ok()
            .and_then(|r| r.text)
            .unwrap_or(raw)
    };
    let features = property(PROP_FEATURES);
    let has = |feature: &str, flag: &str| {
        features.split(',').any(|f| f.trim() == feature) || is_true(&property(flag))
    };
    let lines = |name: &str| -> Vec<String> {
        property(name)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let custom = property(PROP_CUSTOM_DIRECTORY);
    let use_custom = !custom.trim().is_empty()
        && (features.is_empty()
            || features
                .split(',')
                .any(|f| f.trim() == FEATURE_CUSTOM_DIRECTORY));
    PackageStep {
        hash: resolved.package.hash.clone(),
        file_name: resolved.package.file_name(),
        package_id: resolved.package.package_id.clone(),
        version: resolved.package.version.clone(),
        environment: environment.to_owned(),
        application_root: String::new(),
        custom_installation_directory: if use_custom {
            custom.trim().to_owned()
        } else {
            String::new()
        },
        purge_custom_directory: use_custom && is_true(&property(PROP_PURGE_CUSTOM)),
        substitute_in_files: if has(FEATURE_SUBSTITUTE, PROP_SUBSTITUTE_ENABLED) {
            lines(PROP_SUBSTITUTE_TARGETS)
        } else {
            vec![]
        },
        structured_files: if has(FEATURE_STRUCTURED, PROP_STRUCTURED_ENABLED) {
            lines(PROP_STRUCTURED_TARGETS)
        } else {
            vec![]
        },
        // Set per target, from its machine policy.
        versions_to_keep: 0,
        version_hashes: resolved.version_hashes.clone(),
        script_file: String::new(),
    }
}

/// "Run a script from a package": the package and the script file in it
/// (`Octopus.Action.Script.ScriptFileName`), checked to be a relative path
/// to a Bash script.
pub fn script_step(action: &Action, resolved: &ResolvedPackage) -> Result<PackageStep, String> {
    let file = action.property(PROP_SCRIPT_FILE_NAME).unwrap_or_default();
    let file = file.trim().replace('\\', "/");
    if file.is_empty() {
        return Err(format!(
            "The action '{}' runs a script from a package but names no script file ({PROP_SCRIPT_FILE_NAME})",
            action.name
        ));
    }
    if file.starts_with('/') || file.split('/').any(|part| part == "..") {
        return Err(format!(
            "The script file '{file}' must be a path inside the package"
        ));
    }
    if !file.ends_with(".sh") {
        return Err(format!(
            "The script file '{file}' is not a Bash script (.sh); scripts from packages run with Bash"
        ));
    }
    Ok(PackageStep {
        hash: resolved.package.hash.clone(),
        file_name: resolved.package.file_name(),
        package_id: resolved.package.package_id.clone(),
        version: resolved.package.version.clone(),
        script_file: file,
        ..Default::default()
    })
}

/// Whether a script action takes its script from a package.
pub fn script_from_package(action: &Action) -> bool {
    action
        .property(cuttle_model::process::PROP_SCRIPT_SOURCE)
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("Package"))
}

fn is_true(text: &str) -> bool {
    text.trim().eq_ignore_ascii_case("true")
}

fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_model::process::Properties;

    #[test]
    fn scripts_from_packages_must_be_bash_files_inside_the_package() {
        let resolved = ResolvedPackage {
            package: Package {
                package_id: "Acme.Tools".into(),
                version: "2.0.0".into(),
                file_extension: ".tar.gz".into(),
                hash: "b".repeat(64),
                ..Default::default()
            },
            path: PathBuf::from("/x"),
            bases: vec![],
            version_hashes: vec![],
        };
        let with_file = |file: &str| {
            let mut properties = Properties::default();
            properties.insert(PROP_SCRIPT_FILE_NAME.into(), file.into());
            Action {
                name: "Run".into(),
                properties,
                ..Default::default()
            }
        };
        let ok = script_step(&with_file(r"scripts\deploy.sh"), &resolved).unwrap();
        assert_eq!(ok.script_file, "scripts/deploy.sh");
        assert_eq!(ok.file_name, "Acme.Tools.2.0.0.tar.gz");
        for (file, why) in [
            ("", "names no script file"),
            ("../evil.sh", "inside the package"),
            ("/etc/evil.sh", "inside the package"),
            ("deploy.ps1", "not a Bash script"),
        ] {
            let err = script_step(&with_file(file), &resolved).unwrap_err();
            assert!(err.contains(why), "{file}: {err}");
        }
    }

    #[test]
    fn properties_choose_the_features() {
        let mut properties = Properties::default();
        properties.insert(
            PROP_FEATURES.into(),
            format!("{FEATURE_SUBSTITUTE},{FEATURE_STRUCTURED}").into(),
        );
        properties.insert(
            PROP_SUBSTITUTE_TARGETS.into(),
            "*.conf\n\n config/**/*.txt ".into(),
        );
        properties.insert(PROP_STRUCTURED_TARGETS.into(), "#{ConfigFile}".into());
        properties.insert(PROP_CUSTOM_DIRECTORY.into(), "/opt/app".into());
        let action = Action {
            name: "Deploy web".into(),
            properties,
            ..Default::default()
        };
        let resolved = ResolvedPackage {
            package: Package {
                package_id: "Acme.Web".into(),
                version: "1.0.0".into(),
                file_extension: ".zip".into(),
                hash: "a".repeat(64),
                ..Default::default()
            },
            path: PathBuf::from("/x"),
            bases: vec![],
            version_hashes: vec![],
        };
        let mut dict = VariableDictionary::new();
        dict.set("ConfigFile", "appsettings.json");
        let step = step(&action, &resolved, "Dev", &dict);
        assert_eq!(step.substitute_in_files, ["*.conf", "config/**/*.txt"]);
        assert_eq!(step.structured_files, ["appsettings.json"]);
        // The custom directory applies only with its feature enabled.
        assert_eq!(step.custom_installation_directory, "");
        assert_eq!(step.file_name, "Acme.Web.1.0.0.zip");
    }
}
