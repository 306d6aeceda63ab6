//! The dispatcher: fans events out of the outbox into deliveries, and sends
//! each subscription's deliveries in order, retrying with backoff. It runs
//! beside the task runner and never holds up a deployment: a slow or dead
//! receiver delays only its own subscription's queue. Only the cluster's
//! leader dispatches, so no delivery is sent by two nodes at once.

use super::email::{self, EmailBody};
use super::webhook;
use crate::instance::Instance;
use crate::Result;
use cuttle_model::ids::Collection;
use cuttle_model::subscription::{EventFacts, Subscription};
use cuttle_model::{Project, Timestamp};
use cuttle_store::subscriptions::{AfterAttempt, Attempt, Delivery, NewDelivery, OutboxEvent};
use cuttle_store::DocumentQuery;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Events fanned out per transaction.
const FAN_OUT_BATCH: i64 = 200;
/// Deliveries in flight at once, across subscriptions.
const MOST_IN_FLIGHT: usize = 16;
/// How often the outbox and the queues are looked at when nothing wakes
/// the dispatcher sooner, where other nodes record events too.
const POLL: Duration = Duration::from_millis(500);
/// Where no other node records events (see
/// [`crate::instance::Instance::is_sole_node`]), every event this process
/// records wakes the dispatcher, and it sleeps until the next delivery is
/// due; this look is only a safety net.
const SOLE_NODE_POLL: Duration = Duration::from_secs(60);
/// How long the dispatcher gathers events after it hears of one: a
/// deployment records several in quick succession (queued, started,
/// ended), and gathered they are fanned out in one transaction, one flush
/// to disk, instead of one each.
const GATHER: Duration = Duration::from_millis(200);

pub const WEBHOOK: &str = "Webhook";
pub const EMAIL: &str = "Email";

