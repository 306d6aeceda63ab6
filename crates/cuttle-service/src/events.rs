//! Reading the audit log: Octopus's `/api/events` filters turned into one
//! store query, with every bad value refused with a message that says what
//! was expected. The log has no command that changes it.

use crate::audit::category;
pub use crate::event_access::EventReader;
use crate::paging::{split_list, ListParams};
use crate::{Result, ServiceError};
use cuttle_model::event::group;
use cuttle_model::{Event, EventGroup, EventKind, MessageReference, Project, Timestamp};
use cuttle_store::{DocumentQuery, EventQuery, Store, StoredEvent};
use serde::Deserialize;

/// The filters of `GET /api/events` beside `skip`, `take` and `ids`. Every
/// list is comma-joined; each filter given must hold, and within one any of
/// its values will do (`regarding` wants all of its documents).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct EventFilters {
    /// User ids.
    pub users: Option<String>,
    /// Project ids.
    pub projects: Option<String>,
    /// Project group ids: events about the group or a project in it.
    #[serde(rename = "projectGroups", alias = "projectgroups")]
    #[param(rename = "projectGroups")]
    pub project_groups: Option<String>,
    /// Environment ids.
    pub environments: Option<String>,
    /// Categories (`Created`, `DeploymentSucceeded`, …).
    #[serde(rename = "eventCategories", alias = "eventcategories")]
    #[param(rename = "eventCategories")]
    pub event_categories: Option<String>,
    /// Groups of categories: Octopus's ids (`Document`, `Deployment`,
    /// `DeploymentCritical`, `MachineCritical`, …) and `User`, `ServerTask`;
    /// `GET /api/events/groups` lists them with their categories.
    #[serde(rename = "eventGroups", alias = "eventgroups")]
    #[param(rename = "eventGroups")]
    pub event_groups: Option<String>,
    /// Kinds of document the event is about (`Projects`, `Environments`, …).
    #[serde(rename = "documentTypes", alias = "documenttypes")]
    #[param(rename = "documentTypes")]
    pub document_types: Option<String>,
    /// Document ids the event must be about, all of them.
    pub regarding: Option<String>,
    /// Document ids the event must be about, any of them.
    #[serde(rename = "regardingAny", alias = "regardingany")]
    #[param(rename = "regardingAny")]
    pub regarding_any: Option<String>,
    /// Occurred at or after: an ISO 8601 date or date and time.
    pub from: Option<String>,
    /// Occurred at or before: an ISO 8601 date (the whole day) or date and time.
    pub to: Option<String>,
    /// The smallest event number (`AutoId`) to include.
    #[serde(rename = "fromAutoId", alias = "fromautoid")]
    #[param(rename = "fromAutoId")]
    pub from_auto_id: Option<String>,
    /// The greatest event number (`AutoId`) to include.
    #[serde(rename = "toAutoId", alias = "toautoid")]
    #[param(rename = "toAutoId")]
    pub to_auto_id: Option<String>,
    /// Space ids (on `/api/events` only; a space's route is that space).
    pub spaces: Option<String>,
}

/// The groups' ids, for `eventGroups` (see [`cuttle_model::event::group`]).
pub fn groups() -> Vec<&'static str> {
    group::ids()
}

/// The kinds of document events are about, for `documentTypes`.
pub const DOCUMENT_TYPES: [&str; 22] = [
    "ApiKeys",
    "BuildInformation",
    "Certificates",
    "Channels",
    "Deployments",
    "deploymentprocess",
    "Environments",
    "Interruptions",
    "LibraryVariableSets",
    "Lifecycles",
    "MachinePolicies",
    "Machines",
    "Packages",
    "ProjectGroups",
    "Projects",
    "Releases",
    "ServerTasks",
    "Spaces",
    "Users",
    "variableset",
    "WorkerPools",
    "Workers",
];

pub fn categories() -> Vec<EventKind> {
    let mut names: Vec<&str> = category::ALL.iter().map(|(c, _)| *c).collect();
    names.sort_unstable();
    names.into_iter().map(kind).collect()
}

