//! The form that adds a step to a process or edits one. It edits the step
//! and its first action; whatever the form has no field for (more actions,
//! environments, channels, other properties) is kept as it was.

use super::{
    is_disabled, load, parse_version, process_path, runs_on_server, save, step_index, Kind,
};
use crate::error::PortalError;
use crate::forms::{self, Problems};
use crate::layout::{self, Nav, ProjectTab};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cuttle_model::ids::BUILTIN_FEED_ID;
use cuttle_model::interruption::{PROP_MANUAL_BLOCK_CONCURRENT, PROP_MANUAL_INSTRUCTIONS};
use cuttle_model::process::{
    PackageReference, PROP_CONDITION_EXPRESSION, PROP_RUN_ON_SERVER, PROP_SCRIPT_BODY,
    PROP_SCRIPT_SOURCE, PROP_SCRIPT_SYNTAX, PROP_TARGET_ROLES,
};
use cuttle_model::{Action, Project, Step};
use cuttle_service::projects;
use cuttle_service::Instance;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

const PROP_PACKAGE_ID: &str = "Octopus.Action.Package.PackageId";
const PROP_PACKAGE_FEED: &str = "Octopus.Action.Package.FeedId";

/// The script languages the engine runs.
const SYNTAXES: [&str; 2] = ["Bash", "Python"];

const CONDITIONS: [(&str, &str); 4] = [
    (
        "Success",
        "Success: only when every previous step succeeded",
    ),
    ("Failure", "Failure: only when a previous step failed"),
    ("Always", "Always run"),
    ("Variable", "Variable: only when an expression is true"),
];

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewQuery {
    kind: String,
}

/// The form's fields, as posted or as read from a stored step.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct StepForm {
    #[serde(rename = "csrf")]
    csrf: Option<String>,
    version: String,
    kind: String,
    name: String,
    script_body: String,
    syntax: String,
    run_on: String,
    target_roles: String,
    condition: String,
    condition_expression: String,
    start_with_previous: Option<String>,
    is_disabled: Option<String>,
    package_id: String,
    feed_id: String,
    instructions: String,
}

fn checked(on: bool) -> Option<String> {
    on.then(|| "on".to_owned())
}

/// Browsers send text areas with CRLF line ends, which break Bash scripts.
fn unix_lines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Where the package a step deploys is among its action's packages, as the
/// engine picks it: the unnamed one, else the first.
fn primary_index(packages: &[PackageReference]) -> Option<usize> {
    packages
        .iter()
        .position(|p| p.name.is_empty())
        .or((!packages.is_empty()).then_some(0))
}

impl StepForm {
    fn blank(kind: Kind, version: i64) -> StepForm {
        StepForm {
            version: version.to_string(),
            kind: kind.key().into(),
            syntax: "Bash".into(),
            run_on: if kind == Kind::Package {
                "targets"
            } else {
                "server"
            }
            .into(),
            condition: "Success".into(),
            feed_id: BUILTIN_FEED_ID.into(),
            ..Default::default()
        }
    }

