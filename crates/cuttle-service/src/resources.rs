//! Spaces, environments, project groups and lifecycles: resources whose
//! commands are plain create, modify and delete with validation.

use crate::actor::Actor;
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::{slugify, Environment, Lifecycle, Project, ProjectGroup, Space};
use cuttle_store::{Document, DocumentQuery, Page, Store, Tx};

/// Reads a document that must exist in `space_id`; one in another space is
/// treated as missing, so ids cannot be probed across spaces.
pub async fn get_in_space<D: Document>(store: &Store, space_id: &str, id: &str) -> Result<D> {
    match store.get::<D>(id).await? {
        Some(d) if d.space_id().is_none_or(|s| s == space_id) => Ok(d),
        _ => Err(ServiceError::not_found(D::KIND, id)),
    }
}

pub async fn list<D: Document>(store: &Store, q: &DocumentQuery) -> Result<Page<D>> {
    Ok(store.list::<D>(q).await?)
}

/// The name rules every named resource shares.
pub fn check_name(kind: &str, name: &str, errors: &mut Vec<String>) {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        errors.push(format!("Name is required: give the {kind} a name"));
    } else if trimmed.chars().count() > 200 {
        errors.push(format!("The {kind} name must be at most 200 characters"));
    } else if let Some(problem) = crate::text::name_problem("Name", kind, name) {
        errors.push(problem);
    }
}

fn fail_if_any(errors: Vec<String>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

/// Writes a plain event (no document change) as `caller`'s, in `tx`.
pub(crate) async fn audit(
    tx: &mut Tx,
    caller: &Actor,
    space_id: Option<&str>,
    category: &'static str,
    message: String,
    ids: Vec<String>,
) -> Result<()> {
    crate::audit::record(
        tx,
        caller,
        crate::audit::Entry::new(category, space_id, message).about(ids),
    )
    .await
}

/// Writes an event of `category` about a change to a document that the
/// generic created/modified/deleted shapes do not name (a release cut, a
/// deployment queued, an interruption answered), with the document before
/// and after.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audit_changed<D: serde::Serialize>(
    tx: &mut Tx,
    caller: &Actor,
    space_id: Option<&str>,
    category: &'static str,
    message: String,
    ids: Vec<String>,
    before: Option<&D>,
    after: Option<&D>,
) -> Result<()> {
    crate::audit::record(
        tx,
        caller,
        crate::audit::Entry::new(category, space_id, message)
            .about(ids)
            .changed(before, after),
    )
    .await
}

/// Writes the event of a change to one document: created (no `before`),
/// modified, or deleted (no `after`), with the document before and after.
pub(crate) async fn audit_change<D: Document>(
    tx: &mut Tx,
    caller: &Actor,
    before: Option<&D>,
    after: Option<&D>,
    message: String,
    mut ids: Vec<String>,
) -> Result<()> {
    use crate::audit::category::{CREATED, DELETED, MODIFIED};
    let Some(doc) = after.or(before) else {
        return Ok(());
    };
    let category = match (before, after) {
        (None, _) => CREATED,
        (_, None) => DELETED,
        _ => MODIFIED,
    };
    // The owner and environment too, so filtering by project or
    // environment finds the change of a release or a deployment.
    ids.splice(
        0..0,
        [Some(doc.id()), doc.parent_id(), doc.environment_id()]
            .into_iter()
            .flatten()
            .map(str::to_owned),
    );
    let entry = crate::audit::Entry::new(category, doc.space_id(), message)
        .about(ids)
        .changed(before, after);
    crate::audit::record(tx, caller, entry).await
}

/// Gives a new document its id and inserts it with an audit event, in one
/// transaction (so a failed insert does not use up the id).
pub(crate) async fn insert_new<D: Document>(
    store: &Store,
    caller: &Actor,
    collection: Collection,
    mut doc: D,
    set_id: fn(&mut D, String),
) -> Result<D> {
    let mut tx = store.begin().await?;
    set_id(&mut doc, tx.next_id(collection).await?);
    tx.insert(&doc).await?;
    let message = format!("{} {} was created", D::KIND, doc.name());
    audit_change(&mut tx, caller, None, Some(&doc), message, vec![]).await?;
    tx.commit().await?;
    Ok(doc)
}

pub(crate) async fn update_existing<D: Document>(
    store: &Store,
    caller: &Actor,
    before: &D,
    doc: &D,
) -> Result<()> {
    let mut tx = store.begin().await?;
    tx.update(doc).await?;
    let message = format!("{} {} was modified", D::KIND, doc.name());
    audit_change(&mut tx, caller, Some(before), Some(doc), message, vec![]).await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes a document, with its audit event, in one transaction.
pub(crate) async fn delete_existing<D: Document>(
    store: &Store,
    caller: &Actor,
    doc: &D,
) -> Result<()> {
    let mut tx = store.begin().await?;
    tx.delete::<D>(doc.id()).await?;
    let message = format!("{} {} was deleted", D::KIND, doc.name());
    audit_change(&mut tx, caller, Some(doc), None, message, vec![]).await?;
    tx.commit().await?;
    Ok(())
}

/// Refuses to delete a resource that projects still use.
async fn ensure_unused_by_projects(
    store: &Store,
    space_id: &str,
    kind: &str,
    name: &str,
    uses: impl Fn(&Project) -> bool,
) -> Result<()> {
    let q = DocumentQuery::in_space(space_id);
    let users: Vec<String> = store
        .list::<Project>(&q)
        .await?
        .items
        .into_iter()
        .filter(|p| uses(p))
        .map(|p| p.name)
        .collect();
    if users.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Conflict(format!(
            "The {kind} '{name}' is used by the projects {}; move them first",
            users.join(", ")
        )))
    }
}

