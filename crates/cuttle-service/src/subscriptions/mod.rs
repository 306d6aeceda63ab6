//! Subscriptions: people hear about events in their own tools. A
//! subscription filters the audit log's events; each event it matches is
//! delivered to its webhook (signed JSON) and its email addresses, through
//! a durable outbox ([`cuttle_store::subscriptions`]) that a dispatcher
//! ([`dispatch`]) drains in the background.

pub mod dispatch;
pub mod email;
pub mod target;
pub mod webhook;

use crate::actor::Actor;
use crate::instance::Instance;
use crate::resources::{audit_change, check_name, get_in_space};
use crate::{Result, ServiceError};
use cuttle_model::ids::Collection;
use cuttle_model::machine_policy::parse_timespan;
use cuttle_model::subscription::{SensitiveValue, Subscription};
use cuttle_model::{Environment, Project, ProjectGroup, Team};
use cuttle_store::subscriptions::{Attempt, Delivery};
use cuttle_store::Store;
use rand::RngCore;
use serde::Serialize;
use std::time::Duration;

pub use dispatch::Dispatcher;

/// How deliveries are retried and where they may go.
#[derive(Clone, Debug)]
pub struct SubscriptionConfig {
    /// The wait before the first retry; each retry after doubles it.
    pub retry_first: Duration,
    /// The longest wait between two attempts.
    pub retry_most: Duration,
    /// How long a delivery is retried before it is abandoned.
    pub keep_trying_for: Duration,
    /// Whether webhooks may reach link-local addresses (169.254.0.0/16,
    /// fe80::/10), where cloud metadata services answer. Off by default:
    /// a subscription must not become a way to read them.
    pub allow_link_local: bool,
    /// Where email is sent from; `None` means email is not configured.
    pub smtp: Option<email::SmtpConfig>,
    /// The server's address as users reach it, put in payloads' `ServerUri`.
    pub server_url: Option<String>,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        SubscriptionConfig {
            retry_first: Duration::from_secs(1),
            retry_most: Duration::from_secs(300),
            keep_trying_for: Duration::from_secs(3 * 24 * 3600),
            allow_link_local: false,
            smtp: None,
            server_url: None,
        }
    }
}

/// Longest and shortest time one webhook call may take.
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));
pub const DEFAULT_TIMEOUT: &str = "00:00:10";

/// Headers the server sets itself, which a subscription may not replace.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "transfer-encoding",
    "connection",
];

/// The webhook call's timeout.
pub fn webhook_timeout(s: &Subscription) -> Duration {
    let text = &s.event_notification_subscription.webhook_timeout;
    parse_timespan(text).unwrap_or(Duration::from_secs(10))
}

