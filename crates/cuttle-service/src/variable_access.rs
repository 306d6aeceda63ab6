//! Which variables a caller may see and change, as Octopus scopes them: a
//! variable scoped to environments needs `VariableView` (`VariableEdit`)
//! in one of them; one without an environment scope needs
//! `VariableViewUnscoped` (`VariableEditUnscoped`), or the plain permission
//! from a grant not narrowed to environments.

use crate::variables::VariableSetView;
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::variables::SENSITIVE_TYPE;
use cuttle_model::{Permission, Permissions, Scope, Variable};
use std::collections::HashSet;

/// Where a set's variables are checked: its project, or for a library
/// variable set, its space.
pub fn scope_of_set<'a>(space_id: &'a str, owner_id: &'a str) -> Scope<'a> {
    let scope = Scope::space(space_id);
    match owner_id.starts_with(Collection::Projects.prefix()) {
        true => scope.project(owner_id),
        false => scope,
    }
}

fn sees(perms: &Permissions, scope: &Scope, v: &Variable) -> bool {
    perms.allows_variable(
        Permission::VariableView,
        Permission::VariableViewUnscoped,
        scope,
        &v.scope.environment,
    )
}

fn edits(perms: &Permissions, scope: &Scope, v: &Variable) -> bool {
    perms.allows_variable(
        Permission::VariableEdit,
        Permission::VariableEditUnscoped,
        scope,
        &v.scope.environment,
    )
}

/// Removes from `view` the variables the caller may not see.
pub fn retain_visible(perms: &Permissions, space_id: &str, view: &mut VariableSetView) {
    let owner = view.set.owner_id.clone();
    let scope = scope_of_set(space_id, &owner);
    view.set.variables.retain(|v| sees(perms, &scope, v));
}

/// The variables to store when a caller sends `incoming`, which holds only
/// what they could see: the variables hidden from them are kept as stored,
/// and each variable they add, change or remove must be one they may edit
/// (before and after the change). `existing` is the stored set; names of
/// scopes in `incoming` are already resolved to ids.
pub fn within_edit_scope(
    perms: &Permissions,
    scope: &Scope,
    existing: &[Variable],
    incoming: Vec<Variable>,
) -> Result<Vec<Variable>> {
    if perms.administrator {
        return Ok(incoming);
    }
    let hidden: Vec<&Variable> = existing.iter().filter(|v| !sees(perms, scope, v)).collect();
    let mut sent = HashSet::new();
    let mut out = Vec::with_capacity(incoming.len() + hidden.len());
    for mut v in incoming {
        // An id the caller cannot have seen names a new variable.
        if hidden.iter().any(|h| h.id == v.id) {
            v.id.clear();
        }
        let before = existing.iter().find(|e| !v.id.is_empty() && e.id == v.id);
        let allowed = match before {
            Some(e) => unchanged(e, &v) || (edits(perms, scope, e) && edits(perms, scope, &v)),
            None => edits(perms, scope, &v),
        };
        if !allowed {
            return Err(refusal(scope, before.unwrap_or(&v)));
        }
        if !v.id.is_empty() {
            sent.insert(v.id.clone());
        }
        out.push(v);
    }
    for e in existing {
        if sees(perms, scope, e) && !sent.contains(&e.id) && !edits(perms, scope, e) {
            return Err(refusal(scope, e));
        }
    }
    // Sensitive values go back as clients send them, null, so that the
    // stored (sealed) value is kept rather than sealed again.
    out.extend(hidden.into_iter().map(|h| {
        let mut h = h.clone();
        if h.sensitive() {
            h.value = None;
        }
        h
    }));
    Ok(out)
}

/// Whether `sent` is `stored` as the caller saw it (a sensitive value comes
/// back as null).
fn unchanged(stored: &Variable, sent: &Variable) -> bool {
    let mut sent = sent.clone();
    sent.name = sent.name.trim().to_owned();
    if sent.sensitive() {
        sent.is_sensitive = true;
        sent.kind = SENSITIVE_TYPE.into();
        if sent.value.is_none() {
            sent.value = stored.value.clone();
        }
    }
    sent == *stored
}

fn refusal(scope: &Scope, v: &Variable) -> ServiceError {
    let p = match v.scope.environment.is_empty() {
        true => Permission::VariableEditUnscoped,
        false => Permission::VariableEdit,
    };
    let at = match v.scope.environment.as_slice() {
        [] => scope.to_string(),
        envs => format!("{scope}, environments {}", envs.join(", ")),
    };
    ServiceError::Forbidden(format!(
        "You do not have permission to perform this action. Missing permission: {p} ({at}), \
         needed to change the variable '{}'",
        v.name.trim()
    ))
}
