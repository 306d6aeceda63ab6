//! Which package versions a release deploys: for every package an enabled
//! action references, the version the caller named, else the newest in the
//! built-in feed that the channel's rules allow. The release keeps the
//! choice, so deploying it later deploys the same files.
//!
//! Callers name the action a version is for (`ActionName`), its step
//! (`StepName`), or both, compared without regard to case as Octopus does. A
//! selection that names nothing in the process is an error, not a silent
//! fall-back to the newest version.

use crate::{Result, ServiceError};
use cuttle_model::ids::BUILTIN_FEED_ID;
use cuttle_model::package::compare_versions;
use cuttle_model::release::SelectedPackage;
use cuttle_model::version_rule::VersionRule;
use cuttle_model::{Channel, DeploymentProcess};
use cuttle_store::packages::PackageQuery;
use cuttle_store::Store;

/// What the caller asked for, besides explicit selections: the executions
/// API's `Packages` (`Action:Version`, `Action:Reference:Version` or
/// `PackageId:Version`) and `PackageVersion` (for every package not named).
#[derive(Debug, Default)]
pub struct Requested {
    pub selected: Vec<SelectedPackage>,
    pub packages: Vec<String>,
    pub default_version: Option<String>,
}

/// One package reference of one action.
struct Needed<'a> {
    action: &'a str,
    /// `None` for the action's primary package (an unnamed reference).
    reference: Option<&'a str>,
    package_id: &'a str,
}

/// A version for every package reference of the process's enabled actions,
/// each checked to be in the feed (and, unless `ignore_rules`, to satisfy
/// the channel's rules for that action).
pub async fn select(
    store: &Store,
    space_id: &str,
    process: &DeploymentProcess,
    channel: &Channel,
    requested: &Requested,
    ignore_rules: bool,
) -> Result<Vec<SelectedPackage>> {
    let mut errors = vec![];
    let resolved = resolve_selections(process, &requested.selected, &mut errors);
    let requested = &Requested {
        selected: resolved,
        packages: requested.packages.clone(),
        default_version: requested.default_version.clone(),
    };
    let mut needed = vec![];
    for action in process
        .steps
        .iter()
        .flat_map(|s| &s.actions)
        .filter(|a| !a.is_disabled)
    {
        for p in &action.packages {
            if p.package_id.trim().is_empty() {
                continue;
            }
            let feed = p.feed_id.trim();
            if !feed.is_empty() && feed != BUILTIN_FEED_ID {
                errors.push(format!(
                    "The action '{}' takes the package {} from the feed '{feed}'; only the built-in feed ({BUILTIN_FEED_ID}) is supported",
                    action.name, p.package_id
                ));
                continue;
            }
            needed.push(Needed {
                action: &action.name,
                reference: Some(p.name.as_str()).filter(|n| !n.is_empty()),
                package_id: &p.package_id,
            });
        }
    }
    let mut chosen = Vec::with_capacity(needed.len());
    for n in &needed {
        let mut versions: Vec<String> = store
            .packages(&PackageQuery {
                space_id: space_id.to_owned(),
                package_id: Some(n.package_id.to_owned()),
                ..Default::default()
            })
            .await?
            .into_iter()
            .map(|p| p.version)
            .collect();
        versions.sort_by(|a, b| compare_versions(b, a));
        let rules = if ignore_rules {
            vec![]
        } else {
            rules_for(channel, n)?
        };
        let allowed = |v: &str| rules.iter().all(|r| r.check(v).is_ok());
        let version = match asked_version(requested, n) {
            Some(v) => {
                if !versions
                    .iter()
                    .any(|have| compare_versions(have, &v).is_eq())
                {
                    errors.push(format!(
                        "The package {} version {v} (for '{}') is not in the built-in feed",
                        n.package_id, n.action
                    ));
                    continue;
                }
                if !allowed(&v) {
                    errors.push(format!(
                        "The package {} version {v} (for '{}') does not satisfy the version rules of the channel '{}'",
                        n.package_id, n.action, channel.name
                    ));
                    continue;
                }
                v
            }
            None => match versions.iter().find(|v| allowed(v)) {
                Some(v) => v.clone(),
                None if versions.is_empty() => {
                    errors.push(format!(
                        "The action '{}' deploys the package {}, which is not in the built-in feed; push it first",
                        n.action, n.package_id
                    ));
                    continue;
                }
                None => {
                    errors.push(format!(
                        "No version of the package {} in the built-in feed satisfies the version rules of the channel '{}' for '{}'",
                        n.package_id, channel.name, n.action
                    ));
                    continue;
                }
            },
        };
        chosen.push(SelectedPackage {
            action_name: n.action.to_owned(),
            step_name: None,
            package_reference_name: n.reference.map(str::to_owned),
            version,
        });
    }
    if errors.is_empty() {
        Ok(chosen)
    } else {
        Err(ServiceError::invalid(errors))
    }
}