    fn from_step(step: &Step, version: i64) -> StepForm {
        let kind = Kind::of(step);
        let action = step.actions.first();
        let prop = |k: &str| action.and_then(|a| a.property(k)).unwrap_or_default();
        let package = action.and_then(|a| Some(&a.packages[primary_index(&a.packages)?]));
        let roles = step.target_roles();
        let on_server =
            kind != Kind::Package && (roles.is_empty() || action.is_some_and(runs_on_server));
        StepForm {
            csrf: None,
            version: version.to_string(),
            kind: kind.key().into(),
            name: step.name.clone(),
            script_body: prop(PROP_SCRIPT_BODY),
            syntax: Some(prop(PROP_SCRIPT_SYNTAX))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "Bash".into()),
            run_on: if on_server { "server" } else { "targets" }.into(),
            target_roles: roles.join(", "),
            condition: step.condition.clone(),
            condition_expression: step.property(PROP_CONDITION_EXPRESSION).unwrap_or_default(),
            start_with_previous: checked(step.start_trigger == "StartWithPrevious"),
            is_disabled: checked(is_disabled(step)),
            package_id: package.map(|p| p.package_id.clone()).unwrap_or_default(),
            feed_id: package
                .map(|p| p.feed_id.clone())
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| BUILTIN_FEED_ID.into()),
            instructions: prop(PROP_MANUAL_INSTRUCTIONS),
        }
    }

    fn roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = vec![];
        for r in self.target_roles.split(',').map(str::trim) {
            if !r.is_empty() && !roles.iter().any(|x| x == r) {
                roles.push(r.to_owned());
            }
        }
        roles
    }

    /// Writes the form onto `step`, noting what the form itself finds
    /// missing in `problems`.
    fn apply(&self, step: &mut Step, kind: Kind, problems: &mut Problems) {
        step.name = self.name.trim().to_owned();
        step.condition = self.condition.clone();
        if self.condition == "Variable" {
            set(
                &mut step.properties,
                PROP_CONDITION_EXPRESSION,
                self.condition_expression.trim(),
            );
        } else {
            step.properties.remove(PROP_CONDITION_EXPRESSION);
        }
        step.start_trigger = if self.start_with_previous.is_some() {
            "StartWithPrevious"
        } else {
            "StartAfterPrevious"
        }
        .into();
        if step.actions.is_empty() {
            step.actions.push(new_action(kind));
        }
        // A lone action carries its step's name, as Octopus keeps them.
        if step.actions.len() == 1 {
            step.actions[0].name = step.name.clone();
        }
        for a in &mut step.actions {
            a.is_disabled = self.is_disabled.is_some();
        }
        match kind {
            Kind::Script => {
                self.apply_script(&mut step.actions[0]);
                self.apply_run_on(step, false, problems);
            }
            Kind::Package => {
                self.apply_package(&mut step.actions[0]);
                self.apply_run_on(step, true, problems);
            }
            Kind::Manual => set(
                &mut step.actions[0].properties,
                PROP_MANUAL_INSTRUCTIONS,
                &unix_lines(&self.instructions),
            ),
            Kind::Other => self.apply_run_on(step, false, problems),
        }
    }

    fn apply_script(&self, action: &mut Action) {
        let props = &mut action.properties;
        set(props, PROP_SCRIPT_BODY, &unix_lines(&self.script_body));
        set(props, PROP_SCRIPT_SYNTAX, self.syntax.trim());
        if !props.contains_key(PROP_SCRIPT_SOURCE) {
            set(props, PROP_SCRIPT_SOURCE, "Inline");
        }
    }

    fn apply_package(&self, action: &mut Action) {
        let package_id = self.package_id.trim();
        let feed_id = Some(self.feed_id.trim())
            .filter(|f| !f.is_empty())
            .unwrap_or(BUILTIN_FEED_ID);
        match primary_index(&action.packages) {
            Some(i) => {
                action.packages[i].package_id = package_id.into();
                action.packages[i].feed_id = feed_id.into();
            }
            None => action.packages.push(PackageReference {
                package_id: package_id.into(),
                feed_id: feed_id.into(),
                acquisition_location: "Server".into(),
                ..Default::default()
            }),
        }
        set(&mut action.properties, PROP_PACKAGE_ID, package_id);
        set(&mut action.properties, PROP_PACKAGE_FEED, feed_id);
    }

    /// Targets with roles, or the server or a worker (no targets). A
    /// package is always deployed to targets.
    fn apply_run_on(&self, step: &mut Step, targets_only: bool, problems: &mut Problems) {
        let on_targets = targets_only || self.run_on != "server";
        let roles = self.roles();
        if on_targets {
            if roles.is_empty() {
                problems.on(
                    "TargetRoles",
                    if targets_only {
                        "Name at least one target role: the package is deployed to the targets that have it"
                    } else {
                        "Name at least one target role, or run the step on the server or a worker"
                    },
                );
            }
            set(&mut step.properties, PROP_TARGET_ROLES, &roles.join(","));
        } else {
            step.properties.remove(PROP_TARGET_ROLES);
        }
        let on_server = if on_targets { "False" } else { "True" };
        set(
            &mut step.actions[0].properties,
            PROP_RUN_ON_SERVER,
            on_server,
        );
    }
}