/// A handle to wake the dispatcher (after a change it should see at once).
#[derive(Clone, Default)]
pub struct Dispatcher {
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs the dispatcher until the instance is closed or gone.
pub(crate) fn follow(
    inst: Weak<Instance>,
    dispatcher: Dispatcher,
    stopping: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let client = match inst.upgrade() {
            Some(i) => webhook::client(i.config.subscriptions.allow_link_local),
            None => return,
        };
        let mut in_flight: HashSet<(String, String)> = HashSet::new();
        let mut sending = tokio::task::JoinSet::new();
        loop {
            let Some(instance) = inst.upgrade() else {
                return;
            };
            let leads = instance.is_leader();
            // Events from here on are after this look.
            let seen = instance.store.events_seen();
            if leads {
                if let Err(e) = fan_out(&instance).await {
                    tracing::warn!(error = %e, "events could not be fanned out to subscriptions");
                }
            }
            let due = match leads {
                true => instance.store.due_deliveries(now_ms(), 64).await,
                false => Ok(vec![]),
            };
            match due {
                Ok(due) => {
                    for d in due {
                        let key = (d.subscription_id.clone(), d.channel.clone());
                        if in_flight.len() >= MOST_IN_FLIGHT || in_flight.contains(&key) {
                            continue;
                        }
                        in_flight.insert(key.clone());
                        let (i, c) = (instance.clone(), client.clone());
                        sending.spawn(async move {
                            if let Err(e) = attempt(&i, &c, d).await {
                                tracing::warn!(error = %e, "a subscription delivery could not be recorded");
                            }
                            key
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "subscription deliveries could not be read"),
            }
            // Sleep until woken (an event recorded here), a send finishes,
            // or the next look.
            let wait = next_look(&instance, leads).await;
            let wake = dispatcher.wake.clone();
            let store = instance.store.clone();
            drop(instance);
            tokio::select! {
                _ = wake.notified() => {}
                _ = store.events_recorded_since(seen) => {
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER) => {}
                        _ = stopping.cancelled() => return,
                    }
                }
                Some(done) = sending.join_next(), if !sending.is_empty() => {
                    if let Ok(key) = done {
                        in_flight.remove(&key);
                    }
                    while let Some(Ok(key)) = sending.try_join_next() {
                        in_flight.remove(&key);
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.cancelled() => return,
            }
            if sending.is_empty() {
                in_flight.clear();
            }
        }
    });
}

/// How long the dispatcher may sleep when nothing wakes it: [`POLL`] where
/// other nodes record events (or lead); a sole node leads for good and hears
/// of every event, so it sleeps until its next delivery is due.
async fn next_look(inst: &Instance, leads: bool) -> Duration {
    if !inst.is_sole_node() || !leads {
        return POLL;
    }
    match inst.store.next_delivery_due().await {
        // One due now is being sent, or waits behind one that is; the
        // send's end wakes the dispatcher. Looking again soon covers one
        // that could not be read.
        Ok(Some(at)) => {
            let in_ms = at.saturating_sub(now_ms());
            match u64::try_from(in_ms) {
                Ok(ms) if ms > 0 => Duration::from_millis(ms).min(SOLE_NODE_POLL),
                _ => POLL,
            }
        }
        Ok(None) => SOLE_NODE_POLL,
        Err(_) => POLL,
    }
}

/// Moves waiting events into deliveries, a batch per transaction; returns
/// how many events it took.
pub async fn fan_out(inst: &Instance) -> Result<usize> {
    let mut total = 0;
    loop {
        if inst.store.outbox_is_empty().await? {
            return Ok(total);
        }
        let mut tx = inst.store.begin().await?;
        let events = tx.outbox_events(FAN_OUT_BATCH).await?;
        if events.is_empty() {
            tx.commit().await?;
            return Ok(total);
        }
        let mut by_space: HashMap<String, SpaceSubscriptions> = HashMap::new();
        let batch_id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        for (n, e) in events.iter().enumerate() {
            if let Some(space) = &e.space_id {
                if !by_space.contains_key(space) {
                    by_space.insert(space.clone(), SpaceSubscriptions::load(inst, space).await?);
                }
                let subscriptions = &by_space[space];
                let matching = subscriptions.matching(e);
                // Read once per event, and only when some subscription wants it.
                let event = match matching.first() {
                    Some(_) => event_resource(inst, e).await?,
                    None => Value::Null,
                };
                for s in matching {
                    let to = subscriptions.recipients(s);
                    for (channel, body) in
                        payloads(inst, s, to, e, &event, &batch_id, n, events.len())?
                    {
                        let id = tx.next_id(Collection::SubscriptionDeliveries).await?;
                        let body = body(&id);
                        tx.insert_delivery(
                            &NewDelivery {
                                id,
                                subscription_id: s.id.clone(),
                                channel: channel.into(),
                                event_id: e.event_id.clone(),
                                category: e.category.clone(),
                                body,
                            },
                            now,
                        )
                        .await?;
                    }
                }
            }
            tx.remove_from_outbox(&e.event_id).await?;
        }
        tx.commit().await?;
        total += events.len();
    }
}

/// A space's enabled subscriptions, with the projects of the project
/// groups their filters name and the addresses of the teams they mail.
struct SpaceSubscriptions {
    subscriptions: Vec<Subscription>,
    group_projects: HashMap<String, Vec<String>>,
    team_addresses: HashMap<String, Vec<String>>,
}

impl SpaceSubscriptions {
    async fn load(inst: &Instance, space: &str) -> Result<Self> {
        let q = DocumentQuery::in_space(space);
        let subscriptions: Vec<Subscription> = inst
            .store
            .list::<Subscription>(&q)
            .await?
            .items
            .into_iter()
            .filter(|s| !s.is_disabled)
            .collect();
        let mut group_projects: HashMap<String, Vec<String>> = HashMap::new();
        if subscriptions.iter().any(|s| {
            !s.event_notification_subscription
                .filter
                .project_groups
                .is_empty()
        }) {
            for p in inst.store.list::<Project>(&q).await?.items {
                group_projects
                    .entry(p.project_group_id)
                    .or_default()
                    .push(p.id);
            }
        }
        let mut team_addresses = HashMap::new();
        if subscriptions
            .iter()
            .any(|s| !s.event_notification_subscription.email_teams.is_empty())
        {
            team_addresses = addresses_of_teams(inst).await?;
        }
        Ok(SpaceSubscriptions {
            subscriptions,
            group_projects,
            team_addresses,
        })
    }

    /// Where `s` mails an event: its own addresses and those of its teams'
    /// members as they are now, each once.
    fn recipients(&self, s: &Subscription) -> Vec<String> {
        let n = &s.event_notification_subscription;
        let mut to: Vec<String> = n.email_addresses.clone();
        for team in &n.email_teams {
            for address in self.team_addresses.get(team).into_iter().flatten() {
                if !to.iter().any(|t| t.eq_ignore_ascii_case(address)) {
                    to.push(address.clone());
                }
            }
        }
        to
    }

    /// The subscriptions `e` passes the filter of.
    fn matching(&self, e: &OutboxEvent) -> Vec<&Subscription> {
        let types: Vec<&str> = e
            .related_document_ids
            .iter()
            .map(|id| cuttle_store::events::document_type(id))
            .collect();
        let facts = EventFacts {
            category: &e.category,
            user_id: e.user_id.as_deref(),
            related_document_ids: &e.related_document_ids,
            document_types: &types,
        };
        self.subscriptions
            .iter()
            .filter(|s| {
                let f = &s.event_notification_subscription.filter;
                let in_groups: Vec<String> = f
                    .project_groups
                    .iter()
                    .filter_map(|g| self.group_projects.get(g))
                    .flatten()
                    .cloned()
                    .collect();
                f.matches(&facts, &in_groups)
            })
            .collect()
    }
}

/// Each team's members' email addresses: enabled users with one (the
/// Everyone team holds every user).
async fn addresses_of_teams(inst: &Instance) -> Result<HashMap<String, Vec<String>>> {
    let users: HashMap<String, String> = inst
        .store
        .users()
        .await?
        .into_iter()
        .filter(|u| u.is_active && u.email_address.parse::<lettre::Address>().is_ok())
        .map(|u| (u.id, u.email_address))
        .collect();
    let mut out = HashMap::new();
    for team in inst.store.access_documents().await?.teams {
        let mut addresses: Vec<String> = match team.id.as_str() {
            cuttle_model::permission::EVERYONE_TEAM_ID => users.values().cloned().collect(),
            _ => team
                .member_user_ids
                .iter()
                .filter_map(|id| users.get(id).cloned())
                .collect(),
        };
        addresses.sort();
        out.insert(team.id, addresses);
    }
    Ok(out)
}

/// An event as subscriptions receive it: as `GET /api/events/{id}` answers
/// it.
pub async fn event_resource(inst: &Instance, e: &OutboxEvent) -> Result<Value> {
    let everything = crate::events::EventReader::everything();
    let event = crate::events::get(&inst.store, &everything, None, &e.event_id).await?;
    let mut v = serde_json::to_value(&event)
        .map_err(|err| crate::ServiceError::Internal(format!("an event: {err}")))?;
    v["Links"] = json!({ "Self": format!("/api/events/{}", e.event_id) });
    Ok(v)
}

type BodyFor = Box<dyn FnOnce(&str) -> String + Send>;

/// What each of a subscription's channels sends for an event; the body
/// is finished once the delivery's id is known.
#[allow(clippy::too_many_arguments)]
fn payloads(
    inst: &Instance,
    s: &Subscription,
    to: Vec<String>,
    e: &OutboxEvent,
    event: &Value,
    batch_id: &str,
    number: usize,
    of: usize,
) -> Result<Vec<(&'static str, BodyFor)>> {
    let n = &s.event_notification_subscription;
    let server = inst.config.subscriptions.server_url.clone();
    let mut out: Vec<(&'static str, BodyFor)> = vec![];
    if !n.webhook_uri.is_empty() {
        let now = Timestamp::now().to_string();
        let payload = json!({
            "Timestamp": now,
            "EventType": "SubscriptionPayload",
            "Payload": {
                "ServerUri": server,
                "ServerAuditUri": server.as_ref().map(|u| format!("{}/app#/configuration/audit", u.trim_end_matches('/'))),
                "BatchProcessingDate": now,
                "BatchId": batch_id,
                "TotalEventsInBatch": of,
                "EventNumberInBatch": number + 1,
                "Subscription": s,
                "Event": event,
            }
        });
        out.push((
            WEBHOOK,
            Box::new(move |id: &str| {
                let mut p = payload;
                p["Payload"]["DeliveryId"] = json!(id);
                p.to_string()
            }),
        ));
    }
    // A subscription whose teams have no addresses (yet) mails no one.
    if !to.is_empty() {
        let body = EmailBody {
            to,
            subject: format!("[Cuttle] {}", e.message),
            text: format!(
                "{}\n\nCategory: {}\nWhen: {}\nBy: {}\nEvent: {}\nRelated: {}\n\nSent for the subscription '{}'.\n",
                e.message,
                e.category,
                e.occurred_at,
                e.username.as_deref().unwrap_or("the server"),
                e.event_id,
                e.related_document_ids.join(", "),
                s.name
            ),
        };
        let text = serde_json::to_string(&body)
            .map_err(|e| crate::ServiceError::Internal(format!("an email body: {e}")))?;
        out.push((EMAIL, Box::new(move |_: &str| text)));
    }
    Ok(out)
}

/// Makes one attempt at a delivery and records it.
async fn attempt(inst: &Instance, client: &reqwest::Client, d: Delivery) -> Result<()> {
    let cfg = &inst.config.subscriptions;
    let Some(s) = inst.store.get::<Subscription>(&d.subscription_id).await? else {
        return Ok(()); // deleted meanwhile, with its queue
    };
    if s.is_disabled {
        return Ok(()); // kept until the subscription is enabled again
    }
    let timeout = super::webhook_timeout(&s);
    // A little past the timeout: a sender that died mid-attempt leaves the
    // delivery due again soon after.
    let lease_until = now_ms() + millis(timeout) + 5_000;
    if !inst.store.claim_delivery(&d, lease_until).await? {
        return Ok(());
    }
    let number = d.attempts + 1;
    let started = std::time::Instant::now();
    let at = Timestamp::now().to_string();
    let outcome = match d.channel.as_str() {
        WEBHOOK => {
            let secret = match inst.store.subscription_secret(&s.id).await? {
                Some(sealed) => inst
                    .master_key
                    .open(&sealed)
                    .map_err(|e| crate::ServiceError::Internal(e.to_string()))?,
                None => String::new(),
            };
            let n = &s.event_notification_subscription;
            let header = (!n.webhook_header_key.is_empty()).then_some((
                n.webhook_header_key.as_str(),
                n.webhook_header_value.as_str(),
            ));
            webhook::send(
                client,
                webhook::Request {
                    url: &n.webhook_uri,
                    body: &d.body,
                    secret: &secret,
                    delivery_id: &d.id,
                    category: &d.category,
                    attempt: number,
                    timeout,
                    extra_header: header,
                    allow_link_local: cfg.allow_link_local,
                },
            )
            .await
        }
        EMAIL => match (&cfg.smtp, serde_json::from_str::<EmailBody>(&d.body)) {
            (Some(smtp), Ok(body)) => email::send(smtp, &body, &d.id).await,
            (None, _) => Err("this server has no SMTP server configured".into()),
            (_, Err(e)) => Err(format!("the stored email is damaged: {e}")),
        },
        other => Err(format!("unknown channel '{other}'")),
    };
    let duration_ms = millis(started.elapsed());
    let (succeeded, text) = match outcome {
        Ok(t) => (true, t),
        Err(t) => (false, t),
    };
    let created = Timestamp::parse(&d.created_at).map_or(0, |t| t.millis());
    let then = if succeeded {
        AfterAttempt::Delivered
    } else if now_ms() - created >= millis(cfg.keep_trying_for) {
        AfterAttempt::Abandon
    } else {
        let wait = cuttle_model::subscription::retry_delay(number, cfg.retry_first, cfg.retry_most);
        AfterAttempt::RetryAt(now_ms() + millis(wait))
    };
    if !succeeded {
        tracing::info!(delivery = %d.id, subscription = %s.id, attempt = number, error = %text, "a subscription delivery failed; it will be retried");
    }
    inst.store
        .record_attempt(
            &d.id,
            &Attempt {
                attempt: number,
                at,
                succeeded,
                outcome: text,
                duration_ms,
            },
            then,
        )
        .await?;
    Ok(())
}
