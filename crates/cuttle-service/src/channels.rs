//! Channels: the streams a project's releases are cut into, each with an
//! optional lifecycle of its own and version rules its releases must meet.
//! A project always has exactly one default channel.

use crate::actor::Actor;
use crate::resources::{audit_change, check_name, get_in_space};
use crate::{Result, ServiceError};
use cuttle_model::ids::{guid, Collection};
use cuttle_model::project::ChannelRule;
use cuttle_model::release::SelectedPackage;
use cuttle_model::version_rule::VersionRule;
use cuttle_model::{slugify, Channel, Lifecycle, Project, Release};
use cuttle_store::{DocumentQuery, Store};

fn describe(rule: &ChannelRule) -> String {
    let range = match rule.version_range.trim() {
        "" => "any version".to_owned(),
        r => format!("range {r}"),
    };
    match rule.tag.trim() {
        "" => range,
        t => format!("{range}, tag {t}"),
    }
}

async fn validate(store: &Store, space_id: &str, c: &mut Channel) -> Result<Project> {
    let mut errors = vec![];
    check_name("channel", &c.name, &mut errors);
    let project = if c.project_id.is_empty() {
        errors.push("ProjectId is required: say which project the channel belongs to".into());
        None
    } else {
        match get_in_space::<Project>(store, space_id, &c.project_id).await {
            Ok(p) => Some(p),
            Err(_) => {
                errors.push(format!("The project '{}' does not exist", c.project_id));
                None
            }
        }
    };
    c.lifecycle_id = c.lifecycle_id.take().filter(|l| !l.trim().is_empty());
    if let Some(l) = &c.lifecycle_id {
        if get_in_space::<Lifecycle>(store, space_id, l).await.is_err() {
            errors.push(format!("The lifecycle '{l}' does not exist"));
        }
    }
    for (i, rule) in c.rules.iter_mut().enumerate() {
        if rule.id.is_empty() {
            rule.id = guid();
        }
        if let Err(e) = VersionRule::parse(&rule.version_range, &rule.tag) {
            errors.push(format!("Version rule {}: {e}", i + 1));
        }
    }
    match (errors.is_empty(), project) {
        (true, Some(p)) => Ok(p),
        _ => Err(ServiceError::invalid(errors)),
    }
}

/// The project's other channels that are marked default.
async fn other_defaults(store: &Store, project_id: &str, except: &str) -> Result<Vec<Channel>> {
    let q = DocumentQuery {
        parent_ids: vec![project_id.to_owned()],
        ..Default::default()
    };
    Ok(store
        .list::<Channel>(&q)
        .await?
        .items
        .into_iter()
        .filter(|c| c.is_default && c.id != except)
        .collect())
}

pub async fn create_channel(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut channel: Channel,
) -> Result<Channel> {
    let project = validate(store, space_id, &mut channel).await?;
    channel.space_id = space_id.into();
    channel.name = channel.name.trim().to_owned();
    channel.slug = slugify(&channel.name);
    let demote = if channel.is_default {
        other_defaults(store, &project.id, "").await?
    } else {
        vec![]
    };
    let mut tx = store.begin().await?;
    channel.id = tx.next_id(Collection::Channels).await?;
    tx.insert(&channel).await?;
    for mut c in demote {
        c.is_default = false;
        tx.update(&c).await?;
    }
    let message = format!("channel {} of {} was created", channel.name, project.name);
    let owner = vec![project.id.clone()];
    audit_change(&mut tx, caller, None, Some(&channel), message, owner).await?;
    tx.commit().await?;
    Ok(channel)
}

pub async fn update_channel(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut channel: Channel,
) -> Result<Channel> {
    let existing: Channel = get_in_space(store, space_id, id).await?;
    // A channel stays with its project.
    channel.project_id = existing.project_id.clone();
    let project = validate(store, space_id, &mut channel).await?;
    if existing.is_default && !channel.is_default {
        return Err(ServiceError::bad_request(format!(
            "The channel '{}' is the default channel of '{}'; a project always has one, so make another channel the default instead",
            existing.name, project.name
        )));
    }
    channel.id = existing.id.clone();
    channel.space_id = existing.space_id.clone();
    channel.name = channel.name.trim().to_owned();
    channel.slug = slugify(&channel.name);
    let demote = if channel.is_default {
        other_defaults(store, &project.id, &channel.id).await?
    } else {
        vec![]
    };
    let mut tx = store.begin().await?;
    tx.update(&channel).await?;
    for mut c in demote {
        c.is_default = false;
        tx.update(&c).await?;
    }
    let message = format!("channel {} of {} was modified", channel.name, project.name);
    let owner = vec![project.id.clone()];
    audit_change(
        &mut tx,
        caller,
        Some(&existing),
        Some(&channel),
        message,
        owner,
    )
    .await?;
    tx.commit().await?;
    Ok(channel)
}

