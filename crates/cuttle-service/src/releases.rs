//! Releases: a version of a project with its process frozen at creation.

use crate::actor::Actor;
use crate::projects::{default_channel, find_project};
use crate::resources::{audit_change, get_in_space};
use crate::{Instance, Result, ServiceError};
use cuttle_model::ids::{sequence_of, variable_snapshot_id_for, Collection};
use cuttle_model::release::SelectedPackage;
use cuttle_model::{Channel, DeploymentProcess, Project, Release, Timestamp, VariableSet};
use cuttle_store::{DocumentQuery, ProcessSnapshot, Store};
use serde::Deserialize;

/// A release as clients ask for it (`POST /releases`).
#[derive(Debug, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct NewRelease {
    pub project_id: String,
    pub version: Option<String>,
    pub channel_id: Option<String>,
    pub release_notes: Option<String>,
    pub selected_packages: Vec<SelectedPackage>,
    pub ignore_channel_rules: bool,
    /// The executions API's `Packages` (`Action:Version`, …); not a field
    /// of the release resource.
    #[serde(skip)]
    pub packages: Vec<String>,
    /// The executions API's `PackageVersion`, for packages not named.
    #[serde(skip)]
    pub package_version: Option<String>,
}

/// Release versions: SemVer, or Octopus's four-part numeric form, optionally
/// with a pre-release tag. Anything a URL or file name would choke on is out.
pub fn check_version(version: &str) -> Result<()> {
    let problem = if version.is_empty() {
        Some("Version is required")
    } else if version.len() > 100 {
        Some("The version must be at most 100 characters")
    } else if !version.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        Some("The version must start with a number, as in 1.0.0")
    } else if !version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
    {
        Some("The version may contain only letters, digits, '.', '-' and '+'")
    } else {
        None
    };
    match problem {
        Some(p) => Err(ServiceError::invalid(vec![format!(
            "{p} (got '{version}')"
        )])),
        None => Ok(()),
    }
}

/// The next version after the project's releases: the highest SemVer version
/// with its patch number raised, or `0.0.1` for the first release (what the
/// default template `#{Octopus.Version.LastMajor}.#{Octopus.Version.LastMinor}.#{Octopus.Version.NextPatch}` gives).
pub fn next_version<'a>(existing: impl Iterator<Item = &'a str>) -> String {
    existing
        .filter_map(|v| semver::Version::parse(v).ok())
        .max()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.patch + 1))
        .unwrap_or_else(|| "0.0.1".into())
}

/// The version a release of the project gets when none is given.
pub async fn suggested_version(store: &Store, project: &Project) -> Result<String> {
    let q = DocumentQuery {
        parent_ids: vec![project.id.clone()],
        ..Default::default()
    };
    let releases = store.list::<Release>(&q).await?.items;
    Ok(next_version(releases.iter().map(|r| r.version.as_str())))
}

/// A package a new release of the project must choose a version of.
#[derive(Clone, Debug)]
pub struct PackageChoice {
    pub action_name: String,
    /// `None` for the action's primary package.
    pub reference: Option<String>,
    pub package_id: String,
    /// The versions in the built-in feed, newest first.
    pub versions: Vec<String>,
}

/// Every package reference of the project's enabled actions, with the
/// versions the built-in feed has of it (what a release form offers).
pub async fn package_choices(
    store: &Store,
    space_id: &str,
    project: &Project,
) -> Result<Vec<PackageChoice>> {
    let process: DeploymentProcess =
        get_in_space(store, space_id, &project.deployment_process_id).await?;
    let mut out = vec![];
    for action in process
        .steps
        .iter()
        .flat_map(|s| &s.actions)
        .filter(|a| !a.is_disabled)
    {
        for p in action
            .packages
            .iter()
            .filter(|p| !p.package_id.trim().is_empty())
        {
            let mut versions: Vec<String> = store
                .packages(&cuttle_store::packages::PackageQuery {
                    space_id: space_id.to_owned(),
                    package_id: Some(p.package_id.clone()),
                    ..Default::default()
                })
                .await?
                .into_iter()
                .map(|p| p.version)
                .collect();
            versions.sort_by(|a, b| cuttle_model::package::compare_versions(b, a));
            out.push(PackageChoice {
                action_name: action.name.clone(),
                reference: Some(p.name.clone()).filter(|n| !n.is_empty()),
                package_id: p.package_id.clone(),
                versions,
            });
        }
    }
    Ok(out)
}

pub async fn find_release(store: &Store, project: &Project, version: &str) -> Result<Release> {
    store
        .find_by_name::<Release>(Some(&project.space_id), Some(&project.id), version)
        .await?
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "The release '{version}' of the project '{}' was not found",
                project.name
            ))
        })
}

