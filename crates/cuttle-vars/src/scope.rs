//! Which value of a variable applies where: scope matching and Octopus's
//! precedence ("specificity") between the values that match.
//!
//! # Rules
//!
//! A value *applies* to a [`ScopeContext`] when, for every dimension its
//! scope lists values in, the context has one of them. Within a dimension
//! the listed values are alternatives (OR); across dimensions all must match
//! (AND). A dimension the context leaves empty matches no scoped value: a
//! value scoped to a machine never applies at the deployment level.
//! Comparison ignores case, so a context holding both an id and a name
//! matches scopes written either way.
//!
//! Among the values of one name that apply, the most specific wins. Each
//! dimension has a rank; from most to least specific (Octopus's documented
//! order, see "Scope specificity" in octopus.com/docs/projects/variables):
//!
//! 1. the current step/action
//! 2. the current machine (deployment target)
//! 3. a role of the machine that the current step also targets
//! 4. a role of the machine
//! 5. a tenant tag
//! 6. the environment
//! 7. the channel
//! 8. the process (deployment process or runbook)
//! 9. no scope
//!
//! Specificity compares dimension by dimension from the top: the first
//! dimension in which one value is scoped and the other is not decides. So a
//! value scoped to Machine beats one scoped to Role + Environment + Channel,
//! and Machine + Environment beats Machine alone. This is what Octopus's own
//! ranking does (a weight per dimension, each outweighing all those below
//! it; octopus.com/blog/variable-specificity-and-complexity). How many values
//! a dimension lists does not matter: Environment [Dev, Test] and
//! Environment [Dev] are equally specific.
//!
//! Octopus leaves a tie between equally specific values unspecified. Cuttle
//! makes it deterministic: the value defined *last* wins, so a later library
//! set or a later row overrides an earlier one.

use std::collections::HashMap;

use cuttle_model::{ScopeValues, Variable, VariableScope};
use serde_json::Value;

use crate::VariableDictionary;

/// Where variables are being evaluated: the values of each scope dimension
/// that hold there. Give an id, a name or both for each; a scope written
/// with either matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeContext {
    /// The target environment's id and/or name.
    pub environment: Vec<String>,
    /// The deployment target's id and/or name.
    pub machine: Vec<String>,
    /// Every role (target tag) the deployment target has.
    pub roles: Vec<String>,
    /// The roles the current step targets. A role scope that matches one of
    /// these as well as one of `roles` ranks above a role the step ignores.
    pub step_roles: Vec<String>,
    /// The current step's or action's id and/or name.
    pub action: Vec<String>,
    /// The release's channel, id and/or name.
    pub channel: Vec<String>,
    /// The tenant's tags (`TagSet/Tag`).
    pub tenant_tags: Vec<String>,
    /// The deployment process or runbook being run, id and/or name.
    pub process_owner: Vec<String>,
}

impl ScopeContext {
    /// Adds, for every value the context names, its other spelling from a
    /// variable set's `ScopeValues` (a name's id, an id's name), so that
    /// `--environment Production` matches a scope that says `Environments-2`.
    pub fn expanded(&self, known: &ScopeValues) -> ScopeContext {
        fn expand(values: &[String], items: &[cuttle_model::ReferenceItem]) -> Vec<String> {
            let mut out = values.to_vec();
            for v in values {
                for item in items {
                    if same(v, &item.id) || same(v, &item.name) {
                        for alias in [&item.id, &item.name] {
                            if !alias.is_empty() && !out.iter().any(|o| same(o, alias)) {
                                out.push(alias.clone());
                            }
                        }
                    }
                }
            }
            out
        }
        ScopeContext {
            environment: expand(&self.environment, &known.environments),
            machine: expand(&self.machine, &known.machines),
            roles: expand(&self.roles, &known.roles),
            step_roles: expand(&self.step_roles, &known.roles),
            action: expand(&self.action, &known.actions),
            channel: expand(&self.channel, &known.channels),
            tenant_tags: expand(&self.tenant_tags, &known.tenant_tags),
            process_owner: expand(&self.process_owner, &known.processes),
        }
    }
}

/// How specific an applicable scope is; greater is more specific. Each bit
/// is one rank of the module's list, so comparing the integers compares
/// dimension by dimension from the most specific.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Specificity(u16);