fn set(props: &mut cuttle_model::process::Properties, key: &str, value: &str) {
    props.insert(key.to_owned(), Value::String(value.to_owned()));
}

/// A new step's action, with the properties Octopus gives one of its kind.
fn new_action(kind: Kind) -> Action {
    let mut action = Action {
        action_type: kind.action_type().into(),
        ..Default::default()
    };
    if kind == Kind::Manual {
        set(&mut action.properties, PROP_RUN_ON_SERVER, "True");
        set(
            &mut action.properties,
            PROP_MANUAL_BLOCK_CONCURRENT,
            "False",
        );
    }
    action
}

/// Which field a message from the service concerns. `number` is the
/// step's place in the process (1-based): messages about other steps
/// belong to the form as a whole.
fn field_of(message: &str, number: usize) -> Option<&'static str> {
    if message.starts_with("The script is empty") {
        return Some("ScriptBody");
    }
    if message.starts_with("A package ID") {
        return Some("PackageId");
    }
    let ours = message
        .strip_prefix(&format!("Step {number}"))
        .is_some_and(|rest| rest.starts_with([' ', ':', ',']));
    if !ours {
        None
    } else if message.contains("run condition needs") {
        Some("ConditionExpression")
    } else if message.contains("Condition must") {
        Some("Condition")
    } else if message.contains("start with the previous") {
        Some("StartWithPrevious")
    } else if message.contains("name") {
        Some("Name")
    } else {
        None
    }
}

/// Everything the form page shows.
struct View<'a> {
    project: &'a Project,
    kind: Kind,
    /// `None` for a new step.
    step_id: Option<&'a str>,
    /// The stored step's name (the form's may be mid-edit).
    title: String,
    form: &'a StepForm,
    problems: &'a Problems,
    conflict: bool,
    /// The action type, shown for kinds the form has no fields for.
    action_type: String,
    more_actions: usize,
}

/// `GET /projects/{id}/process/steps/new?kind=script|package|manual`
pub async fn new_form(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<NewQuery>,
) -> Result<Markup, PortalError> {
    let kind = Kind::parse(&q.kind).ok_or_else(|| {
        PortalError::BadRequest(
            "Choose what the new step does: run a script, deploy a package or wait for a person"
                .into(),
        )
    })?;
    let (project, process) = load(&inst, &id).await?;
    let form = StepForm::blank(kind, process.version);
    Ok(render(
        &viewer,
        &View {
            project: &project,
            kind,
            step_id: None,
            title: format!("Add a step: {}", kind.label()),
            form: &form,
            problems: &Problems::none(),
            conflict: false,
            action_type: kind.action_type().into(),
            more_actions: 0,
        },
    ))
}

/// `GET /projects/{id}/process/steps/{step}`
pub async fn edit_form(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, step_id)): Path<(String, String)>,
) -> Result<Markup, PortalError> {
    let (project, process) = load(&inst, &id).await?;
    let step = &process.steps[step_index(&process.steps, &step_id)?];
    let form = StepForm::from_step(step, process.version);
    Ok(render(
        &viewer,
        &View {
            project: &project,
            kind: Kind::of(step),
            step_id: Some(&step.id),
            title: format!("Edit step: {}", step.name),
            form: &form,
            problems: &Problems::none(),
            conflict: false,
            action_type: action_type(step),
            more_actions: step.actions.len().saturating_sub(1),
        },
    ))
}

fn action_type(step: &Step) -> String {
    step.actions
        .first()
        .map(|a| a.action_type.clone())
        .unwrap_or_default()
}

/// `POST /projects/{id}/process/steps`
pub async fn create(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<StepForm>,
) -> Response {
    submit(&inst, &viewer, &id, None, form).await
}

/// `POST /projects/{id}/process/steps/{step}`
pub async fn update(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path((id, step_id)): Path<(String, String)>,
    Form(form): Form<StepForm>,
) -> Response {
    submit(&inst, &viewer, &id, Some(step_id), form).await
}

