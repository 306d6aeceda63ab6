//! Machine policies: the list, and a policy's page with all its settings
//! and a form for the ones people change (name, health check interval,
//! connection timeouts and retries, whether machines may be offline).
//! The rest of the policy is kept as it is; the service checks it all.

use super::{head, name_field, page, tabs, Tab};
use crate::error::PortalError;
use crate::forms::{self, Problems};
use crate::session::Viewer;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cuttle_model::machine_policy::{
    parse_timespan, HealthCheckType, MachineConnectivityBehavior, MachinePolicy,
};
use cuttle_model::space::DEFAULT_SPACE_ID;
use cuttle_model::time::human_duration;
use cuttle_model::{Machine, Worker};
use cuttle_service::resources::{self, get_in_space};
use cuttle_service::{machine_policies, Instance};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

const LIST: &str = "/infrastructure/machine-policies";

/// `01:00:00` as "1 hour", or the text itself when it is not a duration.
fn span(text: &str) -> String {
    match parse_timespan(text) {
        Ok(d) => human_duration(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        Err(_) => text.to_owned(),
    }
}

/// How many deployment targets and workers each policy governs, by id.
async fn users(inst: &Instance) -> Result<HashMap<String, (usize, usize)>, PortalError> {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for m in resources::list::<Machine>(&inst.store, &crate::default_space())
        .await?
        .items
    {
        counts.entry(m.machine_policy_id).or_default().0 += 1;
    }
    for w in resources::list::<Worker>(&inst.store, &crate::default_space())
        .await?
        .items
    {
        counts.entry(w.machine_policy_id).or_default().1 += 1;
    }
    Ok(counts)
}

async fn users_of(inst: &Instance, policy_id: &str) -> Result<(usize, usize), PortalError> {
    Ok(users(inst).await?.remove(policy_id).unwrap_or_default())
}

/// `GET /infrastructure/machine-policies`
pub async fn list(State(inst): State<AppState>, viewer: Viewer) -> Result<Markup, PortalError> {
    let policies = resources::list::<MachinePolicy>(&inst.store, &crate::default_space())
        .await?
        .items;
    let mut used = users(&inst).await?;
    let rows: Vec<_> = policies
        .into_iter()
        .map(|p| {
            let counts = used.remove(&p.id).unwrap_or_default();
            (p, counts)
        })
        .collect();
    let body = html! {
        (head(Tab::Policies, "Machine policies",
            "How often targets and workers are health-checked, and how patiently the server connects to them.",
            html! {}))
        div.table-wrap {
            table.policies {
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Health check every" }
                        th scope="col" { "Connect timeout" }
                        th scope="col" { "Used by" }
                    }
                }
                tbody {
                    @for (p, (targets, workers)) in &rows {
                        tr data-id=(p.id) {
                            td {
                                a href=(format!("{LIST}/{}", p.id)) { (p.name) }
                                @if p.is_default { " " span.tag.default { "default" } }
                                @if !p.description.is_empty() { p.muted.description { (p.description) } }
                            }
                            td { (span(&p.machine_health_check_policy.health_check_interval)) }
                            td { (span(&p.connection_connect_timeout)) }
                            td { (plural(*targets, "target")) ", " (plural(*workers, "worker")) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&viewer, "Machine policies", body))
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The editable settings as posted; named as the API names them, so the
/// service's messages find their fields.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PolicyForm {
    csrf: Option<String>,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "HealthCheckInterval")]
    health_check_interval: String,
    #[serde(rename = "HealthCheckType")]
    health_check_type: String,
    #[serde(rename = "MachineConnectivityBehavior")]
    connectivity: String,
    #[serde(rename = "ConnectionConnectTimeout")]
    connect_timeout: String,
    #[serde(rename = "ConnectionRetryCountLimit")]
    retry_count: String,
    #[serde(rename = "ConnectionRetryTimeLimit")]
    retry_time_limit: String,
}

impl PolicyForm {
    fn of(p: &MachinePolicy) -> Self {
        PolicyForm {
            csrf: None,
            name: p.name.clone(),
            description: p.description.clone(),
            health_check_interval: p.machine_health_check_policy.health_check_interval.clone(),
            health_check_type: format!("{:?}", p.machine_health_check_policy.health_check_type),
            connectivity: format!(
                "{:?}",
                p.machine_connectivity_policy.machine_connectivity_behavior
            ),
            connect_timeout: p.connection_connect_timeout.clone(),
            retry_count: p.connection_retry_count_limit.to_string(),
            retry_time_limit: p.connection_retry_time_limit.clone(),
        }
    }

    /// `existing` with the form's changes; the problems the service cannot
    /// see (a count that is not a number) are added to `problems`.
    fn apply(&self, existing: &MachinePolicy, problems: &mut Problems) -> MachinePolicy {
        let mut p = existing.clone();
        p.name = self.name.clone();
        p.description = self.description.clone();
        p.machine_health_check_policy.health_check_interval =
            self.health_check_interval.trim().to_owned();
        p.machine_health_check_policy.health_check_type = match self.health_check_type.as_str() {
            "OnlyConnectivity" => HealthCheckType::OnlyConnectivity,
            _ => HealthCheckType::RunScript,
        };
        p.machine_connectivity_policy.machine_connectivity_behavior =
            match self.connectivity.as_str() {
                "MayBeOfflineAndCanBeSkipped" => {
                    MachineConnectivityBehavior::MayBeOfflineAndCanBeSkipped
                }
                _ => MachineConnectivityBehavior::ExpectedToBeOnline,
            };
        p.connection_connect_timeout = self.connect_timeout.trim().to_owned();
        p.connection_retry_time_limit = self.retry_time_limit.trim().to_owned();
        match self.retry_count.trim().parse::<i64>() {
            Ok(n) => p.connection_retry_count_limit = n,
            Err(_) => problems.on(
                "ConnectionRetryCountLimit",
                format!("'{}' is not a whole number", self.retry_count.trim()),
            ),
        }
        p
    }
}

/// The field a service message is about, from the field name it starts with.
fn field_of(message: &str) -> Option<&'static str> {
    const FIELDS: [(&str, &str); 4] = [
        (
            "MachineHealthCheckPolicy.HealthCheckInterval",
            "HealthCheckInterval",
        ),
        ("ConnectionConnectTimeout", "ConnectionConnectTimeout"),
        ("ConnectionRetryCountLimit", "ConnectionRetryCountLimit"),
        ("ConnectionRetryTimeLimit", "ConnectionRetryTimeLimit"),
    ];
    FIELDS
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map(|(_, field)| *field)
        .or_else(|| name_field(message))
}

/// `GET /infrastructure/machine-policies/{id}`
pub async fn detail(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Markup, PortalError> {
    let p: MachinePolicy = get_in_space(&inst.store, DEFAULT_SPACE_ID, &id).await?;
    let used = users_of(&inst, &p.id).await?;
    Ok(render(
        &viewer,
        &p,
        used,
        &PolicyForm::of(&p),
        &Problems::none(),
    ))
}

/// `POST /infrastructure/machine-policies/{id}`
pub async fn update(
    State(inst): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<PolicyForm>,
) -> Response {
    let here = format!("{LIST}/{id}");
    let shown = async {
        viewer.check_csrf(f.csrf.as_deref())?;
        let existing: MachinePolicy = get_in_space(&inst.store, DEFAULT_SPACE_ID, &id).await?;
        let mut problems = Problems::none();
        let changed = f.apply(&existing, &mut problems);
        let (status, problems) = if !problems.is_empty() {
            (StatusCode::BAD_REQUEST, problems)
        } else {
            let user = &viewer.actor;
            let Err(err) = machine_policies::update_machine_policy(
                &inst.store,
                user,
                DEFAULT_SPACE_ID,
                &id,
                changed,
            )
            .await
            else {
                return Ok(Redirect::to(&here).into_response());
            };
            Problems::from_error(err, field_of)?
        };
        // Only a form shown again says how many machines use the policy.
        let used = users_of(&inst, &existing.id).await?;
        let page = render(&viewer, &existing, used, &f, &problems);
        Ok::<_, PortalError>((status, page).into_response())
    };
    shown.await.unwrap_or_else(|e| e.page(Some(&here)))
}

fn render(
    viewer: &Viewer,
    p: &MachinePolicy,
    (targets, workers): (usize, usize),
    form: &PolicyForm,
    problems: &Problems,
) -> Markup {
    let retention = &p.machine_package_cache_retention_policy;
    let body = html! {
        div.page-head {
            p.crumbs {
                a href="/infrastructure" { "Infrastructure" } " / "
                a href=(LIST) { "Machine policies" } " / " (p.name)
            }
            div.title-row {
                h1 { (p.name) }
                @if p.is_default { span.tag.default { "default" } }
            }
            @if !p.description.is_empty() { p.muted { (p.description) } }
            (tabs(Tab::Policies))
        }
        div.infra-split {
            section.panel aria-labelledby="settings-title" {
                h2 #settings-title { "Settings" }
                dl.settings {
                    div { dt { "Used by" } dd { (plural(targets, "deployment target")) ", " (plural(workers, "worker")) } }
                    div { dt { "Health check every" } dd { (span(&p.machine_health_check_policy.health_check_interval)) } }
                    div { dt { "Health check" } dd { (check_type_label(p.machine_health_check_policy.health_check_type)) } }
                    div { dt { "Machines" } dd { (connectivity_label(p.machine_connectivity_policy.machine_connectivity_behavior)) } }
                    div { dt { "Connect timeout" } dd { (span(&p.connection_connect_timeout)) } }
                    div { dt { "Connection retries" } dd { (p.connection_retry_count_limit) ", at most " (span(&p.connection_retry_time_limit)) ", " (span(&p.connection_retry_sleep_interval)) " apart" } }
                    div { dt { "Polling request queue timeout" } dd { (span(&p.polling_request_queue_timeout)) } }
                    div { dt { "Package cache" } dd {
                        "Keeps " (plural(usize::try_from(retention.versions_to_keep()).unwrap_or(usize::MAX), "version"))
                        " of each package" @if retention.strategy.eq_ignore_ascii_case("Default") { " (the default)" }
                    } }
                }
            }
            (edit_form(viewer, p, form, problems))
        }
    };
    page(viewer, &p.name, body)
}

fn check_type_label(t: HealthCheckType) -> &'static str {
    match t {
        HealthCheckType::RunScript => "Connect and run the health-check script",
        HealthCheckType::OnlyConnectivity => "Connect only",
    }
}

fn connectivity_label(b: MachineConnectivityBehavior) -> &'static str {
    match b {
        MachineConnectivityBehavior::ExpectedToBeOnline => "Expected to be online",
        MachineConnectivityBehavior::MayBeOfflineAndCanBeSkipped => {
            "May be offline; skipped in deployments"
        }
    }
}

