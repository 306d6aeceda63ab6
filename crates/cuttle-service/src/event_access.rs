//! Which audit events a caller may read: those of the spaces where they
//! hold `EventView` (every space's and the installation's own with it
//! installation-wide), less, where their grant is narrowed to projects or
//! environments, the events about projects and environments outside it.

use crate::Result;
use cuttle_model::{Environment, Event, Permission, Permissions, Project, Scope};
use cuttle_store::{DocumentQuery, EventQuery, Store};
use std::collections::BTreeSet;

/// What of the log one caller reads, worked out once per request.
#[derive(Clone, Debug, Default)]
pub struct EventReader {
    /// `None`: every space's events and the installation's own.
    spaces: Option<BTreeSet<String>>,
    /// Projects and environments whose events are hidden.
    hidden: BTreeSet<String>,
}

impl EventReader {
    /// Everything: the server's own reading.
    pub fn everything() -> EventReader {
        EventReader::default()
    }

    /// What `perms` may read, on `route_space`'s route or across spaces.
    pub async fn of(
        store: &Store,
        perms: &Permissions,
        route_space: Option<&str>,
    ) -> Result<EventReader> {
        if perms.allows(Permission::EventView, &Scope::system()) {
            return Ok(EventReader::everything());
        }
        let spaces: BTreeSet<String> = perms
            .spaces()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| route_space.is_none_or(|r| r == s))
            .filter(|s| perms.allows_in_space(Permission::EventView, s))
            .collect();
        let mut hidden = BTreeSet::new();
        for space in &spaces {
            if perms.whole_in_space(Permission::EventView, space) {
                continue;
            }
            let in_space = DocumentQuery::in_space(space);
            let at = Scope::space(space);
            for p in store.list::<Project>(&in_space).await?.items {
                if !perms.allows(Permission::EventView, &at.clone().project(&p.id)) {
                    hidden.insert(p.id);
                }
            }
            for e in store.list::<Environment>(&in_space).await?.items {
                if !perms.allows(Permission::EventView, &at.clone().environment(&e.id)) {
                    hidden.insert(e.id);
                }
            }
        }
        Ok(EventReader {
            spaces: Some(spaces),
            hidden,
        })
    }

    /// Narrows `q` to what may be read; `false` when nothing may.
    pub fn narrow(&self, q: &mut EventQuery) -> bool {
        if let Some(mine) = &self.spaces {
            if q.space_ids.is_empty() {
                q.space_ids = mine.iter().cloned().collect();
            } else {
                q.space_ids.retain(|s| mine.contains(s));
            }
            if q.space_ids.is_empty() {
                return false;
            }
        }
        q.excluded_documents = self.hidden.iter().cloned().collect();
        true
    }

    /// Whether `e` may be read.
    pub fn reads(&self, e: &Event) -> bool {
        let in_space = match (&self.spaces, e.space_id.as_deref()) {
            (None, _) => true,
            (Some(mine), Some(s)) => mine.contains(s),
            (Some(_), None) => false,
        };
        in_space
            && !e
                .related_document_ids
                .iter()
                .any(|d| self.hidden.contains(d))
    }
}