/// Saves the posted step; on a mistake or a conflict, the form again as
/// it was typed, with the reasons beside the fields.
async fn submit(
    inst: &Instance,
    viewer: &Viewer,
    id: &str,
    step_id: Option<String>,
    form: StepForm,
) -> Response {
    let back = process_path(id);
    match try_submit(inst, viewer, id, step_id.as_deref(), &form).await {
        Ok(None) => Redirect::to(&back).into_response(),
        Ok(Some((status, page))) => (status, page).into_response(),
        Err(e) => e.page(Some(&back)),
    }
}

async fn try_submit(
    inst: &Instance,
    viewer: &Viewer,
    id: &str,
    step_id: Option<&str>,
    form: &StepForm,
) -> Result<Option<(StatusCode, Markup)>, PortalError> {
    viewer.check_csrf(form.csrf.as_deref())?;
    let version = parse_version(&form.version)?;
    let (project, process) = load(inst, id).await?;
    let mut steps = process.steps.clone();
    let (index, kind, title) = match step_id {
        Some(sid) => {
            let i = step_index(&steps, sid)?;
            (
                i,
                Kind::of(&steps[i]),
                format!("Edit step: {}", steps[i].name),
            )
        }
        None => {
            let kind = Kind::parse(&form.kind).ok_or_else(|| {
                PortalError::BadRequest("The form did not say what kind of step to add".into())
            })?;
            steps.push(Step::default());
            (
                steps.len() - 1,
                kind,
                format!("Add a step: {}", kind.label()),
            )
        }
    };
    let mut problems = Problems::none();
    form.apply(&mut steps[index], kind, &mut problems);
    for m in projects::step_content_problems(&steps[index]) {
        match field_of(&m, index + 1) {
            Some(f) => problems.on(f, m),
            None => problems.general.push(m),
        }
    }
    let action_type = action_type(&steps[index]);
    let more_actions = steps[index].actions.len().saturating_sub(1);
    let show = |problems: &Problems, conflict: bool| {
        let view = View {
            project: &project,
            kind,
            step_id,
            title: title.clone(),
            form,
            problems,
            conflict,
            action_type: action_type.clone(),
            more_actions,
        };
        render(viewer, &view)
    };
    if !problems.is_empty() {
        return Ok(Some((StatusCode::BAD_REQUEST, show(&problems, false))));
    }
    match save(inst, viewer, &process, version, steps).await {
        Ok(_) => Ok(None),
        Err(e) => {
            let (status, problems) = Problems::from_error(e, |m| field_of(m, index + 1))?;
            Ok(Some((
                status,
                show(&problems, status == StatusCode::CONFLICT),
            )))
        }
    }
}

fn render(viewer: &Viewer, v: &View<'_>) -> Markup {
    let process = process_path(&v.project.id);
    let action = match v.step_id {
        Some(sid) => format!("/projects/{}/process/steps/{sid}", v.project.id),
        None => format!("/projects/{}/process/steps", v.project.id),
    };
    let crumbs = html! {
        " / " a href=(process) { "Process" }
        " / " (v.title)
    };
    let p = v.problems;
    let f = v.form;
    let body = html! {
        (layout::project_head(v.project, ProjectTab::Process, crumbs))
        section.panel.step-editor {
            h2 { (v.title) }
            form method="post" action=(action) novalidate {
                (forms::csrf(viewer.csrf()))
                input type="hidden" name="Version" value=(f.version);
                input type="hidden" name="Kind" value=(v.kind.key());
                (p.summary())
                @if v.conflict {
                    p.conflict-help {
                        a href=(v.step_id.map(|_| action.clone()).unwrap_or_else(|| process.clone())) {
                            "Open the process as it is now"
                        }
                        " and make your change again; what you typed is still below to copy from."
                    }
                }
                (forms::text_field(p, "step-name", "Name", "Step name", &f.name, None))
                (kind_fields(v))
                (condition_fields(p, f))
                div.checks {
                    (checkbox("start-with-previous", "StartWithPrevious", "Start at the same time as the previous step", f.start_with_previous.is_some(), p))
                    (checkbox("step-disabled", "IsDisabled", "Disabled: deployments skip this step", f.is_disabled.is_some(), p))
                }
                @if v.more_actions > 0 {
                    p.muted {
                        "This step has " (v.more_actions) " more action" @if v.more_actions > 1 { "s" }
                        ", kept as they are; edit them through the API."
                    }
                }
                div.form-actions {
                    button.primary #save-step type="submit" { "Save step" }
                    a.button.secondary href=(process) { "Cancel" }
                }
            }
        }
    };
    layout::page(viewer, &v.title, Nav::Projects, body)
}