fn edit_form(viewer: &Viewer, p: &MachinePolicy, f: &PolicyForm, problems: &Problems) -> Markup {
    let span_hint = Some("A duration as hh:mm:ss, or d.hh:mm:ss for days (01:00:00 is an hour).");
    html! {
        section.panel.infra-form aria-labelledby="edit-policy-title" {
            h2 #edit-policy-title { "Change the policy" }
            form method="post" action=(format!("{LIST}/{}", p.id)) {
                (forms::csrf(viewer.csrf()))
                (problems.summary())
                (forms::text_field(problems, "policy-name", "Name", "Name", &f.name, None))
                (forms::text_area(problems, "policy-description", "Description", "Description", &f.description, 2))
                (forms::text_field(problems, "policy-health-check-interval", "HealthCheckInterval", "Health check interval", &f.health_check_interval, span_hint))
                (select(problems, "policy-health-check-type", "HealthCheckType", "Health check", &f.health_check_type,
                    &[("RunScript", check_type_label(HealthCheckType::RunScript)),
                      ("OnlyConnectivity", check_type_label(HealthCheckType::OnlyConnectivity))]))
                (select(problems, "policy-connectivity", "MachineConnectivityBehavior", "Machines", &f.connectivity,
                    &[("ExpectedToBeOnline", connectivity_label(MachineConnectivityBehavior::ExpectedToBeOnline)),
                      ("MayBeOfflineAndCanBeSkipped", connectivity_label(MachineConnectivityBehavior::MayBeOfflineAndCanBeSkipped))]))
                (forms::text_field(problems, "policy-connect-timeout", "ConnectionConnectTimeout", "Connect timeout", &f.connect_timeout, None))
                (forms::text_field(problems, "policy-retry-count", "ConnectionRetryCountLimit", "Connection retries", &f.retry_count, None))
                (forms::text_field(problems, "policy-retry-time-limit", "ConnectionRetryTimeLimit", "Retry for at most", &f.retry_time_limit, None))
                div.form-actions {
                    button.primary #save-policy type="submit" { "Save policy" }
                    a href=(LIST) { "Back to the policies" }
                }
            }
        }
    }
}

fn select(
    problems: &Problems,
    id: &str,
    name: &str,
    label: &str,
    value: &str,
    options: &[(&str, &str)],
) -> Markup {
    html! {
        div.field.invalid[problems.has(name)] {
            label for=(id) { (label) }
            select #(id) name=(name) {
                @for (v, text) in options {
                    option value=(v) selected[*v == value] { (text) }
                }
            }
            (problems.under(id, name))
        }
    }
}
