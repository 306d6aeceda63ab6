//! Variable sets (a project's own, and library variable sets that projects
//! include): reading them with sensitive values withheld, and saving them with
//! sensitive values sealed under the master key and every scope checked.

use crate::actor::Actor;
use crate::projects::process_of_project;
use crate::resources::{audit_change, check_name, get_in_space};
use crate::{Result, ServiceError};
use cuttle_model::ids::{guid, Collection};
use cuttle_model::variables::{canonical_variable_type, SENSITIVE_TYPE, VARIABLE_TYPES};
use cuttle_model::{
    Channel, Environment, LibraryVariableSet, Machine, Project, ReferenceItem, ScopeValues,
    Variable, VariableScope, VariableSet,
};
use cuttle_store::{DocumentQuery, MasterKey, Store};
use std::collections::{BTreeSet, HashSet};

/// The id of a library variable set's variables.
pub fn library_variable_set_id_for(library_id: &str) -> String {
    format!("variableset-{library_id}")
}

/// A variable set as clients see it: sensitive values withheld, and the
/// values its scopes may name.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct VariableSetView {
    #[serde(flatten)]
    pub set: VariableSet,
    pub scope_values: ScopeValues,
}

/// What owns a variable set, which decides what its scopes may name.
enum Owner {
    Project(Box<Project>),
    Library(LibraryVariableSet),
}

async fn owner_by_id(store: &Store, space_id: &str, owner_id: &str) -> Option<Owner> {
    if owner_id.starts_with(Collection::Projects.prefix()) {
        if let Ok(p) = get_in_space::<Project>(store, space_id, owner_id).await {
            return Some(Owner::Project(Box::new(p)));
        }
    } else if owner_id.starts_with(Collection::LibraryVariableSets.prefix()) {
        if let Ok(l) = get_in_space::<LibraryVariableSet>(store, space_id, owner_id).await {
            return Some(Owner::Library(l));
        }
    }
    None
}

impl Owner {
    fn id(&self) -> &str {
        match self {
            Owner::Project(p) => &p.id,
            Owner::Library(l) => &l.id,
        }
    }

    fn variable_set_id(&self) -> &str {
        match self {
            Owner::Project(p) => &p.variable_set_id,
            Owner::Library(l) => &l.variable_set_id,
        }
    }
}

/// Reads a set as stored (sensitive values still sealed) with its owner. A
/// project's or library set's own set that was never saved is empty; a
/// release's frozen copy is found by its id too.
async fn stored_set(store: &Store, space_id: &str, set_id: &str) -> Result<(VariableSet, Owner)> {
    let not_found = || ServiceError::not_found("variable set", set_id);
    if let Some(set) = store.get::<VariableSet>(set_id).await? {
        if set.space_id != space_id {
            return Err(not_found());
        }
        let owner = owner_by_id(store, space_id, &set.owner_id)
            .await
            .ok_or_else(not_found)?;
        return Ok((set, owner));
    }
    let owner_id = set_id.strip_prefix("variableset-").unwrap_or_default();
    let owner = owner_by_id(store, space_id, owner_id)
        .await
        .filter(|o| o.variable_set_id() == set_id)
        .ok_or_else(not_found)?;
    let set = VariableSet {
        id: set_id.into(),
        space_id: space_id.into(),
        owner_id: owner.id().to_owned(),
        version: 0,
        variables: vec![],
    };
    Ok((set, owner))
}

/// Withholds sensitive values from what leaves the server.
pub fn redact(mut set: VariableSet) -> VariableSet {
    for v in &mut set.variables {
        if v.sensitive() {
            v.value = None;
        }
    }
    set
}

pub async fn get_variable_set(
    store: &Store,
    space_id: &str,
    set_id: &str,
) -> Result<VariableSetView> {
    let (set, owner) = stored_set(store, space_id, set_id).await?;
    let scope_values = scope_values(store, space_id, &owner, &set).await?;
    Ok(VariableSetView {
        set: redact(set),
        scope_values,
    })
}

