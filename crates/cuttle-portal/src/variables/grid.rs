//! The variables grid: one form for a whole set, its rows posted as indexed
//! fields (`v[3].Name`, `v[3].Environment` repeated for a multi-select), so
//! it works as a plain form post. Rows come from the stored set or from what
//! was typed; either way they become the full set the service saves.

use cuttle_model::{ReferenceItem, ScopeValues, Variable, VariableScope};
use maud::{html, Markup, PreEscaped};
use std::collections::BTreeMap;

/// The suggestions for a row's roles: those the process's steps target.
const ROLES_LIST: &str = "var-roles";

/// The hidden field carrying the version the form was loaded at.
pub const VERSION_FIELD: &str = "Version";

/// One row of the editor, as stored or as typed.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub id: String,
    pub name: String,
    /// Never a stored sensitive value: those stay on the server.
    pub value: String,
    pub sensitive: bool,
    /// The variable is stored with a sensitive value; a blank field keeps it.
    pub has_secret: bool,
    /// A sensitive value was typed but is not sent back to the browser, so
    /// it has to be typed again.
    pub retype: bool,
    pub remove: bool,
    pub scope: VariableScope,
    /// The service's complaints about this row.
    pub errors: Vec<String>,
}

impl Row {
    pub fn stored(v: &Variable) -> Row {
        let sensitive = v.sensitive();
        Row {
            id: v.id.clone(),
            name: v.name.clone(),
            value: if sensitive {
                String::new()
            } else {
                v.value.clone().unwrap_or_default()
            },
            sensitive,
            has_secret: sensitive,
            scope: v.scope.clone(),
            ..Row::default()
        }
    }

    /// A new row nobody typed into: left out of the saved set.
    pub fn is_blank(&self) -> bool {
        self.id.is_empty()
            && self.name.trim().is_empty()
            && self.value.is_empty()
            && self.scope.is_empty()
    }

    /// Whether the row becomes a variable of the saved set.
    fn is_sent(&self) -> bool {
        !self.remove && !self.is_blank()
    }
}

/// A posted grid.
#[derive(Debug, Default)]
pub struct Posted {
    pub csrf: Option<String>,
    pub version: Option<i64>,
    /// `add` to come back with one more blank row, saving nothing.
    pub action: String,
    pub rows: Vec<Row>,
}

/// Splits `v[3].Name` into `(3, "Name")`.
fn row_key(key: &str) -> Option<(usize, &str)> {
    let rest = key.strip_prefix("v[")?;
    let (index, field) = rest.split_once("].")?;
    Some((index.parse().ok()?, field))
}

/// Reads the grid's fields; unknown fields are ignored, rows keep the order
/// of their indices.
pub fn parse(fields: Vec<(String, String)>) -> Posted {
    let mut posted = Posted::default();
    let mut rows: BTreeMap<usize, Row> = BTreeMap::new();
    for (key, value) in fields {
        match key.as_str() {
            crate::session::CSRF_FIELD => posted.csrf = Some(value),
            VERSION_FIELD => posted.version = value.trim().parse().ok(),
            "action" => posted.action = value,
            _ => {
                if let Some((i, field)) = row_key(&key) {
                    set_field(rows.entry(i).or_default(), field, value);
                }
            }
        }
    }
    posted.rows = rows.into_values().collect();
    posted
}

fn set_field(row: &mut Row, field: &str, value: String) {
    let scope = &mut row.scope;
    let add = |list: &mut Vec<String>| {
        if !value.is_empty() {
            list.push(value.clone());
        }
    };
    match field {
        "Id" => row.id = value,
        "Name" => row.name = value,
        "Value" => row.value = value,
        "Sensitive" => row.sensitive = true,
        "Remove" => row.remove = true,
        "Environment" => add(&mut scope.environment),
        "Machine" => add(&mut scope.machine),
        "Channel" => add(&mut scope.channel),
        "Action" => add(&mut scope.action),
        // Roles are typed, comma-separated; a trailing comma is not a role.
        "Role" => scope.role.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        ),
        _ => {}
    }
}

/// Marks rows whose stored variable is sensitive, and rows whose typed
/// sensitive value will not be shown again.
pub fn note_secrets(rows: &mut [Row], stored: &[Variable]) {
    for row in rows {
        row.has_secret = !row.id.is_empty()
            && stored
                .iter()
                .any(|v| v.id == row.id && v.sensitive() && row.sensitive);
        if row.sensitive && !row.value.is_empty() {
            row.retype = true;
            row.value.clear();
        }
    }
}

