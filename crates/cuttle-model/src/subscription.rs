//! Subscriptions: a filter over audit events and where matching events are
//! sent (a webhook, email). Shaped like Octopus's `SubscriptionResource`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct Subscription {
    pub id: String,
    pub space_id: String,
    pub name: String,
    /// Always `Event`, the only kind Octopus has.
    #[serde(rename = "Type")]
    pub kind: String,
    pub is_disabled: bool,
    pub event_notification_subscription: EventNotificationSubscription,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct EventNotificationSubscription {
    pub filter: SubscriptionFilter,
    /// Teams whose members are mailed each matching event, at the
    /// addresses their users have when it is sent.
    pub email_teams: Vec<String>,
    /// Cuttle: the addresses each matching event is mailed to.
    pub email_addresses: Vec<String>,
    pub email_frequency_period: String,
    pub email_priority: String,
    pub email_show_dates_in_time_zone_id: String,
    #[serde(rename = "WebhookURI")]
    pub webhook_uri: String,
    /// Octopus's teams whose members may see the webhook's secrets; unused.
    pub webhook_teams: Vec<String>,
    /// How long one webhook call may take, as a .NET `TimeSpan` ("00:00:10").
    pub webhook_timeout: String,
    /// An extra header sent with each webhook call (for the receiver's own
    /// authentication).
    pub webhook_header_key: String,
    pub webhook_header_value: String,
    /// Cuttle: the key each webhook body is signed with (HMAC-SHA256, in the
    /// `X-Cuttle-Signature-256` header). Never answered once set; a new
    /// subscription without one is given one, answered once in the reply to
    /// its creation.
    pub webhook_signing_secret: SensitiveValue,
}

/// Octopus's write-only property: `HasValue` says whether one is set;
/// `NewValue` sets it and is never read back.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct SensitiveValue {
    pub has_value: bool,
    pub new_value: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct SubscriptionFilter {
    pub users: Vec<String>,
    pub projects: Vec<String>,
    pub project_groups: Vec<String>,
    pub environments: Vec<String>,
    pub event_groups: Vec<String>,
    pub event_categories: Vec<String>,
    pub event_agents: Vec<String>,
    pub tenants: Vec<String>,
    pub tags: Vec<String>,
    pub document_types: Vec<String>,
}

/// What the filter is matched against: an event as written in the audit log.
pub struct EventFacts<'a> {
    pub category: &'a str,
    pub user_id: Option<&'a str>,
    pub related_document_ids: &'a [String],
    /// The collections of the related documents (`Projects`, …), as the
    /// audit log names them.
    pub document_types: &'a [&'a str],
}

impl SubscriptionFilter {
    /// Whether the event passes every non-empty part of the filter.
    /// `group_projects` are the projects of the filter's project groups,
    /// resolved by the caller.
    pub fn matches(&self, e: &EventFacts<'_>, group_projects: &[String]) -> bool {
        let related = |ids: &[String]| ids.iter().any(|id| e.related_document_ids.contains(id));
        let projects_ok = (self.projects.is_empty() && self.project_groups.is_empty())
            || related(&self.projects)
            || related(group_projects);
        (self.event_categories.is_empty() || self.event_categories.iter().any(|c| c == e.category))
            && (self.event_groups.is_empty()
                || crate::event::group::any_holds(&self.event_groups, e.category))
            && (self.users.is_empty()
                || e.user_id.is_some_and(|u| self.users.iter().any(|x| x == u)))
            && projects_ok
            && (self.environments.is_empty() || related(&self.environments))
            && (self.tenants.is_empty() || related(&self.tenants))
            && (self.document_types.is_empty()
                || e.document_types
                    .iter()
                    .any(|t| self.document_types.iter().any(|x| x == t)))
    }
}

/// The delay before retry `attempt` (1 for the first retry): doubling from
/// `first`, never more than `most`.
pub fn retry_delay(
    attempt: u32,
    first: std::time::Duration,
    most: std::time::Duration,
) -> std::time::Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(30))
        .unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(most)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        let related = ids(&["Projects-1"]);
        let e = EventFacts {
            category: "DeploymentSucceeded",
            user_id: None,
            related_document_ids: &related,
            document_types: &["Projects"],
        };
        assert!(SubscriptionFilter::default().matches(&e, &[]));
    }

    #[test]
    fn every_part_of_the_filter_must_match() {
        let related = ids(&["Deployments-4", "Projects-1", "Environments-2"]);
        let e = EventFacts {
            category: "DeploymentFailed",
            user_id: Some("Users-1"),
            related_document_ids: &related,
            document_types: &["Deployments", "Projects", "Environments"],
        };
        let f = SubscriptionFilter {
            event_categories: ids(&["DeploymentFailed"]),
            projects: ids(&["Projects-1"]),
            environments: ids(&["Environments-2"]),
            ..Default::default()
        };
        assert!(f.matches(&e, &[]));
        let other_env = SubscriptionFilter {
            environments: ids(&["Environments-3"]),
            ..f.clone()
        };
        assert!(!other_env.matches(&e, &[]));
        let other_category = SubscriptionFilter {
            event_categories: ids(&["DeploymentSucceeded"]),
            ..f.clone()
        };
        assert!(!other_category.matches(&e, &[]));
        let by_user = SubscriptionFilter {
            users: ids(&["Users-2"]),
            ..Default::default()
        };
        assert!(!by_user.matches(&e, &[]));
        let by_type = SubscriptionFilter {
            document_types: ids(&["Deployments"]),
            ..Default::default()
        };
        assert!(by_type.matches(&e, &[]));
        let deployments = SubscriptionFilter {
            event_groups: ids(&["Deployment"]),
            ..Default::default()
        };
        assert!(deployments.matches(&e, &[]));
        let documents = SubscriptionFilter {
            event_groups: ids(&["Document"]),
            ..Default::default()
        };
        assert!(!documents.matches(&e, &[]));
        let critical = SubscriptionFilter {
            event_groups: ids(&["MachineCritical", "deploymentcritical"]),
            ..Default::default()
        };
        assert!(critical.matches(&e, &[]));
        let machines = SubscriptionFilter {
            event_groups: ids(&["MachineCritical"]),
            ..Default::default()
        };
        assert!(!machines.matches(&e, &[]));
        let by_group = SubscriptionFilter {
            project_groups: ids(&["ProjectGroups-1"]),
            ..Default::default()
        };
        assert!(by_group.matches(&e, &ids(&["Projects-1"])));
        assert!(!by_group.matches(&e, &ids(&["Projects-9"])));
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        let (first, most) = (Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(retry_delay(1, first, most), Duration::from_secs(1));
        assert_eq!(retry_delay(2, first, most), Duration::from_secs(2));
        assert_eq!(retry_delay(5, first, most), Duration::from_secs(16));
        assert_eq!(retry_delay(40, first, most), most);
        assert_eq!(retry_delay(u32::MAX, first, most), most);
    }
}