/// The groups with the categories each holds, for `GET /api/events/groups`.
pub fn group_list() -> Vec<EventGroup> {
    group::ALL
        .iter()
        .map(|g| EventGroup {
            id: g.id.to_owned(),
            name: g.name.to_owned(),
            event_categories: g.categories.iter().map(|c| (*c).to_owned()).collect(),
        })
        .collect()
}

pub fn document_types() -> Vec<EventKind> {
    DOCUMENT_TYPES.iter().copied().map(kind).collect()
}

fn kind(name: &str) -> EventKind {
    EventKind {
        id: name.to_owned(),
        name: name.to_owned(),
    }
}

/// A page of events, newest first, on `space`'s route (or every space's),
/// and how many match in all.
/// Only what `reader` may read is listed or counted.
pub async fn list(
    store: &Store,
    reader: &EventReader,
    space: Option<&str>,
    filters: &EventFilters,
    paging: &ListParams,
) -> Result<(Vec<Event>, i64)> {
    let Some(mut q) = query(store, space, filters, paging).await? else {
        return Ok((Vec::new(), 0));
    };
    if !reader.narrow(&mut q) {
        return Ok((Vec::new(), 0));
    }
    let (events, total) = store.list_events(&q).await?;
    Ok((events.into_iter().map(resource).collect(), total))
}

/// One event; on a space's route, only that space's. One `reader` may not
/// read answers as missing.
pub async fn get(
    store: &Store,
    reader: &EventReader,
    space: Option<&str>,
    id: &str,
) -> Result<Event> {
    match store.event(id).await? {
        Some(e) if space.is_none() || e.space_id.as_deref() == space => {
            let e = resource(e);
            match reader.reads(&e) {
                true => Ok(e),
                false => Err(ServiceError::not_found("event", id)),
            }
        }
        _ => Err(ServiceError::not_found("event", id)),
    }
}

/// The store query the filters ask for, or `None` where no event can match
/// them (categories none of which is in the groups asked for); a bad value
/// is a 400 naming it.
pub async fn query(
    store: &Store,
    space: Option<&str>,
    f: &EventFilters,
    paging: &ListParams,
) -> Result<Option<EventQuery>> {
    let mut errors = vec![];
    let skip = paging.skip.unwrap_or(0);
    if skip < 0 {
        errors.push(format!("skip must be 0 or more, not {skip}"));
    }
    let take = paging.take.unwrap_or(crate::paging::DEFAULT_TAKE);
    if take < 0 {
        errors.push(format!(
            "take must be 0 or more (or {} for all), not {take}",
            crate::paging::TAKE_ALL
        ));
    }
    let list = |v: &Option<String>| split_list(v.as_deref());
    let mut q = EventQuery {
        space_ids: match space {
            Some(s) => vec![s.to_owned()],
            None => list(&f.spaces),
        },
        ids: paging.ids(),
        user_ids: list(&f.users),
        categories: list(&f.event_categories),
        document_types: list(&f.document_types),
        skip: skip.max(0),
        take: Some(take.clamp(0, crate::paging::TAKE_ALL)),
        ..Default::default()
    };
    // Groups narrow as every other filter does: with categories given too,
    // an event must be of one of them and in one of the groups.
    let asked_groups = list(&f.event_groups);
    let mut in_groups: Vec<String> = vec![];
    for g in &asked_groups {
        match group::find(g) {
            Some(found) => in_groups.extend(found.categories.iter().map(|c| (*c).to_owned())),
            None => errors.push(format!(
                "eventGroups: '{g}' is not a group of events; the groups are {}",
                groups().join(", ")
            )),
        }
    }
    let mut nothing_matches = false;
    if !asked_groups.is_empty() {
        if q.categories.is_empty() {
            q.categories = in_groups;
        } else {
            q.categories.retain(|c| in_groups.contains(c));
            nothing_matches = q.categories.is_empty();
        }
        q.categories.sort();
        q.categories.dedup();
    }
    for set in [
        list(&f.projects),
        list(&f.environments),
        list(&f.regarding_any),
    ] {
        if !set.is_empty() {
            q.document_sets.push(set);
        }
    }
    for id in list(&f.regarding) {
        q.document_sets.push(vec![id]);
    }
    let groups = list(&f.project_groups);
    if !groups.is_empty() {
        // A group's events, and those of each project in it.
        let mut set = groups.clone();
        let projects = DocumentQuery {
            space_id: space.map(str::to_owned),
            ..Default::default()
        };
        for p in store.list::<Project>(&projects).await?.items {
            if groups.contains(&p.project_group_id) {
                set.push(p.id);
            }
        }
        q.document_sets.push(set);
    }
    q.from = date("from", f.from.as_deref(), false, &mut errors);
    q.to = date("to", f.to.as_deref(), true, &mut errors);
    q.from_auto_id = auto_id("fromAutoId", f.from_auto_id.as_deref(), &mut errors);
    q.to_auto_id = auto_id("toAutoId", f.to_auto_id.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ServiceError::invalid(errors));
    }
    Ok((!nothing_matches).then_some(q))
}