/// The explicit selections, each naming one action of the process: one that
/// names a step stands for every action of that step. A selection that names
/// no step or action of the process adds an error.
fn resolve_selections(
    process: &DeploymentProcess,
    selected: &[SelectedPackage],
    errors: &mut Vec<String>,
) -> Vec<SelectedPackage> {
    let mut resolved = vec![];
    let actions = || process.steps.iter().flat_map(|s| &s.actions);
    for s in selected {
        let version = s.version.trim();
        let action = s.action_name.trim();
        let step = s.step_name.as_deref().map(str::trim).unwrap_or("");
        let for_action = |name: &str| SelectedPackage {
            action_name: name.to_owned(),
            step_name: None,
            ..s.clone()
        };
        if step.is_empty() {
            if action.is_empty() {
                errors.push(format!(
                    "A selected package (version {version}) names no step or action: give its StepName or ActionName"
                ));
            } else if let Some(a) = actions().find(|a| a.name.eq_ignore_ascii_case(action)) {
                resolved.push(for_action(&a.name));
            } else {
                errors.push(format!(
                    "The selected package version {version} is for the action '{action}', which is not in the deployment process"
                ));
            }
            continue;
        }
        let Some(found) = process
            .steps
            .iter()
            .find(|st| st.name.eq_ignore_ascii_case(step))
        else {
            // Older clients put the action's name in StepName.
            match actions().find(|a| a.name.eq_ignore_ascii_case(step)) {
                Some(a) if action.is_empty() || a.name.eq_ignore_ascii_case(action) => {
                    resolved.push(for_action(&a.name))
                }
                _ => errors.push(format!(
                    "The selected package version {version} is for the step '{step}', which is not in the deployment process"
                )),
            }
            continue;
        };
        if action.is_empty() {
            resolved.extend(found.actions.iter().map(|a| for_action(&a.name)));
        } else if let Some(a) = found
            .actions
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(action))
        {
            resolved.push(for_action(&a.name));
        } else {
            errors.push(format!(
                "The selected package version {version} is for the action '{action}', which is not in the step '{}'",
                found.name
            ));
        }
    }
    resolved
}

/// The version the caller named for this reference, if any.
fn asked_version(requested: &Requested, n: &Needed<'_>) -> Option<String> {
    let same_reference = |r: Option<&str>| {
        r.filter(|r| !r.is_empty()).map(str::to_ascii_lowercase)
            == n.reference.map(str::to_ascii_lowercase)
    };
    if let Some(s) = requested.selected.iter().find(|s| {
        s.action_name.eq_ignore_ascii_case(n.action)
            && same_reference(s.package_reference_name.as_deref())
            && !s.version.trim().is_empty()
    }) {
        return Some(s.version.trim().to_owned());
    }
    for entry in &requested.packages {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let found = match parts.as_slice() {
            [name, version] => (name.eq_ignore_ascii_case(n.action) && n.reference.is_none()
                || name.eq_ignore_ascii_case(n.package_id))
            .then_some(*version),
            [action, reference, version] => (action.eq_ignore_ascii_case(n.action)
                && same_reference(Some(reference)))
            .then_some(*version),
            _ => None,
        };
        if let Some(v) = found.filter(|v| !v.is_empty()) {
            return Some(v.to_owned());
        }
    }
    requested
        .default_version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The channel's rules that apply to this action's package.
fn rules_for(channel: &Channel, n: &Needed<'_>) -> Result<Vec<VersionRule>> {
    let mut rules = vec![];
    for rule in &channel.rules {
        let applies = rule.action_packages.iter().any(|ap| {
            ap.deployment_action.eq_ignore_ascii_case(n.action)
                && ap
                    .package_reference
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .is_none_or(|r| n.reference.is_some_and(|nr| nr.eq_ignore_ascii_case(r)))
        });
        if !applies {
            continue;
        }
        rules.push(
            VersionRule::parse(&rule.version_range, &rule.tag).map_err(|e| {
                ServiceError::bad_request(format!(
                    "The channel '{}' has a version rule that cannot be read ({e}); fix the channel",
                    channel.name
                ))
            })?,
        );
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needed<'a>(action: &'a str, reference: Option<&'a str>, id: &'a str) -> Needed<'a> {
        Needed {
            action,
            reference,
            package_id: id,
        }
    }

    #[test]
    fn named_versions_win_over_the_default() {
        let requested = Requested {
            selected: vec![SelectedPackage {
                action_name: "deploy web".into(),
                step_name: None,
                package_reference_name: None,
                version: "1.2.0".into(),
            }],
            packages: vec!["Acme.Db:2.0.0".into(), "Deploy API:Tools:3.1.0".into()],
            default_version: Some("9.9.9".into()),
        };
        let web = needed("Deploy Web", None, "Acme.Web");
        let db = needed("Deploy Db", None, "Acme.Db");
        let tools = needed("Deploy API", Some("tools"), "Acme.Tools");
        let other = needed("Other", None, "Acme.Other");
        assert_eq!(asked_version(&requested, &web).as_deref(), Some("1.2.0"));
        assert_eq!(asked_version(&requested, &db).as_deref(), Some("2.0.0"));
        assert_eq!(asked_version(&requested, &tools).as_deref(), Some("3.1.0"));
        assert_eq!(asked_version(&requested, &other).as_deref(), Some("9.9.9"));
        assert_eq!(asked_version(&Requested::default(), &other), None);
    }
}