fn kind_fields(v: &View<'_>) -> Markup {
    let (p, f) = (v.problems, v.form);
    html! {
        @match v.kind {
            Kind::Script => {
                (script_field(p, f))
                (syntax_field(f))
                (run_on_fields(p, f))
            },
            Kind::Package => {
                (forms::text_field(p, "package-id", "PackageId", "Package ID", &f.package_id,
                    Some("The ID of a package in the built-in feed, for example Acme.Web")))
                (feed_field(f))
                (roles_field(p, f))
            },
            Kind::Manual => {
                (forms::text_area(p, "manual-instructions", "Instructions", "Instructions", &f.instructions, 6))
            },
            Kind::Other => {
                p.muted { "This step runs the action type " code { (v.action_type) } ", which this form has no fields for; they are kept as they are." }
                (run_on_fields(p, f))
            },
        }
    }
}

fn script_field(p: &Problems, f: &StepForm) -> Markup {
    let invalid = p.has("ScriptBody");
    let described = if invalid {
        "script-body-hint script-body-error"
    } else {
        "script-body-hint"
    };
    html! {
        div.field.invalid[invalid] {
            label for="script-body" { "Script" }
            textarea #script-body.code name="ScriptBody" rows="18" spellcheck="false"
                autocapitalize="off" autocomplete="off" wrap="off" data-code-editor
                aria-invalid=[invalid.then_some("true")] aria-describedby=(described) { (f.script_body) }
            p.hint #script-body-hint {
                "Tab indents. To leave the editor with the keyboard, press Esc, then Tab. "
                code { "#{Name}" } " is replaced by the variable's value before the script runs."
            }
            (p.under("script-body", "ScriptBody"))
        }
    }
}

fn syntax_field(f: &StepForm) -> Markup {
    let known = SYNTAXES.contains(&f.syntax.as_str());
    html! {
        div.field {
            label for="script-syntax" { "Language" }
            select #script-syntax name="Syntax" {
                @for s in SYNTAXES {
                    option value=(s) selected[f.syntax == s] { (s) }
                }
                // Kept so that saving does not change it unasked.
                @if !known {
                    option value=(f.syntax) selected { (f.syntax) " (not supported by this server)" }
                }
            }
        }
    }
}

fn run_on_fields(p: &Problems, f: &StepForm) -> Markup {
    let on_server = f.run_on == "server";
    html! {
        fieldset.run-on {
            legend { "Run on" }
            div.radio {
                input #run-on-targets type="radio" name="RunOn" value="targets" checked[!on_server];
                label for="run-on-targets" { "Deployment targets with these roles" }
            }
            div.radio {
                input #run-on-server type="radio" name="RunOn" value="server" checked[on_server];
                label for="run-on-server" { "The server or a worker, once per deployment" }
            }
            (roles_field(p, f))
        }
    }
}

fn roles_field(p: &Problems, f: &StepForm) -> Markup {
    html! {
        div.roles-field {
            (forms::text_field(p, "target-roles", "TargetRoles", "Target roles", &f.target_roles,
                Some("Comma-separated, for example web, api. The step runs on every target with one of them.")))
        }
    }
}