impl Specificity {
    const ACTION: u16 = 1 << 7;
    const MACHINE: u16 = 1 << 6;
    const STEP_ROLE: u16 = 1 << 5;
    const ROLE: u16 = 1 << 4;
    const TENANT_TAG: u16 = 1 << 3;
    const ENVIRONMENT: u16 = 1 << 2;
    const CHANNEL: u16 = 1 << 1;
    const PROCESS_OWNER: u16 = 1;

    /// The specificity of a value with no scope at all.
    pub const UNSCOPED: Specificity = Specificity(0);
}

fn same(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

fn contains(haystack: &[String], needle: &str) -> bool {
    haystack.iter().any(|h| same(h, needle))
}

/// Whether the scope admits the context in one dimension: unscoped (`None`,
/// no contribution) or one listed value held by the context.
fn dimension(listed: &[String], held: &[String], bit: u16) -> Option<u16> {
    if listed.is_empty() {
        Some(0)
    } else if listed.iter().any(|l| contains(held, l)) {
        Some(bit)
    } else {
        None
    }
}

/// How specific `scope` is in `context`, or `None` when it does not apply.
pub fn specificity(scope: &VariableScope, context: &ScopeContext) -> Option<Specificity> {
    let role = if scope.role.is_empty() {
        0
    } else {
        let held: Vec<&String> = scope
            .role
            .iter()
            .filter(|r| contains(&context.roles, r))
            .collect();
        if held.is_empty() {
            return None;
        } else if held.iter().any(|r| contains(&context.step_roles, r)) {
            Specificity::STEP_ROLE
        } else {
            Specificity::ROLE
        }
    };
    Some(Specificity(
        role | dimension(&scope.action, &context.action, Specificity::ACTION)?
            | dimension(&scope.machine, &context.machine, Specificity::MACHINE)?
            | dimension(
                &scope.tenant_tag,
                &context.tenant_tags,
                Specificity::TENANT_TAG,
            )?
            | dimension(
                &scope.environment,
                &context.environment,
                Specificity::ENVIRONMENT,
            )?
            | dimension(&scope.channel, &context.channel, Specificity::CHANNEL)?
            | dimension(
                &scope.process_owner,
                &context.process_owner,
                Specificity::PROCESS_OWNER,
            )?,
    ))
}

/// Whether a value with this scope applies in `context`.
pub fn applies(scope: &VariableScope, context: &ScopeContext) -> bool {
    specificity(scope, context).is_some()
}

/// The winning value of each name in `context`, in the order the names
/// first applied. Names compare case-insensitively, as in templates.
pub fn select<'a>(variables: &'a [Variable], context: &ScopeContext) -> Vec<&'a Variable> {
    let mut winners: Vec<(&Variable, Specificity)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for variable in variables {
        let Some(rank) = specificity(&variable.scope, context) else {
            continue;
        };
        match index.get(&variable.name.to_lowercase()) {
            // `>=`: among equals the later definition wins (see module docs).
            Some(&i) if rank >= winners[i].1 => winners[i] = (variable, rank),
            Some(_) => {}
            None => {
                index.insert(variable.name.to_lowercase(), winners.len());
                winners.push((variable, rank));
            }
        }
    }
    winners.into_iter().map(|(v, _)| v).collect()
}

/// The variables that hold in `context`, one value per name. A value that was
/// never set (or a sensitive one withheld by the API) resolves to the empty
/// string, as in Octopus.
pub fn resolve(variables: &[Variable], context: &ScopeContext) -> VariableDictionary {
    let mut dict = VariableDictionary::new();
    for v in select(variables, context) {
        dict.set(v.name.clone(), v.value.clone().unwrap_or_default());
    }
    dict
}

/// An Octopus-style variable list: the variables and, when the input had
/// them, the names behind the ids their scopes use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VariableList {
    pub variables: Vec<Variable>,
    pub scope_values: ScopeValues,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VariableListError {
    #[error("expected an array of variables or an object with a Variables array, found {0}")]
    Shape(&'static str),
    #[error("variable {index}: {reason}")]
    Variable { index: usize, reason: String },
    #[error(
        "variable {index} ({name}): scope '{dimension}' is not supported \
         (supported: Environment, Role, Machine, Action, Channel, TenantTag, ProcessOwner)"
    )]
    UnsupportedScope {
        index: usize,
        name: String,
        dimension: String,
    },
}

const SCOPE_KEYS: [&str; 7] = [
    "Environment",
    "Role",
    "Machine",
    "Action",
    "Channel",
    "TenantTag",
    "ProcessOwner",
];

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `json` has the shape [`variable_list`] reads: an array, or an
/// object whose `Variables` is an array of objects (the shape of
/// `GET /api/{space}/variables/{id}`).
pub fn is_variable_list(json: &Value) -> bool {
    match json {
        Value::Array(_) => true,
        Value::Object(map) => matches!(
            map.get("Variables"),
            Some(Value::Array(items)) if items.iter().all(Value::is_object)
        ),
        _ => false,
    }
}