/// Creates a release: checks its channel's version rules (unless
/// `IgnoreChannelRules`), freezes the process and variables, and then deploys
/// it to the automatic environments of the lifecycle's first phase.
pub async fn create_release(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    new: NewRelease,
) -> Result<Release> {
    let store = &inst.store;
    if new.project_id.is_empty() {
        return Err(ServiceError::invalid(vec![
            "ProjectId is required: say which project the release is for".into(),
        ]));
    }
    let project: Project = get_in_space(store, space_id, &new.project_id).await?;
    let scope = cuttle_model::Scope::space(space_id)
        .project(&project.id)
        .project_group(&project.project_group_id);
    if !caller.may(cuttle_model::Permission::ProjectView, &scope) {
        return Err(ServiceError::not_found("project", &new.project_id));
    }
    caller.require(cuttle_model::Permission::ReleaseCreate, &scope)?;
    let channel = match new.channel_id.as_deref().filter(|c| !c.is_empty()) {
        Some(id) => {
            let c: Channel = get_in_space(store, space_id, id).await?;
            if c.project_id != project.id {
                return Err(ServiceError::bad_request(format!(
                    "The channel '{}' belongs to another project, not '{}'",
                    c.name, project.name
                )));
            }
            c
        }
        None => default_channel(store, &project).await?,
    };
    let version = match new
        .version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        Some(v) => v.to_owned(),
        None => suggested_version(store, &project).await?,
    };
    check_version(&version)?;
    if project.is_disabled {
        return Err(ServiceError::bad_request(format!(
            "The project '{}' is disabled",
            project.name
        )));
    }
    let process: DeploymentProcess =
        get_in_space(store, space_id, &project.deployment_process_id).await?;
    let requested = crate::package_selection::Requested {
        selected: new.selected_packages,
        packages: new.packages,
        default_version: new.package_version,
    };
    let selected_packages = crate::package_selection::select(
        store,
        space_id,
        &process,
        &channel,
        &requested,
        new.ignore_channel_rules,
    )
    .await?;
    if !new.ignore_channel_rules {
        crate::channels::check_release_rules(&channel, &version, &selected_packages)?;
    }
    let build_information =
        crate::build_info::for_release(store, space_id, &process, &selected_packages).await?;

    let frozen = crate::variables::variables_for_release(store, &project).await?;
    let mut tx = store.begin().await?;
    let id = tx.next_id(Collection::Releases).await?;
    let snapshot = ProcessSnapshot(DeploymentProcess {
        id: format!("{}-s-{}", process.id, sequence_of(&id)),
        ..process
    });
    tx.insert(&snapshot).await?;
    // Variables are frozen with the process: later edits change nothing here.
    let variables = VariableSet {
        id: variable_snapshot_id_for(&project.id, &id),
        space_id: space_id.into(),
        owner_id: project.id.clone(),
        version: 0,
        variables: frozen,
    };
    tx.insert(&variables).await?;
    let release = Release {
        id,
        space_id: space_id.into(),
        project_id: project.id.clone(),
        channel_id: channel.id,
        version,
        release_notes: new.release_notes,
        assembled: Some(Timestamp::now()),
        project_deployment_process_snapshot_id: snapshot.0.id.clone(),
        project_variable_set_snapshot_id: variables.id.clone(),
        library_variable_set_snapshot_ids: vec![],
        selected_packages,
        build_information,
        ignore_channel_rules: new.ignore_channel_rules,
    };
    tx.insert(&release).await?;
    audit_change(
        &mut tx,
        caller,
        None,
        Some(&release),
        format!(
            "release {} of {} was created",
            release.version, project.name
        ),
        vec![project.id.clone()],
    )
    .await?;
    tx.commit().await?;
    // The release exists whatever happens next; a failure here is logged.
    if let Err(e) = crate::progression::deploy_automatic_phases(inst, &release.id, caller).await {
        tracing::error!(release = %release.id, error = %e, "could not queue automatic deployments");
    }
    Ok(release)
}

/// `POST /api/{space}/releases/create/v1`, the executions API CI tools use.
#[derive(Debug, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateReleaseCommand {
    pub project_name: String,
    pub release_version: Option<String>,
    pub channel_name: Option<String>,
    pub release_notes: Option<String>,
    pub ignore_if_already_exists: bool,
    pub ignore_channel_rules: bool,
    /// `Action:Version`, `Action:Reference:Version` or `PackageId:Version`.
    pub packages: Vec<String>,
    /// The version of every package not named in `Packages`.
    pub package_version: Option<String>,
}

pub async fn create_release_by_name(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    cmd: CreateReleaseCommand,
) -> Result<Release> {
    let store = &inst.store;
    if cmd.project_name.trim().is_empty() {
        return Err(ServiceError::invalid(
            vec!["ProjectName is required".into()],
        ));
    }
    let project = find_project(store, space_id, cmd.project_name.trim()).await?;
    let channel_id = match cmd.channel_name.as_deref().filter(|c| !c.is_empty()) {
        Some(name) => Some(
            store
                .find_by_name::<Channel>(Some(space_id), Some(&project.id), name)
                .await?
                .ok_or_else(|| {
                    ServiceError::NotFound(format!(
                        "The channel '{name}' of the project '{}' was not found",
                        project.name
                    ))
                })?
                .id,
        ),
        None => None,
    };
    if cmd.ignore_if_already_exists {
        if let Some(v) = cmd.release_version.as_deref().filter(|v| !v.is_empty()) {
            if let Ok(existing) = find_release(store, &project, v).await {
                return Ok(existing);
            }
        }
    }
    create_release(
        inst,
        caller,
        space_id,
        NewRelease {
            project_id: project.id,
            version: cmd.release_version,
            channel_id,
            release_notes: cmd.release_notes,
            selected_packages: vec![],
            ignore_channel_rules: cmd.ignore_channel_rules,
            packages: cmd.packages,
            package_version: cmd.package_version,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(next_version(std::iter::empty()), "0.0.1");
        assert_eq!(
            next_version(["0.0.9", "1.2.3", "1.10.0", "junk"].into_iter()),
            "1.10.1"
        );
        assert!(check_version("1.0.0").is_ok());
        assert!(check_version("1.0.0.12-beta.1+sha").is_ok());
        assert!(check_version("").is_err());
        assert!(check_version("v1").is_err());
        assert!(check_version("1.0 0").is_err());
        assert!(check_version("1/../2").is_err());
    }
}