async fn validate(inst: &Instance, space_id: &str, s: &mut Subscription) -> Result<()> {
    let mut errors = vec![];
    check_name("subscription", &s.name, &mut errors);
    s.name = s.name.trim().to_owned();
    if s.kind.is_empty() {
        s.kind = "Event".into();
    } else if s.kind != "Event" {
        errors.push(format!(
            "Type must be 'Event', the only kind of subscription there is, not '{}'",
            s.kind
        ));
    }
    let n = &mut s.event_notification_subscription;
    n.webhook_uri = n.webhook_uri.trim().to_owned();
    if n.webhook_uri.is_empty() && n.email_addresses.is_empty() && n.email_teams.is_empty() {
        errors.push(
            "Give the subscription somewhere to send events: a WebhookURI, EmailAddresses, EmailTeams, or several"
                .into(),
        );
    }
    if !n.webhook_uri.is_empty() {
        if let Err(e) =
            target::check_url(&n.webhook_uri, inst.config.subscriptions.allow_link_local).await
        {
            errors.push(format!("WebhookURI: {e}"));
        }
    }
    if n.webhook_timeout.trim().is_empty() {
        n.webhook_timeout = DEFAULT_TIMEOUT.into();
    }
    match parse_timespan(n.webhook_timeout.trim()) {
        Ok(t) if (TIMEOUT_RANGE.0..=TIMEOUT_RANGE.1).contains(&t) => {}
        _ => errors.push(format!(
            "WebhookTimeout '{}' must be a time span from 00:00:01 to 00:05:00",
            n.webhook_timeout
        )),
    }
    let key = n.webhook_header_key.trim().to_owned();
    if !key.is_empty() || !n.webhook_header_value.is_empty() {
        let lower = key.to_ascii_lowercase();
        if key.is_empty() {
            errors.push("WebhookHeaderValue is set but WebhookHeaderKey is empty".into());
        } else if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(&n.webhook_header_value).is_err()
        {
            errors.push(format!(
                "WebhookHeaderKey '{key}' or its value is not a valid HTTP header"
            ));
        } else if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-cuttle-") {
            errors.push(format!(
                "WebhookHeaderKey '{key}' is set by the server itself; choose another header"
            ));
        }
    }
    n.webhook_header_key = key;
    n.email_teams.dedup();
    for id in &n.email_teams {
        // A team of this space, or of the whole installation.
        match inst.store.get::<Team>(id).await? {
            Some(t) if t.space_id.as_deref().is_none_or(|s| s == space_id) => {}
            _ => errors.push(format!("EmailTeams: the team '{id}' was not found")),
        }
    }
    for address in &n.email_addresses {
        if address.parse::<lettre::Address>().is_err() {
            errors.push(format!(
                "EmailAddresses: '{address}' is not an email address"
            ));
        }
    }
    if (!n.email_addresses.is_empty() || !n.email_teams.is_empty())
        && inst.config.subscriptions.smtp.is_none()
    {
        errors.push(
            "EmailAddresses, EmailTeams: this server has no SMTP server to send email through (start it with --smtp-url and --smtp-from)"
                .into(),
        );
    }
    if let Some(secret) = &n.webhook_signing_secret.new_value {
        if secret.len() < 16 {
            errors.push("WebhookSigningSecret must be at least 16 characters".into());
        }
    }
    let f = &n.filter;
    // Octopus's event agents are its own list of clients; Cuttle keeps the
    // User-Agent each caller sent as it was, which no fixed list names.
    if !f.event_agents.is_empty() {
        errors.push(
            "Filter.EventAgents is not supported: Cuttle records each event's user agent as the caller sent it (the event's UserAgent), not a fixed list of agents to choose from; filter by Users instead"
                .into(),
        );
    }
    if !f.tags.is_empty() {
        errors.push(
            "Filter.Tags is not supported: tags are tenant tags, and Cuttle has no tenants".into(),
        );
    }
    if !f.tenants.is_empty() {
        errors.push(format!(
            "Filter.Tenants: the tenant '{}' was not found",
            f.tenants[0]
        ));
    }
    let categories = crate::events::categories();
    for c in &f.event_categories {
        if !categories.iter().any(|k| &k.id == c) {
            errors.push(format!(
                "Filter.EventCategories: '{c}' is not an event category (GET /api/events/categories lists them)"
            ));
        }
    }
    let groups = crate::events::groups();
    for g in &f.event_groups {
        if !groups.iter().any(|k| k.eq_ignore_ascii_case(g)) {
            errors.push(format!(
                "Filter.EventGroups: '{g}' is not a group of events; the groups are {}",
                groups.join(", ")
            ));
        }
    }
    for t in &f.document_types {
        if !crate::events::DOCUMENT_TYPES.contains(&t.as_str()) {
            errors.push(format!(
                "Filter.DocumentTypes: '{t}' is not a document type (GET /api/events/documenttypes lists them)"
            ));
        }
    }
    let store = &inst.store;
    for id in &f.projects {
        if get_in_space::<Project>(store, space_id, id).await.is_err() {
            errors.push(format!("Filter.Projects: the project '{id}' was not found"));
        }
    }
    for id in &f.project_groups {
        if get_in_space::<ProjectGroup>(store, space_id, id)
            .await
            .is_err()
        {
            errors.push(format!(
                "Filter.ProjectGroups: the project group '{id}' was not found"
            ));
        }
    }
    for id in &f.environments {
        if get_in_space::<Environment>(store, space_id, id)
            .await
            .is_err()
        {
            errors.push(format!(
                "Filter.Environments: the environment '{id}' was not found"
            ));
        }
    }
    for id in &f.users {
        if store.user(id).await?.is_none() {
            errors.push(format!("Filter.Users: the user '{id}' was not found"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid(errors))
    }
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Creates a subscription. Without a signing secret it is given one, which
/// the answer carries this once.
pub async fn create_subscription(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    mut s: Subscription,
) -> Result<Subscription> {
    validate(inst, space_id, &mut s).await?;
    s.space_id = space_id.into();
    let given = s
        .event_notification_subscription
        .webhook_signing_secret
        .new_value
        .take();
    let generated = given.is_none();
    let secret = given.unwrap_or_else(new_secret);
    s.event_notification_subscription.webhook_signing_secret = SensitiveValue {
        has_value: true,
        new_value: None,
    };
    let mut tx = inst.store.begin().await?;
    s.id = tx.next_id(Collection::Subscriptions).await?;
    tx.insert(&s).await?;
    tx.set_subscription_secret(&s.id, &inst.master_key.seal(&secret))
        .await?;
    let message = format!("Subscription {} was created", s.name);
    audit_change(&mut tx, caller, None, Some(&s), message, vec![]).await?;
    tx.commit().await?;
    if generated {
        s.event_notification_subscription
            .webhook_signing_secret
            .new_value = Some(secret);
    }
    Ok(s)
}

/// Replaces a subscription; its signing secret stays unless a new one is
/// given.
pub async fn update_subscription(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    id: &str,
    mut s: Subscription,
) -> Result<Subscription> {
    let existing: Subscription = get_in_space(&inst.store, space_id, id).await?;
    validate(inst, space_id, &mut s).await?;
    s.id = existing.id.clone();
    s.space_id = existing.space_id.clone();
    let new_secret = s
        .event_notification_subscription
        .webhook_signing_secret
        .new_value
        .take();
    s.event_notification_subscription.webhook_signing_secret = SensitiveValue {
        has_value: true,
        new_value: None,
    };
    let mut tx = inst.store.begin().await?;
    tx.update(&s).await?;
    if let Some(secret) = new_secret {
        tx.set_subscription_secret(&s.id, &inst.master_key.seal(&secret))
            .await?;
    }
    let message = format!("Subscription {} was modified", s.name);
    audit_change(&mut tx, caller, Some(&existing), Some(&s), message, vec![]).await?;
    tx.commit().await?;
    Ok(s)
}

/// Deletes a subscription with its undelivered queue and its history.
pub async fn delete_subscription(
    inst: &Instance,
    caller: &Actor,
    space_id: &str,
    id: &str,
) -> Result<()> {
    let s: Subscription = get_in_space(&inst.store, space_id, id).await?;
    let mut tx = inst.store.begin().await?;
    tx.delete::<Subscription>(&s.id).await?;
    tx.delete_subscription_rows(&s.id).await?;
    let message = format!("Subscription {} was deleted", s.name);
    audit_change(&mut tx, caller, Some(&s), None, message, vec![]).await?;
    tx.commit().await?;
    Ok(())
}

/// One delivery as the delivery history shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DeliveryRecord {
    pub id: String,
    pub subscription_id: String,
    /// `Webhook` or `Email`.
    pub channel: String,
    pub event_id: String,
    pub event_category: String,
    /// `Pending`, `Delivered` or `Abandoned`.
    pub state: String,
    pub attempts: u32,
    pub created: String,
    pub delivered: Option<String>,
    /// When a pending delivery is next tried.
    pub next_attempt: Option<String>,
    pub last_error: Option<String>,
    pub attempt_history: Vec<AttemptRecord>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct AttemptRecord {
    pub attempt: u32,
    pub at: String,
    pub succeeded: bool,
    pub outcome: String,
    pub duration_milliseconds: i64,
}

impl From<Attempt> for AttemptRecord {
    fn from(a: Attempt) -> Self {
        AttemptRecord {
            attempt: a.attempt,
            at: a.at,
            succeeded: a.succeeded,
            outcome: a.outcome,
            duration_milliseconds: a.duration_ms,
        }
    }
}

/// A subscription's deliveries, newest first, with their attempts; and how
/// many there are.
pub async fn deliveries(
    store: &Store,
    space_id: &str,
    id: &str,
    skip: i64,
    take: i64,
) -> Result<(Vec<DeliveryRecord>, i64)> {
    let s: Subscription = get_in_space(store, space_id, id).await?;
    let (found, total) = store.subscription_deliveries(&s.id, skip, take).await?;
    let mut out = Vec::with_capacity(found.len());
    for d in found {
        let attempts = store.delivery_attempts(&d.id).await?;
        out.push(record(d, attempts));
    }
    Ok((out, total))
}

fn record(d: Delivery, attempts: Vec<Attempt>) -> DeliveryRecord {
    let pending = d.state == cuttle_store::subscriptions::DeliveryState::Pending;
    DeliveryRecord {
        id: d.id,
        subscription_id: d.subscription_id,
        channel: d.channel,
        event_id: d.event_id,
        event_category: d.category,
        state: d.state.as_str().into(),
        attempts: d.attempts,
        created: d.created_at,
        delivered: d.delivered_at,
        next_attempt: pending
            .then(|| cuttle_model::Timestamp::from_millis(d.next_attempt_at).to_string()),
        last_error: d.last_error,
        attempt_history: attempts.into_iter().map(AttemptRecord::from).collect(),
    }
}