/// Reads an Octopus-style variable list: a JSON array of
/// `{Name, Value, Scope: {Environment: […], Role: […], …}, IsSensitive, Type}`,
/// or a variable set object holding one in `Variables` (its `ScopeValues`,
/// if any, are kept for [`ScopeContext::expanded`]).
///
/// A scope dimension Cuttle does not know (e.g. `Tenant`) is an error rather
/// than ignored: ignoring it would widen the value to places it was never
/// meant for.
pub fn variable_list(json: &Value) -> Result<VariableList, VariableListError> {
    let (items, scope_values) = match json {
        Value::Array(items) => (items, ScopeValues::default()),
        Value::Object(map) => match map.get("Variables") {
            Some(Value::Array(items)) => {
                // Only a convenience for matching names to ids: a malformed
                // ScopeValues is skipped, not fatal.
                let known = map
                    .get("ScopeValues")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                (items, known)
            }
            Some(other) => return Err(VariableListError::Shape(kind_of(other))),
            None => return Err(VariableListError::Shape("an object without Variables")),
        },
        other => return Err(VariableListError::Shape(kind_of(other))),
    };

    let mut variables = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let bad = |reason: String| VariableListError::Variable { index, reason };
        let Value::Object(fields) = item else {
            return Err(bad(format!("expected an object, found {}", kind_of(item))));
        };
        let name = fields
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name.trim().is_empty() {
            return Err(bad("has no Name".into()));
        }
        if let Some(scope) = fields.get("Scope") {
            match scope {
                Value::Object(dims) => {
                    if let Some(unknown) = dims.keys().find(|k| !SCOPE_KEYS.contains(&k.as_str())) {
                        return Err(VariableListError::UnsupportedScope {
                            index,
                            name: name.to_owned(),
                            dimension: unknown.clone(),
                        });
                    }
                }
                Value::Null => {}
                other => {
                    return Err(bad(format!(
                        "{name}: Scope must be an object, found {}",
                        kind_of(other)
                    )))
                }
            }
        }
        let mut item = item.clone();
        // `"Scope": null` means unscoped, which the model spells `{}`.
        if let Some(Value::Null) = item.get("Scope") {
            if let Value::Object(m) = &mut item {
                m.remove("Scope");
            }
        }
        let variable: Variable =
            serde_json::from_value(item).map_err(|e| bad(format!("{name}: {e}")))?;
        variables.push(variable);
    }
    Ok(VariableList {
        variables,
        scope_values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn var(name: &str, value: &str, scope: VariableScope) -> Variable {
        Variable {
            scope,
            ..Variable::new(name, value)
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    /// Production, machine web01 (Machines-1) with roles web and db, step
    /// "Deploy web" (which targets web), channel Hotfix, tenant tag
    /// Region/EU, process Deployment.
    fn production_web01() -> ScopeContext {
        ScopeContext {
            environment: strings(&["Environments-2", "Production"]),
            machine: strings(&["Machines-1", "web01"]),
            roles: strings(&["web", "db"]),
            step_roles: strings(&["web"]),
            action: strings(&["Deploy web"]),
            channel: strings(&["Hotfix"]),
            tenant_tags: strings(&["Region/EU"]),
            process_owner: strings(&["deploymentprocess-Projects-1"]),
        }
    }

    fn scope(f: impl FnOnce(&mut VariableScope)) -> VariableScope {
        let mut s = VariableScope::default();
        f(&mut s);
        s
    }

    fn winner(variables: &[Variable], context: &ScopeContext) -> String {
        resolve(variables, context)
            .get("X")
            .unwrap_or("<none>")
            .to_owned()
    }

    #[test]
    fn unscoped_always_applies() {
        assert!(applies(&VariableScope::default(), &ScopeContext::default()));
        assert_eq!(
            specificity(&VariableScope::default(), &production_web01()),
            Some(Specificity::UNSCOPED)
        );
    }

    #[test]
    fn a_listed_dimension_needs_one_of_its_values() {
        let ctx = production_web01();
        let env = |names: &[&str]| scope(|s| s.environment = strings(names));
        assert!(applies(&env(&["Test", "Production"]), &ctx));
        assert!(!applies(&env(&["Test", "Dev"]), &ctx));
        // Ids and names both match, names regardless of case.
        assert!(applies(&env(&["environments-2"]), &ctx));
        assert!(applies(&env(&["PRODUCTION"]), &ctx));
    }

    #[test]
    fn every_scoped_dimension_must_match() {
        let ctx = production_web01();
        let both = scope(|s| {
            s.environment = strings(&["Production"]);
            s.machine = strings(&["web02"]);
        });
        assert!(!applies(&both, &ctx));
        let both = scope(|s| {
            s.environment = strings(&["Production"]);
            s.machine = strings(&["web01"]);
        });
        assert!(applies(&both, &ctx));
    }

    #[test]
    fn each_dimension_checks_its_own_context() {
        let ctx = production_web01();
        let cases: [(&str, VariableScope, VariableScope); 7] = [
            (
                "role",
                scope(|s| s.role = strings(&["db"])),
                scope(|s| s.role = strings(&["cache"])),
            ),
            (
                "machine",
                scope(|s| s.machine = strings(&["WEB01"])),
                scope(|s| s.machine = strings(&["web02"])),
            ),
            (
                "action",
                scope(|s| s.action = strings(&["deploy web"])),
                scope(|s| s.action = strings(&["Migrate"])),
            ),
            (
                "channel",
                scope(|s| s.channel = strings(&["Hotfix"])),
                scope(|s| s.channel = strings(&["Default"])),
            ),
            (
                "tenant tag",
                scope(|s| s.tenant_tag = strings(&["Region/EU"])),
                scope(|s| s.tenant_tag = strings(&["Region/US"])),
            ),
            (
                "process",
                scope(|s| s.process_owner = strings(&["deploymentprocess-Projects-1"])),
                scope(|s| s.process_owner = strings(&["Runbooks-1"])),
            ),
            (
                "environment",
                scope(|s| s.environment = strings(&["production"])),
                scope(|s| s.environment = strings(&["Dev"])),
            ),
        ];
        for (what, yes, no) in cases {
            assert!(applies(&yes, &ctx), "{what} should match");
            assert!(!applies(&no, &ctx), "{what} should not match");
        }
    }

    #[test]
    fn a_dimension_missing_from_the_context_matches_no_scoped_value() {
        // Deployment-level evaluation: no machine, no step.
        let ctx = ScopeContext {
            environment: strings(&["Production"]),
            ..Default::default()
        };
        assert!(!applies(&scope(|s| s.machine = strings(&["web01"])), &ctx));
        assert!(!applies(&scope(|s| s.role = strings(&["web"])), &ctx));
        assert!(!applies(
            &scope(|s| s.action = strings(&["Deploy web"])),
            &ctx
        ));
        let vars = [
            var("X", "unscoped", VariableScope::default()),
            var("X", "machine", scope(|s| s.machine = strings(&["web01"]))),
        ];
        assert_eq!(winner(&vars, &ctx), "unscoped");
    }

    #[test]
    fn precedence_follows_the_documented_order() {
        // Most specific first; each beats every one after it, whatever the order
        // they are defined in.
        let ranked: Vec<(&str, VariableScope)> = vec![
            ("action", scope(|s| s.action = strings(&["Deploy web"]))),
            ("machine", scope(|s| s.machine = strings(&["web01"]))),
            ("step role", scope(|s| s.role = strings(&["web"]))),
            ("role", scope(|s| s.role = strings(&["db"]))),
            (
                "tenant tag",
                scope(|s| s.tenant_tag = strings(&["Region/EU"])),
            ),
            (
                "environment",
                scope(|s| s.environment = strings(&["Production"])),
            ),
            ("channel", scope(|s| s.channel = strings(&["Hotfix"]))),
            (
                "process",
                scope(|s| s.process_owner = strings(&["deploymentprocess-Projects-1"])),
            ),
            ("unscoped", VariableScope::default()),
        ];
        let ctx = production_web01();
        for (i, (higher, higher_scope)) in ranked.iter().enumerate() {
            for (lower, lower_scope) in &ranked[i + 1..] {
                let a = var("X", higher, higher_scope.clone());
                let b = var("X", lower, lower_scope.clone());
                assert_eq!(
                    winner(&[a.clone(), b.clone()], &ctx),
                    *higher,
                    "{higher} over {lower}"
                );
                assert_eq!(
                    winner(&[b, a], &ctx),
                    *higher,
                    "{higher} over {lower}, defined last"
                );
            }
        }
    }

    #[test]
    fn more_dimensions_beat_fewer_at_the_same_top_rank() {
        let ctx = production_web01();
        let vars = [
            var(
                "X",
                "machine+env",
                scope(|s| {
                    s.machine = strings(&["web01"]);
                    s.environment = strings(&["Production"]);
                }),
            ),
            var("X", "machine", scope(|s| s.machine = strings(&["web01"]))),
        ];
        assert_eq!(winner(&vars, &ctx), "machine+env");

        let vars = [
            var(
                "X",
                "env",
                scope(|s| s.environment = strings(&["Production"])),
            ),
            var(
                "X",
                "env+channel",
                scope(|s| {
                    s.environment = strings(&["Production"]);
                    s.channel = strings(&["Hotfix"]);
                }),
            ),
            var("X", "channel", scope(|s| s.channel = strings(&["Hotfix"]))),
        ];
        assert_eq!(winner(&vars, &ctx), "env+channel");
    }

    #[test]
    fn a_higher_dimension_beats_any_number_of_lower_ones() {
        let ctx = production_web01();
        let vars = [
            var("X", "machine", scope(|s| s.machine = strings(&["web01"]))),
            var(
                "X",
                "role+env+channel+tag",
                scope(|s| {
                    s.role = strings(&["web"]);
                    s.environment = strings(&["Production"]);
                    s.channel = strings(&["Hotfix"]);
                    s.tenant_tag = strings(&["Region/EU"]);
                }),
            ),
        ];
        assert_eq!(winner(&vars, &ctx), "machine");
    }

    #[test]
    fn a_role_the_step_targets_beats_another_role_of_the_machine() {
        let ctx = production_web01();
        let vars = [
            var("X", "web", scope(|s| s.role = strings(&["web"]))),
            var("X", "db", scope(|s| s.role = strings(&["db"]))),
        ];
        assert_eq!(winner(&vars, &ctx), "web");
        // Without step roles the two are equal and the later one wins.
        let ctx = ScopeContext {
            step_roles: vec![],
            ..production_web01()
        };
        assert_eq!(winner(&vars, &ctx), "db");
    }

    #[test]
    fn the_number_of_listed_values_does_not_change_specificity() {
        let ctx = production_web01();
        let wide = scope(|s| s.environment = strings(&["Test", "Production"]));
        let narrow = scope(|s| s.environment = strings(&["Production"]));
        assert_eq!(specificity(&wide, &ctx), specificity(&narrow, &ctx));
    }

    #[test]
    fn equally_specific_values_resolve_to_the_last_defined() {
        let ctx = production_web01();
        let staging_prod = scope(|s| s.environment = strings(&["Staging", "Production"]));
        let prod = scope(|s| s.environment = strings(&["Production"]));
        let vars = [
            var("X", "DB01", staging_prod.clone()),
            var("X", "DB03", prod.clone()),
        ];
        assert_eq!(winner(&vars, &ctx), "DB03");
        let vars = [var("X", "DB03", prod), var("X", "DB01", staging_prod)];
        assert_eq!(winner(&vars, &ctx), "DB01");
        // Unscoped duplicates too.
        let vars = [
            var("X", "first", VariableScope::default()),
            var("x", "second", VariableScope::default()),
        ];
        assert_eq!(winner(&vars, &ctx), "second");
    }

    #[test]
    fn names_are_case_insensitive_and_keep_first_applicable_order() {
        let ctx = production_web01();
        let vars = [
            var("B", "b", VariableScope::default()),
            var(
                "Skipped",
                "no",
                scope(|s| s.environment = strings(&["Dev"])),
            ),
            var("a", "a-unscoped", VariableScope::default()),
            var(
                "A",
                "a-prod",
                scope(|s| s.environment = strings(&["Production"])),
            ),
        ];
        let dict = resolve(&vars, &ctx);
        let got: Vec<(&str, &str)> = dict.iter().collect();
        assert_eq!(got, vec![("B", "b"), ("A", "a-prod")]);
        assert_eq!(dict.get("a"), Some("a-prod"));
        assert_eq!(dict.get("Skipped"), None);
    }

    #[test]
    fn unset_values_resolve_to_empty() {
        let vars = [Variable {
            name: "Secret".into(),
            value: None,
            is_sensitive: true,
            ..Variable::default()
        }];
        assert_eq!(
            resolve(&vars, &ScopeContext::default()).get("Secret"),
            Some("")
        );
    }

    #[test]
    fn select_returns_the_winning_variables() {
        let ctx = production_web01();
        let vars = [
            var(
                "Password",
                "dev",
                scope(|s| s.environment = strings(&["Dev"])),
            ),
            Variable {
                is_sensitive: true,
                ..var(
                    "Password",
                    "prod",
                    scope(|s| s.environment = strings(&["Production"])),
                )
            },
        ];
        let won = select(&vars, &ctx);
        assert_eq!(won.len(), 1);
        assert!(won[0].sensitive());
        assert_eq!(won[0].value.as_deref(), Some("prod"));
    }

    #[test]
    fn reads_an_array_of_octopus_variables() {
        let json = json!([
            {"Name": "Greeting", "Value": "Hello", "Scope": {}},
            {"Name": "Greeting", "Value": "Hi prod", "Scope": {"Environment": ["Environments-2"], "Role": ["web"]},
             "IsSensitive": false, "Type": "String", "Id": "abc"},
            {"Name": "Password", "Value": null, "IsSensitive": true, "Type": "Sensitive", "Scope": null},
        ]);
        let list = variable_list(&json).expect("valid list");
        assert_eq!(list.variables.len(), 3);
        assert_eq!(
            list.variables[1].scope.environment,
            strings(&["Environments-2"])
        );
        assert_eq!(list.variables[1].scope.role, strings(&["web"]));
        assert!(list.variables[2].sensitive());
        assert!(list.variables[2].scope.is_empty());
    }

    #[test]
    fn reads_a_variable_set_with_scope_values() {
        let json = json!({
            "Id": "variableset-Projects-1",
            "Variables": [
                {"Name": "Greeting", "Value": "Hello"},
                {"Name": "Greeting", "Value": "Hi prod", "Scope": {"Environment": ["Environments-2"]}},
            ],
            "ScopeValues": {"Environments": [{"Id": "Environments-2", "Name": "Production"}], "Machines": []},
        });
        assert!(is_variable_list(&json));
        let list = variable_list(&json).expect("valid set");
        let ctx = ScopeContext {
            environment: strings(&["production"]),
            ..Default::default()
        };
        // Without the names the id-scoped value cannot match a name...
        assert_eq!(
            resolve(&list.variables, &ctx).get("Greeting"),
            Some("Hello")
        );
        // ...with them it does. ("Production" is already there, in another case.)
        let ctx = ctx.expanded(&list.scope_values);
        assert_eq!(ctx.environment, strings(&["production", "Environments-2"]));
        assert_eq!(
            resolve(&list.variables, &ctx).get("Greeting"),
            Some("Hi prod")
        );
    }

    #[test]
    fn rejects_what_is_not_a_variable_list() {
        assert_eq!(
            variable_list(&json!(3)),
            Err(VariableListError::Shape("a number"))
        );
        assert_eq!(
            variable_list(&json!({"Name": "x"})),
            Err(VariableListError::Shape("an object without Variables"))
        );
        assert!(matches!(
            variable_list(&json!([{"Name": "A"}, "B"])),
            Err(VariableListError::Variable { index: 1, .. })
        ));
        assert!(matches!(
            variable_list(&json!([{"Value": "x"}])),
            Err(VariableListError::Variable { index: 0, .. })
        ));
        let err = variable_list(&json!([{"Name": "A", "Value": 5}])).expect_err("number value");
        assert!(
            err.to_string().starts_with("variable 0: A: invalid type"),
            "{err}"
        );
        let err = variable_list(&json!([{"Name": "A", "Scope": ["Production"]}]))
            .expect_err("array scope");
        assert!(err.to_string().contains("Scope must be an object"), "{err}");
    }

    #[test]
    fn an_unsupported_scope_dimension_is_an_error_not_ignored() {
        let err = variable_list(&json!([{"Name": "A", "Scope": {"Tenant": ["Tenants-1"]}}]))
            .expect_err("tenant");
        assert_eq!(
            err,
            VariableListError::UnsupportedScope {
                index: 0,
                name: "A".into(),
                dimension: "Tenant".into()
            }
        );
    }

    #[test]
    fn tells_variable_lists_from_plain_objects() {
        assert!(is_variable_list(&json!([])));
        assert!(is_variable_list(&json!({"Variables": [{"Name": "A"}]})));
        assert!(!is_variable_list(&json!({"Name": "World"})));
        // A plain variable that happens to be called Variables.
        assert!(!is_variable_list(&json!({"Variables": ["a", "b"]})));
        assert!(!is_variable_list(&json!({"Variables": "x"})));
    }
}