/// The full set to save: each kept row over its stored variable (so what
/// the grid does not edit, like a description or a prompt, is kept).
pub fn to_variables(rows: &[Row], stored: &[Variable]) -> Vec<Variable> {
    rows.iter()
        .filter(|r| r.is_sent())
        .map(|r| to_variable(r, stored))
        .collect()
}

fn to_variable(row: &Row, stored: &[Variable]) -> Variable {
    let old = stored.iter().find(|v| !row.id.is_empty() && v.id == row.id);
    let mut v = old.cloned().unwrap_or_else(|| Variable {
        id: row.id.clone(),
        ..Variable::default()
    });
    v.name = row.name.clone();
    v.scope.environment = row.scope.environment.clone();
    v.scope.role = row.scope.role.clone();
    v.scope.machine = row.scope.machine.clone();
    v.scope.channel = row.scope.channel.clone();
    v.scope.action = row.scope.action.clone();
    let was_sensitive = old.is_some_and(Variable::sensitive);
    if row.sensitive {
        v.is_sensitive = true;
        v.kind = "Sensitive".into();
        // Null tells the service to keep the stored value.
        v.value = (!row.value.is_empty() || !was_sensitive).then(|| row.value.clone());
    } else {
        v.is_sensitive = false;
        if v.kind == "Sensitive" {
            v.kind = "String".into();
        }
        v.value = Some(row.value.clone());
    }
    v
}

/// Puts the service's messages on the rows they name; returns whether any
/// found a row. Messages name a variable as `The variable 'X' …`; one
/// without a name says `A variable …` or `Name is required …`.
pub fn assign_errors(rows: &mut [Row], messages: &[String]) -> bool {
    let mut any = false;
    for m in messages {
        let named = rows
            .iter()
            .filter(|r| r.is_sent() && !r.name.trim().is_empty())
            .map(|r| r.name.trim())
            .filter(|n| m.starts_with(&format!("The variable '{n}'")))
            .max_by_key(|n| n.len())
            .map(str::to_owned);
        let unnamed = m.starts_with("A variable ") || m.starts_with("Name is required");
        let too_long = m.starts_with("The variable name must be");
        for r in rows.iter_mut().filter(|r| r.is_sent()) {
            let name = r.name.trim();
            let hit = match &named {
                Some(n) => name == n,
                None if unnamed => name.is_empty(),
                None if too_long => name.chars().count() > 200,
                None => false,
            };
            if hit {
                r.errors.push(m.clone());
                any = true;
            }
        }
    }
    any
}

/// What the scope selects offer: the service's scope values.
pub struct Choices<'a> {
    pub values: &'a ScopeValues,
    /// Channels and steps exist only for a project's own variables.
    pub project: bool,
}

fn name_of<'a>(items: &'a [ReferenceItem], id: &str) -> Option<&'a str> {
    items.iter().find(|i| i.id == id).map(|i| i.name.as_str())
}

const LOCK: &str = r#"<svg class="icon" viewBox="0 0 16 16" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><rect x="3" y="7" width="10" height="7" rx="1.5"/><path d="M5.5 7V5a2.5 2.5 0 0 1 5 0v2"/></svg>"#;

/// One scope dimension as chips show it.
struct Dim<'a> {
    class: &'static str,
    kind: &'static str,
    ids: &'a [String],
    /// What its ids are named; `None` for roles, which are names.
    known: Option<&'a [ReferenceItem]>,
}

impl Dim<'_> {
    fn name(&self, id: &str) -> Option<String> {
        match self.known {
            Some(items) => name_of(items, id).map(str::to_owned),
            None => Some(id.to_owned()),
        }
    }
}

/// The scope as chips, by name; a scope naming something since deleted says
/// so rather than showing its id.
fn chips(row: &Row, c: &Choices) -> Markup {
    let v = c.values;
    let s = &row.scope;
    let dim = |class, kind, ids, known| Dim {
        class,
        kind,
        ids,
        known,
    };
    let dims = [
        dim("env", "environment", &s.environment, Some(&v.environments)),
        dim("role", "role", &s.role, None),
        dim("machine", "target", &s.machine, Some(&v.machines)),
        dim("channel", "channel", &s.channel, Some(&v.channels)),
        dim("step", "step", &s.action, Some(&v.actions)),
    ];
    html! {
        div.chips {
            @if row.scope.is_empty() {
                span.muted { "Unscoped" }
            }
            @for d in &dims {
                @for id in d.ids {
                    span class=(format!("chip chip-{}", d.class)) title=(d.kind) {
                        @match d.name(id) {
                            Some(n) => (n),
                            None => em { "deleted " (d.kind) },
                        }
                    }
                }
            }
        }
    }
}