// ---- spaces ----

pub async fn create_space(store: &Store, caller: &Actor, mut space: Space) -> Result<Space> {
    let mut errors = vec![];
    check_name("space", &space.name, &mut errors);
    let mut managers = space.space_managers_team_members.clone();
    managers.dedup();
    for m in &managers {
        if store.user(m).await?.is_none() {
            errors.push(format!(
                "SpaceManagersTeamMembers: the user '{m}' was not found"
            ));
        }
    }
    fail_if_any(errors)?;
    // Someone must manage the new space: its creator, unless others are named.
    if managers.is_empty() && !caller.id.is_empty() {
        managers.push(caller.id.clone());
    }
    let mut tx = store.begin().await?;
    space.id = tx.next_id(Collection::Spaces).await?;
    space.name = space.name.trim().to_owned();
    if space.slug.is_empty() {
        space.slug = slugify(&space.name);
    }
    space.is_default = false;
    let team = crate::teams::space_managers_team(&space.id, managers.clone());
    space.space_managers_teams = vec![team.id.clone()];
    space.space_managers_team_members = managers;
    tx.insert(&space).await?;
    crate::bootstrap::seed_space(&mut tx, &space.id).await?;
    tx.insert(&team).await?;
    tx.insert(&crate::teams::space_managers_grant(&team))
        .await?;
    let message = format!("space {} was created", space.name);
    audit_change(&mut tx, caller, None, Some(&space), message, vec![]).await?;
    tx.commit().await?;
    Ok(space)
}

pub async fn update_space(
    store: &Store,
    caller: &Actor,
    id: &str,
    mut space: Space,
) -> Result<Space> {
    let existing: Space = store
        .get(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("space", id))?;
    let mut errors = vec![];
    check_name("space", &space.name, &mut errors);
    fail_if_any(errors)?;
    space.id = existing.id.clone();
    space.is_default = existing.is_default;
    space.name = space.name.trim().to_owned();
    if space.slug.is_empty() {
        space.slug = slugify(&space.name);
    }
    update_existing(store, caller, &existing, &space).await?;
    Ok(space)
}

// ---- environments ----

fn validate_environment(env: &Environment) -> Result<()> {
    let mut errors = vec![];
    check_name("environment", &env.name, &mut errors);
    fail_if_any(errors)
}

pub async fn create_environment(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut env: Environment,
) -> Result<Environment> {
    validate_environment(&env)?;
    let mut tx = store.begin().await?;
    env.id = tx.next_id(Collection::Environments).await?;
    env.space_id = space_id.into();
    env.name = env.name.trim().to_owned();
    env.slug = slugify(&env.name);
    if env.sort_order == 0 {
        let q = DocumentQuery::in_space(space_id);
        let existing = tx.list::<Environment>(&q).await?;
        env.sort_order = existing
            .items
            .iter()
            .map(|e| e.sort_order)
            .max()
            .unwrap_or(0)
            + 1;
    }
    tx.insert(&env).await?;
    let message = format!("environment {} was created", env.name);
    audit_change(&mut tx, caller, None, Some(&env), message, vec![]).await?;
    tx.commit().await?;
    Ok(env)
}

pub async fn update_environment(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut env: Environment,
) -> Result<Environment> {
    let existing: Environment = get_in_space(store, space_id, id).await?;
    validate_environment(&env)?;
    env.id = existing.id.clone();
    env.space_id = existing.space_id.clone();
    env.name = env.name.trim().to_owned();
    env.slug = slugify(&env.name);
    update_existing(store, caller, &existing, &env).await?;
    Ok(env)
}

pub async fn delete_environment(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<()> {
    let env: Environment = get_in_space(store, space_id, id).await?;
    // Machines keep their environment ids; removing one under them would
    // leave targets pointing nowhere.
    let filters = crate::machines::MachineFilters {
        environment_ids: Some(env.id.clone()),
        ..Default::default()
    };
    let q = DocumentQuery::in_space(space_id);
    let machines = crate::machines::list_machines(store, q, &filters).await?;
    if !machines.is_empty() {
        let names: Vec<String> = machines.into_iter().map(|m| m.name).collect();
        return Err(ServiceError::Conflict(format!(
            "The environment '{}' has the deployment targets {}; move or delete them first",
            env.name,
            names.join(", ")
        )));
    }
    // A lifecycle phase naming a missing environment could never complete.
    let lifecycles = list::<Lifecycle>(store, &DocumentQuery::in_space(space_id)).await?;
    let naming: Vec<String> = lifecycles
        .items
        .into_iter()
        .filter(|lc| {
            lc.phases.iter().any(|p| {
                p.automatic_deployment_targets.contains(&env.id)
                    || p.optional_deployment_targets.contains(&env.id)
            })
        })
        .map(|lc| lc.name)
        .collect();
    if !naming.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "The environment '{}' is in a phase of the lifecycles {}; take it out of them first",
            env.name,
            naming.join(", ")
        )));
    }
    delete_existing(store, caller, &env).await
}