fn feed_field(f: &StepForm) -> Markup {
    html! {
        div.field {
            label for="package-feed" { "Feed" }
            select #package-feed name="FeedId" {
                option value=(BUILTIN_FEED_ID) selected[f.feed_id == BUILTIN_FEED_ID] { "Built-in feed" }
                // Only the built-in feed is served; another is kept, not lost.
                @if f.feed_id != BUILTIN_FEED_ID {
                    option value=(f.feed_id) selected { (f.feed_id) }
                }
            }
        }
    }
}

fn condition_fields(p: &Problems, f: &StepForm) -> Markup {
    let invalid = p.has("Condition");
    html! {
        div.field.invalid[invalid] {
            label for="step-condition" { "Run condition" }
            select #step-condition name="Condition" aria-invalid=[invalid.then_some("true")]
                aria-describedby=[invalid.then_some("step-condition-error")] {
                @for (value, label) in CONDITIONS {
                    option value=(value) selected[f.condition == value] { (label) }
                }
            }
            (p.under("step-condition", "Condition"))
        }
        div.condition-expression {
            (forms::text_field(p, "condition-expression", "ConditionExpression", "Condition expression", &f.condition_expression,
                Some("Used when the run condition is Variable: the step runs when this is true, for example #{RunThis} or #{if Octopus.Environment.Name == \"Production\"}true#{/if}.")))
        }
    }
}

fn checkbox(id: &str, name: &str, label: &str, on: bool, p: &Problems) -> Markup {
    let invalid = p.has(name);
    html! {
        div.check.invalid[invalid] {
            input #(id) type="checkbox" name=(name) value="on" checked[on]
                aria-invalid=[invalid.then_some("true")]
                aria-describedby=[invalid.then(|| format!("{id}-error"))];
            label for=(id) { (label) }
            (p.under(id, name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_find_their_fields() {
        assert_eq!(field_of("Step 2 needs a name", 2), Some("Name"));
        assert_eq!(field_of("Step 12 needs a name", 1), None);
        assert_eq!(field_of("Step 1 needs a name", 2), None);
        assert_eq!(
            field_of(
                "Step 1 ('x') cannot start with the previous step: it is the first step",
                1
            ),
            Some("StartWithPrevious")
        );
        assert_eq!(
            field_of("Step 3: a Variable run condition needs the expression", 3),
            Some("ConditionExpression")
        );
        assert_eq!(
            field_of("The script is empty: write it", 9),
            Some("ScriptBody")
        );
    }

    #[test]
    fn a_form_round_trips_through_a_step() {
        let mut step = Step::default();
        let form = StepForm {
            name: " Deploy ".into(),
            kind: "script".into(),
            script_body: "echo hi\r\necho there".into(),
            syntax: "Python".into(),
            run_on: "targets".into(),
            target_roles: "web, api,web,".into(),
            condition: "Variable".into(),
            condition_expression: "#{Go}".into(),
            start_with_previous: checked(true),
            ..StepForm::blank(Kind::Script, 4)
        };
        let mut problems = Problems::none();
        form.apply(&mut step, Kind::Script, &mut problems);
        assert!(problems.is_empty());
        assert_eq!(step.target_roles(), ["web", "api"]);
        assert_eq!(step.actions[0].name, "Deploy");
        let back = StepForm::from_step(&step, 4);
        assert_eq!(back.script_body, "echo hi\necho there");
        assert_eq!(back.run_on, "targets");
        assert_eq!(back.condition_expression, "#{Go}");
        assert_eq!(back.syntax, "Python");
        assert!(back.start_with_previous.is_some() && back.is_disabled.is_none());

        let server = StepForm {
            run_on: "server".into(),
            condition: "Success".into(),
            ..back
        };
        server.apply(&mut step, Kind::Script, &mut problems);
        assert!(step.target_roles().is_empty());
        assert!(step.property(PROP_CONDITION_EXPRESSION).is_none());
        assert!(runs_on_server(&step.actions[0]));

        let no_roles = StepForm {
            target_roles: " , ".into(),
            ..StepForm::blank(Kind::Package, 0)
        };
        no_roles.apply(&mut Step::default(), Kind::Package, &mut problems);
        assert!(problems.has("TargetRoles"));
    }
}