/// Element ids of one row: the first new row's are fixed (`var-name-new`)
/// so a person or a test can find where to type.
struct Ids {
    key: String,
}

impl Ids {
    fn of(&self, what: &str) -> String {
        format!("var-{what}-{}", self.key)
    }
}

/// A multi-select of what a scope may name. Chosen ids that name nothing
/// any more stay chosen and say so, so a save does not drop them silently
/// (the service then says what is wrong). Nothing to offer, no select.
fn multi_select(
    id: &str,
    name: &str,
    label: &str,
    items: &[ReferenceItem],
    chosen: &[String],
) -> Markup {
    let gone: Vec<&String> = chosen
        .iter()
        .filter(|c| name_of(items, c).is_none())
        .collect();
    let count = items.len() + gone.len();
    html! {
        @if count > 0 {
            div.field {
                label for=(id) { (label) }
                select #(id) name=(name) multiple size=(count.clamp(2, 5)) {
                    @for i in items {
                        option value=(i.id) selected[chosen.contains(&i.id)] { (i.name) }
                    }
                    @for g in gone {
                        option value=(g) selected { "(deleted)" }
                    }
                }
            }
        }
    }
}

/// One row; `index` is its place in the form (`__i__` in the template the
/// page script clones), `key` what its element ids end with.
fn row(row: &Row, index: &str, key: &str, c: &Choices) -> Markup {
    let ids = Ids { key: key.into() };
    let field = |f: &str| format!("v[{index}].{f}");
    let invalid = !row.errors.is_empty();
    let name_id = ids.of("name");
    let error_id = format!("{name_id}-error");
    let new = row.id.is_empty();
    html! {
        tr.var-row.invalid[invalid].new-row[new] {
            td.var-name {
                input type="hidden" name=(field("Id")) value=(row.id);
                label.sr-only for=(name_id) { "Name" }
                input #(name_id) type="text" name=(field("Name")) value=(row.name)
                    autocomplete="off" spellcheck="false"
                    aria-invalid=[invalid.then_some("true")]
                    aria-describedby=[invalid.then_some(error_id.as_str())];
                @if invalid {
                    p.field-error id=(error_id) {
                        @for (i, m) in row.errors.iter().enumerate() {
                            @if i > 0 { br; }
                            (m)
                        }
                    }
                }
            }
            td.var-value {
                (value_cell(row, &ids, &field("Value")))
            }
            td.var-scope {
                (chips(row, c))
                details.scope-edit open[new || invalid] {
                    summary { "Edit scope" }
                    div.scope-fields {
                    (multi_select(&ids.of("env"), &field("Environment"), "Environments",
                        &c.values.environments, &row.scope.environment))
                    div.field {
                        label for=(ids.of("role")) { "Roles" }
                        input #(ids.of("role")) type="text" name=(field("Role"))
                            value=(row.scope.role.join(", ")) placeholder="web, db"
                            list=[(!c.values.roles.is_empty()).then_some(ROLES_LIST)];
                    }
                    (multi_select(&ids.of("machine"), &field("Machine"), "Targets",
                        &c.values.machines, &row.scope.machine))
                    @if c.project {
                        (multi_select(&ids.of("channel"), &field("Channel"), "Channels",
                            &c.values.channels, &row.scope.channel))
                        (multi_select(&ids.of("step"), &field("Action"), "Steps",
                            &c.values.actions, &row.scope.action))
                    }
                    }
                }
            }
            td.var-check {
                label.sr-only for=(ids.of("sensitive")) { "Sensitive" }
                input #(ids.of("sensitive")) type="checkbox" name=(field("Sensitive"))
                    value="on" checked[row.sensitive] data-sensitive;
            }
            td.var-check {
                label.sr-only for=(ids.of("remove")) { "Remove" }
                input #(ids.of("remove")) type="checkbox" name=(field("Remove"))
                    value="on" checked[row.remove];
            }
        }
    }
}