async fn scope_values(
    store: &Store,
    space_id: &str,
    owner: &Owner,
    set: &VariableSet,
) -> Result<ScopeValues> {
    let in_space = DocumentQuery::in_space(space_id);
    let item = |id: &str, name: &str| ReferenceItem {
        id: id.into(),
        name: name.into(),
    };
    let mut values = ScopeValues {
        environments: store
            .list::<Environment>(&in_space)
            .await?
            .items
            .iter()
            .map(|e| item(&e.id, &e.name))
            .collect(),
        machines: store
            .list::<Machine>(&in_space)
            .await?
            .items
            .iter()
            .map(|m| item(&m.id, &m.name))
            .collect(),
        ..Default::default()
    };
    if let Owner::Project(project) = owner {
        let owned = DocumentQuery {
            parent_ids: vec![project.id.clone()],
            ..Default::default()
        };
        values.channels = store
            .list::<Channel>(&owned)
            .await?
            .items
            .iter()
            .map(|c| item(&c.id, &c.name))
            .collect();
        let process = process_of_project(store, space_id, &project.id).await?;
        let mut roles = BTreeSet::new();
        for step in &process.steps {
            for a in &step.actions {
                values.actions.push(item(&a.id, &a.name));
            }
            roles.extend(step.target_roles());
        }
        values.processes.push(item(&process.id, &project.name));
        for v in &set.variables {
            roles.extend(v.scope.role.iter().cloned());
        }
        values.roles = roles
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(|r| item(&r, &r))
            .collect();
    }
    Ok(values)
}

/// Saves a whole variable set, as `PUT /variables/{id}` does. A variable sent
/// without an `Id` is new; a sensitive variable sent back with a null `Value`
/// keeps the value it had.
pub async fn update_variable_set(
    store: &Store,
    key: &MasterKey,
    caller: &Actor,
    space_id: &str,
    set_id: &str,
    incoming: VariableSet,
) -> Result<VariableSetView> {
    let (existing, owner) = stored_set(store, space_id, set_id).await?;
    if owner.variable_set_id() != set_id {
        return Err(ServiceError::bad_request(format!(
            "The variable set '{set_id}' is a release's frozen copy and cannot be changed"
        )));
    }
    if incoming.version != existing.version {
        return Err(ServiceError::Conflict(format!(
            "The variable set was changed by someone else (version {} is current, the update \
             was based on version {}); reload it and apply your changes again",
            existing.version, incoming.version
        )));
    }
    let mut variables = incoming.variables;
    check_variables(store, space_id, &owner, &mut variables).await?;
    if let Some(perms) = caller.permissions.as_deref() {
        let scope = crate::variable_access::scope_of_set(space_id, &existing.owner_id);
        variables = crate::variable_access::within_edit_scope(
            perms,
            &scope,
            &existing.variables,
            variables,
        )?;
    }
    let mut ids = HashSet::new();
    for v in &mut variables {
        if v.id.is_empty() {
            v.id = guid();
        }
        if !ids.insert(v.id.clone()) {
            return Err(ServiceError::invalid(vec![format!(
                "Two variables have the Id '{}'; each variable needs its own",
                v.id
            )]));
        }
        v.name = v.name.trim().to_owned();
        if v.sensitive() {
            v.is_sensitive = true;
            v.kind = SENSITIVE_TYPE.into();
            v.value = match v.value.take() {
                Some(plain) => Some(key.seal(&plain)),
                // Clients send sensitive values back as null: keep the old one.
                None => existing
                    .variables
                    .iter()
                    .find(|old| old.id == v.id && old.sensitive())
                    .and_then(|old| old.value.clone()),
            };
        }
    }
    let set = VariableSet {
        id: set_id.into(),
        space_id: space_id.into(),
        owner_id: existing.owner_id.clone(),
        version: existing.version + 1,
        variables,
    };
    let stored = store.get::<VariableSet>(set_id).await?.is_some();
    let mut tx = store.begin().await?;
    if !stored {
        tx.insert(&set).await?;
    } else {
        tx.update(&set).await?;
    }
    // Sealed or not, sensitive values are hidden in the event: only that
    // one changed shows.
    let message = format!("the variables of {} were modified", owner_name(&owner));
    let before = stored.then_some(&existing);
    let entry = crate::audit::Entry::new(crate::audit::category::MODIFIED, Some(space_id), message)
        .about([set.owner_id.clone(), set.id.clone()])
        .changed(before, Some(&set));
    crate::audit::record(&mut tx, caller, entry).await?;
    tx.commit().await?;
    let scope_values = scope_values(store, space_id, &owner, &set).await?;
    Ok(VariableSetView {
        set: redact(set),
        scope_values,
    })
}