/// An ISO 8601 date and time, or a date alone: the day's start for `from`,
/// its last millisecond for `to`. A time without an offset is UTC.
fn date(
    name: &str,
    text: Option<&str>,
    end_of_day: bool,
    errors: &mut Vec<String>,
) -> Option<Timestamp> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    let parsed = Timestamp::parse(text)
        .or_else(|| Timestamp::parse(&format!("{text}Z")))
        .or_else(|| {
            let day = Timestamp::parse(&format!("{text}T00:00:00Z"))?;
            Some(if end_of_day {
                day.add_millis(24 * 60 * 60 * 1000 - 1)
            } else {
                day
            })
        });
    if parsed.is_none() {
        errors.push(format!(
            "{name}: '{text}' is not a date; use ISO 8601, such as 2026-12-06 or 2026-12-06T18:30:00Z"
        ));
    }
    parsed
}

fn auto_id(name: &str, text: Option<&str>, errors: &mut Vec<String>) -> Option<i64> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    match text.parse::<i64>() {
        Ok(n) if n >= 0 => Some(n),
        _ => {
            errors.push(format!(
                "{name}: '{text}' is not an event number; give a whole number, 0 or more"
            ));
            None
        }
    }
}

/// The API's shape of a stored event.
pub fn resource(e: StoredEvent) -> Event {
    let ev = e.event;
    let message_references = ev
        .related_document_ids
        .iter()
        .filter_map(|id| {
            ev.message.find(id.as_str()).map(|at| MessageReference {
                referenced_document_id: id.clone(),
                starting_index: ev.message[..at].chars().count(),
                length: id.chars().count(),
            })
        })
        .collect();
    Event {
        id: e.id,
        space_id: e.space_id,
        category: ev.category,
        user_id: ev.user_id,
        username: ev.username,
        is_service: ev.is_service,
        identity_established_with: ev.identity_established_with,
        user_agent: ev.user_agent,
        ip_address: ev.ip_address,
        occurred: Timestamp::parse(&e.occurred),
        message_html: html_escape(&ev.message),
        message: ev.message,
        message_references,
        comments: None,
        details: ev.details,
        change_details: ev
            .change_details
            .and_then(|c| serde_json::from_str(&c).ok()),
        related_document_ids: ev.related_document_ids,
        auto_id: e.seq,
    }
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_take_iso_8601_and_refuse_the_rest() {
        let mut errors = vec![];
        let day = date("from", Some("2026-12-06"), false, &mut errors).unwrap();
        assert_eq!(day.to_string(), "2026-12-06T00:00:00.000+00:00");
        let end = date("to", Some("2026-12-06"), true, &mut errors).unwrap();
        assert_eq!(end.to_string(), "2026-12-06T23:59:59.999+00:00");
        let local = date("to", Some("2026-12-06T10:00:00"), true, &mut errors).unwrap();
        assert_eq!(local.to_string(), "2026-12-06T10:00:00.000+00:00");
        assert!(errors.is_empty());
        assert!(date("from", Some("06/12/2026"), false, &mut errors).is_none());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("'06/12/2026' is not a date"),
            "{errors:?}"
        );
    }

    #[test]
    fn auto_ids_are_whole_numbers() {
        let mut errors = vec![];
        assert_eq!(auto_id("fromAutoId", Some("12"), &mut errors), Some(12));
        assert_eq!(auto_id("fromAutoId", Some("-1"), &mut errors), None);
        assert_eq!(auto_id("toAutoId", Some("x"), &mut errors), None);
        assert_eq!(errors.len(), 2);
    }
}