/// Reorders environments: `ids` in the new order; every id must exist.
pub async fn sort_environments(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    ids: &[String],
) -> Result<()> {
    let mut envs = vec![];
    for id in ids {
        envs.push(get_in_space::<Environment>(store, space_id, id).await?);
    }
    let mut tx = store.begin().await?;
    let mut sorted = envs.clone();
    for (i, e) in sorted.iter_mut().enumerate() {
        e.sort_order = i as i64 + 1;
        tx.update(e).await?;
    }
    audit_changed(
        &mut tx,
        caller,
        Some(space_id),
        "Modified",
        "environments were reordered".into(),
        ids.to_vec(),
        Some(&envs),
        Some(&sorted),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---- project groups ----

pub async fn create_project_group(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut group: ProjectGroup,
) -> Result<ProjectGroup> {
    let mut errors = vec![];
    check_name("project group", &group.name, &mut errors);
    fail_if_any(errors)?;
    group.space_id = space_id.into();
    group.name = group.name.trim().to_owned();
    group.slug = slugify(&group.name);
    insert_new(store, caller, Collection::ProjectGroups, group, |g, id| {
        g.id = id
    })
    .await
}

pub async fn update_project_group(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut group: ProjectGroup,
) -> Result<ProjectGroup> {
    let existing: ProjectGroup = get_in_space(store, space_id, id).await?;
    let mut errors = vec![];
    check_name("project group", &group.name, &mut errors);
    fail_if_any(errors)?;
    group.id = existing.id.clone();
    group.space_id = existing.space_id.clone();
    group.name = group.name.trim().to_owned();
    group.slug = slugify(&group.name);
    update_existing(store, caller, &existing, &group).await?;
    Ok(group)
}

pub async fn delete_project_group(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<()> {
    let group: ProjectGroup = get_in_space(store, space_id, id).await?;
    ensure_unused_by_projects(store, space_id, "project group", &group.name, |p| {
        p.project_group_id == group.id
    })
    .await?;
    delete_existing(store, caller, &group).await
}

// ---- lifecycles ----

async fn validate_lifecycle(store: &Store, space_id: &str, lc: &mut Lifecycle) -> Result<()> {
    let mut errors = vec![];
    check_name("lifecycle", &lc.name, &mut errors);
    for (i, phase) in lc.phases.iter_mut().enumerate() {
        if phase.name.trim().is_empty() {
            errors.push(format!("Phase {} needs a name", i + 1));
        } else if let Some(problem) = crate::text::name_problem("Name", "phase", &phase.name) {
            errors.push(format!("Phase {}: {problem}", i + 1));
        }
        if phase.id.is_empty() {
            phase.id = cuttle_model::ids::guid();
        }
        for env_id in phase
            .automatic_deployment_targets
            .iter()
            .chain(&phase.optional_deployment_targets)
        {
            if get_in_space::<Environment>(store, space_id, env_id)
                .await
                .is_err()
            {
                errors.push(format!(
                    "Phase '{}' names the environment '{env_id}', which does not exist",
                    phase.name
                ));
            }
        }
    }
    fail_if_any(errors)
}

pub async fn create_lifecycle(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut lc: Lifecycle,
) -> Result<Lifecycle> {
    validate_lifecycle(store, space_id, &mut lc).await?;
    lc.space_id = space_id.into();
    lc.name = lc.name.trim().to_owned();
    lc.slug = slugify(&lc.name);
    insert_new(store, caller, Collection::Lifecycles, lc, |l, id| l.id = id).await
}

pub async fn update_lifecycle(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut lc: Lifecycle,
) -> Result<Lifecycle> {
    let existing: Lifecycle = get_in_space(store, space_id, id).await?;
    validate_lifecycle(store, space_id, &mut lc).await?;
    lc.id = existing.id.clone();
    lc.space_id = existing.space_id.clone();
    lc.name = lc.name.trim().to_owned();
    lc.slug = slugify(&lc.name);
    update_existing(store, caller, &existing, &lc).await?;
    Ok(lc)
}

pub async fn delete_lifecycle(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<()> {
    let lc: Lifecycle = get_in_space(store, space_id, id).await?;
    ensure_unused_by_projects(store, space_id, "lifecycle", &lc.name, |p| {
        p.lifecycle_id == lc.id
    })
    .await?;
    delete_existing(store, caller, &lc).await
}