fn owner_name(owner: &Owner) -> String {
    match owner {
        Owner::Project(p) => format!("project {}", p.name),
        Owner::Library(l) => format!("library variable set {}", l.name),
    }
}

/// Checks names and scopes, resolving environment and channel names to ids so
/// that what is stored always names things by id.
async fn check_variables(
    store: &Store,
    space_id: &str,
    owner: &Owner,
    variables: &mut [Variable],
) -> Result<()> {
    let in_space = DocumentQuery::in_space(space_id);
    let environments = store.list::<Environment>(&in_space).await?.items;
    let machines: Vec<(String, String)> = store
        .list::<Machine>(&in_space)
        .await?
        .items
        .into_iter()
        .map(|m| (m.id, m.name))
        .collect();
    let (channels, actions) = match owner {
        Owner::Project(p) => {
            let owned = DocumentQuery {
                parent_ids: vec![p.id.clone()],
                ..Default::default()
            };
            let channels = store.list::<Channel>(&owned).await?.items;
            let process = process_of_project(store, space_id, &p.id).await?;
            let actions: Vec<(String, String)> = process
                .steps
                .iter()
                .flat_map(|s| s.actions.iter().map(|a| (a.id.clone(), a.name.clone())))
                .collect();
            (Some(channels), Some(actions))
        }
        Owner::Library(_) => (None, None),
    };
    let mut errors = vec![];
    for v in variables.iter_mut() {
        let label = if v.name.trim().is_empty() {
            "A variable".to_owned()
        } else {
            format!("The variable '{}'", v.name.trim())
        };
        check_name("variable", &v.name, &mut errors);
        // Stored in its canonical spelling: every later check (is it
        // sensitive? is it an account?) compares exactly.
        if v.kind.trim().is_empty() {
            v.kind = "String".into();
        }
        match canonical_variable_type(&v.kind) {
            Some(kind) => v.kind = kind.to_owned(),
            None => errors.push(format!(
                "{label} has the unknown type '{}'; the types are {}",
                v.kind,
                VARIABLE_TYPES.join(", ")
            )),
        }
        let scope: &mut VariableScope = &mut v.scope;
        resolve(
            &mut scope.environment,
            &environments
                .iter()
                .map(|e| (e.id.clone(), e.name.clone()))
                .collect::<Vec<_>>(),
            &label,
            "environment",
            &mut errors,
        );
        match &channels {
            Some(channels) => resolve(
                &mut scope.channel,
                &channels
                    .iter()
                    .map(|c| (c.id.clone(), c.name.clone()))
                    .collect::<Vec<_>>(),
                &label,
                "channel",
                &mut errors,
            ),
            None if !scope.channel.is_empty() => errors.push(format!(
                "{label} is scoped to channels, which library variable sets cannot do"
            )),
            None => {}
        }
        match &actions {
            Some(actions) => resolve(&mut scope.action, actions, &label, "step", &mut errors),
            None if !scope.action.is_empty() => errors.push(format!(
                "{label} is scoped to steps, which library variable sets cannot do"
            )),
            None => {}
        }
        resolve(
            &mut scope.machine,
            &machines,
            &label,
            "deployment target",
            &mut errors,
        );
        for (dimension, values) in [("role", &scope.role), ("tenant tag", &scope.tenant_tag)] {
            if values.iter().any(|r| r.trim().is_empty()) {
                errors.push(format!("{label} has an empty {dimension} in its scope"));
            }
        }
        if v.prompt.as_ref().is_some_and(|p| p.label.trim().is_empty()) {
            if let Some(p) = v.prompt.as_mut() {
                p.label = v.name.trim().to_owned();
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

/// Replaces names by ids in one scope dimension, reporting values that name
/// nothing that exists.
fn resolve(
    values: &mut [String],
    known: &[(String, String)],
    label: &str,
    kind: &str,
    errors: &mut Vec<String>,
) {
    for value in values.iter_mut() {
        let found = known
            .iter()
            .find(|(id, _)| id == value)
            .or_else(|| known.iter().find(|(_, n)| n.eq_ignore_ascii_case(value)));
        match found {
            Some((id, _)) => *value = id.clone(),
            None => errors.push(format!(
                "{label} is scoped to the {kind} '{value}', which does not exist"
            )),
        }
    }
}

// Library variable sets.

fn check_library(set: &LibraryVariableSet) -> Result<()> {
    let mut errors = vec![];
    check_name("library variable set", &set.name, &mut errors);
    if !set.content_type.is_empty() && set.content_type != "Variables" {
        errors.push(format!(
            "ContentType '{}' is not supported; library variable sets hold Variables",
            set.content_type
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

pub async fn create_library_variable_set(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    mut set: LibraryVariableSet,
) -> Result<LibraryVariableSet> {
    check_library(&set)?;
    let mut tx = store.begin().await?;
    set.id = tx.next_id(Collection::LibraryVariableSets).await?;
    set.space_id = space_id.into();
    set.name = set.name.trim().to_owned();
    set.content_type = "Variables".into();
    set.variable_set_id = library_variable_set_id_for(&set.id);
    tx.insert(&set).await?;
    tx.insert(&VariableSet {
        id: set.variable_set_id.clone(),
        space_id: space_id.into(),
        owner_id: set.id.clone(),
        version: 0,
        variables: vec![],
    })
    .await?;
    audit_change(
        &mut tx,
        caller,
        None,
        Some(&set),
        format!("library variable set {} was created", set.name),
        vec![],
    )
    .await?;
    tx.commit().await?;
    Ok(set)
}

pub async fn update_library_variable_set(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut set: LibraryVariableSet,
) -> Result<LibraryVariableSet> {
    let existing: LibraryVariableSet = get_in_space(store, space_id, id).await?;
    check_library(&set)?;
    set.id = existing.id.clone();
    set.space_id = existing.space_id.clone();
    set.name = set.name.trim().to_owned();
    set.content_type = existing.content_type.clone();
    set.variable_set_id = existing.variable_set_id.clone();
    let mut tx = store.begin().await?;
    tx.update(&set).await?;
    audit_change(
        &mut tx,
        caller,
        Some(&existing),
        Some(&set),
        format!("library variable set {} was modified", set.name),
        vec![],
    )
    .await?;
    tx.commit().await?;
    Ok(set)
}

/// Deletes a library variable set that no project includes any more; while
/// projects include it, deleting it would silently change their deployments.
pub async fn delete_library_variable_set(
    store: &Store,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<()> {
    let set: LibraryVariableSet = get_in_space(store, space_id, id).await?;
    let in_space = DocumentQuery::in_space(space_id);
    let users: Vec<String> = store
        .list::<Project>(&in_space)
        .await?
        .items
        .into_iter()
        .filter(|p| p.included_library_variable_set_ids.contains(&set.id))
        .map(|p| p.name)
        .collect();
    if !users.is_empty() {
        return Err(ServiceError::bad_request(format!(
            "The library variable set '{}' is included by the projects {}; remove it from them first",
            set.name,
            users.join(", ")
        )));
    }
    let mut tx = store.begin().await?;
    if tx.get::<VariableSet>(&set.variable_set_id).await?.is_some() {
        tx.delete::<VariableSet>(&set.variable_set_id).await?;
    }
    tx.delete::<LibraryVariableSet>(&set.id).await?;
    audit_change(
        &mut tx,
        caller,
        Some(&set),
        None,
        format!("library variable set {} was deleted", set.name),
        vec![],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Checks that every library variable set a project includes exists.
pub async fn check_included_sets(store: &Store, space_id: &str, project: &Project) -> Result<()> {
    let mut errors = vec![];
    for id in &project.included_library_variable_set_ids {
        if get_in_space::<LibraryVariableSet>(store, space_id, id)
            .await
            .is_err()
        {
            errors.push(format!("The library variable set '{id}' does not exist"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

/// The variables a new release freezes: those of each included library set, in
/// the order the project includes them, then the project's own (so that at equal
/// specificity the project's value wins). Sensitive values stay sealed.
pub async fn variables_for_release(store: &Store, project: &Project) -> Result<Vec<Variable>> {
    let mut all = vec![];
    for library_id in &project.included_library_variable_set_ids {
        let set_id = library_variable_set_id_for(library_id);
        if let Some(set) = store.get::<VariableSet>(&set_id).await? {
            all.extend(set.variables);
        }
    }
    if let Some(set) = store.get::<VariableSet>(&project.variable_set_id).await? {
        all.extend(set.variables);
    }
    Ok(all)
}
