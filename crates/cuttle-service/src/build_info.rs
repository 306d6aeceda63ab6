//! Build information (`POST /api/{space}/build-information`): what CI says
//! about the build of a package version, kept one per version and copied
//! onto the releases that deploy that version.

use crate::actor::Actor;
use crate::packages::OverwriteMode;
use crate::resources::{audit_change, get_in_space};
use crate::{Result, ServiceError};
use cuttle_model::build_info::{build_information_name, commit_url, BuildInformation, Commit};
use cuttle_model::ids::Collection;
use cuttle_model::package::{compare_versions, is_valid_package_id, is_valid_version, Package};
use cuttle_model::release::SelectedPackage;
use cuttle_model::{DeploymentProcess, Timestamp};
use cuttle_store::{DocumentQuery, Store};
use serde::Deserialize;
use serde_json::Value;

/// Octopus's words for build information that exists already, which
/// clients look for in the error.
pub const BUILD_INFORMATION_EXISTS: &str =
    "Metadata for the specified Package ID and version already exists.";

/// The body CI plugins send.
#[derive(Debug, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct NewBuildInformation {
    pub package_id: String,
    pub version: String,
    pub octopus_build_information: BuildDetails,
    /// What to do when the version has build information already, for
    /// clients that say it in the body rather than the query.
    pub overwrite_mode: Option<String>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct BuildDetails {
    pub build_environment: String,
    pub build_number: String,
    pub build_url: String,
    pub branch: String,
    pub vcs_type: String,
    pub vcs_root: String,
    pub vcs_commit_number: String,
    pub commits: Vec<NewCommit>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct NewCommit {
    pub id: String,
    pub comment: String,
}

/// Records a package version's build information; an existing one is kept,
/// replaced or refused as `mode` says.
pub async fn create(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    new: NewBuildInformation,
    mode: OverwriteMode,
) -> Result<BuildInformation> {
    let (package_id, version) = (new.package_id.trim(), new.version.trim());
    let mut errors = vec![];
    if package_id.is_empty() {
        errors.push("PackageId is required: which package was built".into());
    } else if !is_valid_package_id(package_id) {
        errors.push(format!(
            "PackageId '{package_id}' is not a valid package id"
        ));
    }
    if version.is_empty() {
        errors.push("Version is required: which version of the package was built".into());
    } else if !is_valid_version(version) {
        errors.push(format!("Version '{version}' is not a valid version"));
    }
    if !errors.is_empty() {
        return Err(ServiceError::invalid(errors));
    }
    let name = build_information_name(package_id, version);
    let existing: Option<BuildInformation> =
        store.find_by_name(Some(space_id), None, &name).await?;
    if let (Some(found), OverwriteMode::IgnoreIfExists) = (&existing, mode) {
        return Ok(found.clone());
    }
    if existing.is_some() && mode == OverwriteMode::FailIfExists {
        return Err(ServiceError::AlreadyExists {
            octopus: BUILD_INFORMATION_EXISTS,
            detail: format!(
                "Build information for {package_id} {version} already exists; send overwriteMode=OverwriteExisting to replace it, or IgnoreIfExists to keep it"
            ),
        });
    }
    let b = new.octopus_build_information;
    let mut record = BuildInformation {
        id: String::new(),
        space_id: space_id.into(),
        name,
        package_id: package_id.into(),
        version: version.into(),
        vcs_commit_url: commit_url(&b.vcs_root, b.vcs_commit_number.trim()),
        commits: b
            .commits
            .into_iter()
            .map(|c| Commit {
                link_url: commit_url(&b.vcs_root, c.id.trim()),
                id: c.id,
                comment: c.comment,
            })
            .collect(),
        build_environment: b.build_environment,
        build_number: b.build_number,
        build_url: b.build_url,
        branch: b.branch,
        vcs_type: b.vcs_type,
        vcs_root: b.vcs_root,
        vcs_commit_number: b.vcs_commit_number,
        issue_tracker_name: None,
        work_items: vec![],
        created: Some(Timestamp::now()),
    };
    let mut tx = store.begin().await?;
    match &existing {
        Some(old) => {
            record.id = old.id.clone();
            tx.update(&record).await?;
        }
        None => {
            record.id = tx.next_id(Collection::BuildInformation).await?;
            tx.insert(&record).await?;
        }
    }
    audit_change(
        &mut tx,
        caller,
        existing.as_ref(),
        Some(&record),
        format!("build information for {package_id} {version} was recorded"),
        vec![],
    )
    .await?;
    tx.commit().await?;
    Ok(record)
}

/// The space's build information, newest first, for one package when
/// `package_id` is given.
pub async fn list(
    store: &Store,
    space_id: &str,
    package_id: Option<&str>,
) -> Result<Vec<BuildInformation>> {
    let q = DocumentQuery {
        space_id: Some(space_id.into()),
        descending: true,
        ..Default::default()
    };
    let wanted = package_id.map(str::trim).filter(|p| !p.is_empty());
    Ok(store
        .list::<BuildInformation>(&q)
        .await?
        .items
        .into_iter()
        .filter(|b| wanted.is_none_or(|p| b.package_id.eq_ignore_ascii_case(p)))
        .collect())
}

/// The build information recorded for each of `packages`, in their order:
/// the one for the same package id (any case) and the same version by
/// precedence (`1.0` is `1.0.0`), or `None`. Build information may be
/// pushed before or after its package, so the two are matched when read.
pub async fn of_packages(
    store: &Store,
    space_id: &str,
    packages: &[Package],
) -> Result<Vec<Option<BuildInformation>>> {
    if packages.is_empty() {
        return Ok(vec![]);
    }
    let all = list(store, space_id, None).await?;
    Ok(packages
        .iter()
        .map(|p| {
            all.iter()
                .find(|b| {
                    b.package_id.eq_ignore_ascii_case(&p.package_id)
                        && compare_versions(&b.version, &p.version).is_eq()
                })
                .cloned()
        })
        .collect())
}

pub async fn get(store: &Store, space_id: &str, id: &str) -> Result<BuildInformation> {
    get_in_space(store, space_id, id).await
}

pub async fn delete(store: &Store, caller: &Actor, space_id: &str, id: &str) -> Result<()> {
    let found: BuildInformation = get_in_space(store, space_id, id).await?;
    let mut tx = store.begin().await?;
    tx.delete::<BuildInformation>(&found.id).await?;
    audit_change(
        &mut tx,
        caller,
        Some(&found),
        None,
        format!(
            "build information for {} {} was deleted",
            found.package_id, found.version
        ),
        vec![],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The build information of the package versions a release selects, as
/// the release shows it (`BuildInformation`).
pub async fn for_release(
    store: &Store,
    space_id: &str,
    process: &DeploymentProcess,
    selected: &[SelectedPackage],
) -> Result<Vec<Value>> {
    let all = list(store, space_id, None).await?;
    let mut out = vec![];
    for s in selected {
        let reference = s.package_reference_name.as_deref().unwrap_or("");
        let package_id = process
            .steps
            .iter()
            .flat_map(|st| &st.actions)
            .filter(|a| a.name.eq_ignore_ascii_case(&s.action_name))
            .flat_map(|a| &a.packages)
            .find(|p| p.name.eq_ignore_ascii_case(reference))
            .map(|p| p.package_id.as_str());
        let Some(package_id) = package_id else {
            continue;
        };
        let found = all.iter().find(|b| {
            b.package_id.eq_ignore_ascii_case(package_id)
                && compare_versions(&b.version, &s.version).is_eq()
        });
        if let Some(b) = found {
            let mut v =
                serde_json::to_value(b).map_err(|e| ServiceError::Internal(e.to_string()))?;
            if let Value::Object(map) = &mut v {
                map.remove("Name");
                map.remove("SpaceId");
            }
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    Ok(out)
}