/// Deletes a channel that is not the default and has no releases (they
/// would be left without one).
pub async fn delete_channel(store: &Store, caller: &Actor, space_id: &str, id: &str) -> Result<()> {
    let channel: Channel = get_in_space(store, space_id, id).await?;
    if channel.is_default {
        return Err(ServiceError::bad_request(format!(
            "The channel '{}' is its project's default channel, so it cannot be deleted; make another channel the default first",
            channel.name
        )));
    }
    let q = DocumentQuery {
        parent_ids: vec![channel.project_id.clone()],
        ..Default::default()
    };
    let releases = store
        .list::<Release>(&q)
        .await?
        .items
        .into_iter()
        .filter(|r| r.channel_id == channel.id)
        .count();
    if releases > 0 {
        return Err(ServiceError::Conflict(format!(
            "The channel '{}' has {releases} release(s); delete them or keep the channel",
            channel.name
        )));
    }
    let mut tx = store.begin().await?;
    tx.delete::<Channel>(&channel.id).await?;
    let message = format!("channel {} was deleted", channel.name);
    let owner = vec![channel.project_id.clone()];
    audit_change(&mut tx, caller, Some(&channel), None, message, owner).await?;
    tx.commit().await?;
    Ok(())
}

/// Checks a new release against its channel's version rules.
///
/// In Octopus a rule constrains the versions of the packages that its
/// `ActionPackages` name. Cuttle has no packages yet, so a rule *without*
/// `ActionPackages` constrains the release version itself, and a rule with
/// them constrains the versions given for those actions in
/// `SelectedPackages` (an action with no version given is not checked).
pub fn check_release_rules(
    channel: &Channel,
    version: &str,
    selected: &[SelectedPackage],
) -> Result<()> {
    let mut errors = vec![];
    for rule in &channel.rules {
        let parsed = match VersionRule::parse(&rule.version_range, &rule.tag) {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!(
                    "The channel '{}' has a version rule that cannot be read ({e}); fix the channel",
                    channel.name
                ));
                continue;
            }
        };
        if rule.action_packages.is_empty() {
            if let Err(why) = parsed.check(version) {
                errors.push(format!(
                    "The release version {version} does not satisfy the version rule ({}) of the channel '{}': {why}",
                    describe(rule),
                    channel.name
                ));
            }
            continue;
        }
        for ap in &rule.action_packages {
            let given = selected.iter().filter(|p| {
                p.action_name.eq_ignore_ascii_case(&ap.deployment_action)
                    && ap
                        .package_reference
                        .as_deref()
                        .filter(|r| !r.is_empty())
                        .is_none_or(|r| p.package_reference_name.as_deref() == Some(r))
            });
            for p in given {
                if let Err(why) = parsed.check(&p.version) {
                    errors.push(format!(
                        "The package version {} for '{}' does not satisfy the version rule ({}) of the channel '{}': {why}",
                        p.version,
                        p.action_name,
                        describe(rule),
                        channel.name
                    ));
                }
            }
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(ServiceError::bad_request(format!(
            "{}. Choose a version the rule allows or another channel, or set IgnoreChannelRules",
            errors[0]
        ))),
        _ => Err(ServiceError::invalid(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_model::project::DeploymentActionPackage;

    fn channel(range: &str, tag: &str, actions: &[&str]) -> Channel {
        Channel {
            name: "Stable".into(),
            rules: vec![ChannelRule {
                id: "r".into(),
                version_range: range.into(),
                tag: tag.into(),
                action_packages: actions
                    .iter()
                    .map(|a| DeploymentActionPackage {
                        deployment_action: (*a).into(),
                        package_reference: None,
                    })
                    .collect(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn release_version_rules() {
        let c = channel("[1.0,2.0)", "^$", &[]);
        assert!(check_release_rules(&c, "1.2.0", &[]).is_ok());
        let Err(ServiceError::BadRequest { message, .. }) = check_release_rules(&c, "2.0.0", &[])
        else {
            panic!("expected a refusal")
        };
        assert!(
            message.contains("[1.0,2.0)") && message.contains("'Stable'"),
            "{message}"
        );
        assert!(check_release_rules(&c, "1.2.0-beta", &[]).is_err());
        assert!(check_release_rules(&Channel::default(), "9.9.9", &[]).is_ok());
    }

    #[test]
    fn package_rules_check_selected_packages() {
        let c = channel("[1.0,2.0)", "", &["Deploy web"]);
        // The release version is not what this rule is about.
        assert!(check_release_rules(&c, "5.0.0", &[]).is_ok());
        let pkg = |v: &str| SelectedPackage {
            action_name: "Deploy web".into(),
            step_name: None,
            package_reference_name: None,
            version: v.into(),
        };
        assert!(check_release_rules(&c, "5.0.0", &[pkg("1.5.0")]).is_ok());
        assert!(check_release_rules(&c, "5.0.0", &[pkg("2.5.0")]).is_err());
    }
}