fn value_cell(row: &Row, ids: &Ids, name: &str) -> Markup {
    let id = ids.of("value");
    html! {
        label.sr-only for=(id) { "Value" }
        @if row.sensitive {
            @if row.has_secret {
                span.badge.state-pending.secret-set { (PreEscaped(LOCK)) span { "set" } }
            }
            input #(id) type="password" name=(name) value=""
                autocomplete="new-password"
                placeholder=(if row.has_secret { "Leave blank to keep" } else { "Sensitive value" });
            @if row.retype {
                p.hint { "Type the new value again: sensitive values are not sent back." }
            }
        } @else {
            textarea #(id) name=(name) rows="1" spellcheck="false" { (row.value) }
        }
    }
}

/// The grid's table, with a blank row at the end ready to type into, and
/// the template the page script clones for "Add variable".
pub fn table(rows: &[Row], c: &Choices) -> Markup {
    let blank = Row::default();
    let all: Vec<&Row> = rows.iter().chain(std::iter::once(&blank)).collect();
    let first_new = all.iter().position(|r| r.id.is_empty());
    html! {
        div.table-wrap {
            table.vars {
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Value" }
                        th scope="col" { "Scope" }
                        th scope="col" { "Sensitive" }
                        th scope="col" { "Remove" }
                    }
                }
                tbody #var-rows data-next=(all.len()) {
                    @for (i, r) in all.iter().enumerate() {
                        @let key = if Some(i) == first_new { "new".to_owned() } else { i.to_string() };
                        (row(r, &i.to_string(), &key, c))
                    }
                }
            }
        }
        @if !c.values.roles.is_empty() {
            datalist #(ROLES_LIST) {
                @for r in &c.values.roles { option value=(r.name) {} }
            }
        }
        template #var-row-template {
            (row(&blank, "__i__", "__i__", c))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn rows_parse_from_indexed_fields() {
        let p = parse(fields(&[
            ("csrf", "t"),
            ("Version", "4"),
            ("v[10].Name", "Later"),
            ("v[2].Id", "abc"),
            ("v[2].Name", "First"),
            ("v[2].Environment", "Environments-1"),
            ("v[2].Environment", "Environments-2"),
            ("v[2].Role", "web, ,db,"),
            ("v[2].Sensitive", "on"),
            ("v[x].Name", "ignored"),
        ]));
        assert_eq!(p.version, Some(4));
        assert_eq!(p.csrf.as_deref(), Some("t"));
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].name, "First");
        assert_eq!(
            p.rows[0].scope.environment,
            ["Environments-1", "Environments-2"]
        );
        assert_eq!(p.rows[0].scope.role, ["web", "db"]);
        assert!(p.rows[0].sensitive);
        assert_eq!(p.rows[1].name, "Later");
    }

    #[test]
    fn blank_sensitive_fields_keep_the_stored_value() {
        let mut secret = Variable::new("Pw", "sealed");
        secret.id = "s".into();
        secret.is_sensitive = true;
        secret.kind = "Sensitive".into();
        secret.description = Some("kept".into());
        let rows = vec![
            Row {
                id: "s".into(),
                name: "Pw".into(),
                sensitive: true,
                ..Row::default()
            },
            Row::default(),
            Row {
                name: "Gone".into(),
                remove: true,
                ..Row::default()
            },
            Row {
                name: "Plain".into(),
                value: "x".into(),
                ..Row::default()
            },
        ];
        let vars = to_variables(&rows, &[secret]);
        assert_eq!(vars.len(), 2);
        assert_eq!(vars[0].value, None);
        assert_eq!(vars[0].description.as_deref(), Some("kept"));
        assert_eq!(vars[1].value.as_deref(), Some("x"));
        assert!(vars[1].id.is_empty());
    }

    #[test]
    fn messages_land_on_the_rows_they_name() {
        let mut rows = vec![
            Row {
                name: "Db".into(),
                value: "1".into(),
                ..Row::default()
            },
            Row {
                name: "Db.Port".into(),
                value: "2".into(),
                ..Row::default()
            },
            Row {
                value: "3".into(),
                ..Row::default()
            },
        ];
        let msgs = vec![
            "The variable 'Db.Port' is scoped to the environment 'X', which does not exist"
                .to_owned(),
            "Name is required: give the variable a name".to_owned(),
        ];
        assert!(assign_errors(&mut rows, &msgs));
        assert!(rows[0].errors.is_empty());
        assert_eq!(rows[1].errors.len(), 1);
        assert_eq!(rows[2].errors, [msgs[1].clone()]);
    }
}
