//! An audit event as the API shows it (Octopus's `EventResource`).

use crate::Timestamp;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    pub id: String,
    pub space_id: Option<String>,
    /// `Created`, `Modified`, `DeploymentSucceeded`, `LoginFailed`, …
    pub category: String,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub is_service: bool,
    /// `API key`, `Session cookie`, `Username and password`, or none for
    /// the server's own work.
    pub identity_established_with: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub occurred: Option<Timestamp>,
    pub message: String,
    pub message_html: String,
    /// Where in `Message` each related document is named.
    pub message_references: Vec<MessageReference>,
    pub comments: Option<String>,
    pub details: Option<String>,
    /// `{DocumentContext, Differences}`, sensitive values replaced.
    #[schema(value_type = Option<Object>)]
    pub change_details: Option<serde_json::Value>,
    pub related_document_ids: Vec<String>,
    /// The event's number: `fromAutoId` and `toAutoId` filter by it.
    pub auto_id: i64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MessageReference {
    pub referenced_document_id: String,
    pub starting_index: usize,
    pub length: usize,
}

/// A category, document type or group as `GET /api/events/categories`
/// (and its siblings) list them.
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EventKind {
    pub id: String,
    pub name: String,
}

/// Octopus's event categories that Cuttle records.
pub mod category {
    pub const CREATED: &str = "Created";
    pub const MODIFIED: &str = "Modified";
    pub const DELETED: &str = "Deleted";
    pub const DEPLOYMENT_QUEUED: &str = "DeploymentQueued";
    pub const DEPLOYMENT_STARTED: &str = "DeploymentStarted";
    pub const DEPLOYMENT_SUCCEEDED: &str = "DeploymentSucceeded";
    pub const DEPLOYMENT_FAILED: &str = "DeploymentFailed";
    pub const DEPLOYMENT_RESUMED: &str = "DeploymentResumed";
    pub const MANUAL_INTERVENTION_RAISED: &str = "ManualInterventionInterruptionRaised";
    pub const GUIDED_FAILURE_RAISED: &str = "GuidedFailureInterruptionRaised";
    pub const INTERRUPTION_SUBMITTED: &str = "InterruptionSubmitted";
    pub const INTERRUPTION_RESPONSIBILITY_TAKEN: &str = "InterruptionResponsibilityTaken";
    pub const TASK_CANCELED: &str = "TaskCanceled";
    pub const MACHINE_HEALTHY: &str = "MachineHealthy";
    pub const MACHINE_HAS_WARNINGS: &str = "MachineHasWarnings";
    pub const MACHINE_UNHEALTHY: &str = "MachineUnhealthy";
    pub const MACHINE_UNAVAILABLE: &str = "MachineUnavailable";
    pub const LOGIN_SUCCEEDED: &str = "LoginSucceeded";
    pub const LOGIN_FAILED: &str = "LoginFailed";
    pub const LOGOUT: &str = "Logout";
    pub const API_KEY_USED: &str = "ApiKeyUsed";

    /// Every category, for `GET /api/events/categories`, with its group.
    pub const ALL: [(&str, &str); 22] = [
        (CREATED, "Document"),
        (MODIFIED, "Document"),
        (DELETED, "Document"),
        (DEPLOYMENT_QUEUED, "Deployment"),
        (DEPLOYMENT_STARTED, "Deployment"),
        (DEPLOYMENT_SUCCEEDED, "Deployment"),
        (DEPLOYMENT_FAILED, "Deployment"),
        (DEPLOYMENT_RESUMED, "Deployment"),
        (MANUAL_INTERVENTION_RAISED, "Deployment"),
        (GUIDED_FAILURE_RAISED, "Deployment"),
        (INTERRUPTION_SUBMITTED, "Deployment"),
        (INTERRUPTION_RESPONSIBILITY_TAKEN, "Deployment"),
        (TASK_CANCELED, "ServerTask"),
        (MACHINE_HEALTHY, "Machine"),
        (MACHINE_HAS_WARNINGS, "Machine"),
        (MACHINE_UNHEALTHY, "Machine"),
        (MACHINE_UNAVAILABLE, "Machine"),
        (LOGIN_SUCCEEDED, "User"),
        (LOGIN_FAILED, "User"),
        (LOGOUT, "User"),
        (API_KEY_USED, "User"),
        ("Comment", "Document"),
    ];
}

/// A group of event categories as `GET /api/events/groups` lists it
/// (Octopus's `EventGroupResource`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct EventGroup {
    pub id: String,
    pub name: String,
    pub event_categories: Vec<String>,
}

/// The groups `eventGroups` and a subscription's `Filter.EventGroups`
/// accept: Octopus's group ids, each holding the categories Cuttle records
/// that belong to it, and Cuttle's own `ServerTask` and `User`. Octopus's
/// auto-deploy and certificate-expiry groups are absent: Cuttle records no
/// event of theirs.
pub mod group {
    use super::category::*;

    pub struct Group {
        pub id: &'static str,
        pub name: &'static str,
        pub categories: &'static [&'static str],
    }

    const HEALTH: &[&str] = &[
        MACHINE_HEALTHY,
        MACHINE_HAS_WARNINGS,
        MACHINE_UNHEALTHY,
        MACHINE_UNAVAILABLE,
    ];
    const NOT_DEPLOYABLE: &[&str] = &[MACHINE_UNHEALTHY, MACHINE_UNAVAILABLE];

    pub const ALL: [Group; 10] = [
        Group {
            id: "Document",
            name: "Document events",
            categories: &[CREATED, MODIFIED, DELETED, "Comment"],
        },
        Group {
            id: "Deployment",
            name: "Deployment events",
            categories: &[
                DEPLOYMENT_QUEUED,
                DEPLOYMENT_STARTED,
                DEPLOYMENT_SUCCEEDED,
                DEPLOYMENT_FAILED,
                DEPLOYMENT_RESUMED,
                MANUAL_INTERVENTION_RAISED,
                GUIDED_FAILURE_RAISED,
                INTERRUPTION_SUBMITTED,
                INTERRUPTION_RESPONSIBILITY_TAKEN,
            ],
        },
        Group {
            id: "DeploymentCritical",
            name: "Deployment critical events",
            categories: &[DEPLOYMENT_FAILED, GUIDED_FAILURE_RAISED],
        },
        Group {
            id: "Machine",
            name: "Machine events",
            categories: HEALTH,
        },
        Group {
            id: "MachineCritical",
            name: "Machine critical events",
            categories: NOT_DEPLOYABLE,
        },
        Group {
            id: "MachineAvailableForDeployment",
            name: "Machine becomes available for deployment",
            categories: &[MACHINE_HEALTHY, MACHINE_HAS_WARNINGS],
        },
        Group {
            id: "MachineUnavailableForDeployment",
            name: "Machine is no longer available for deployment",
            categories: NOT_DEPLOYABLE,
        },
        Group {
            id: "MachineHealthChanged",
            name: "Machine health changed",
            categories: HEALTH,
        },
        Group {
            id: "ServerTask",
            name: "Server task events",
            categories: &[TASK_CANCELED],
        },
        Group {
            id: "User",
            name: "User events",
            categories: &[LOGIN_SUCCEEDED, LOGIN_FAILED, LOGOUT, API_KEY_USED],
        },
    ];

    /// The group named `id`, in any case.
    pub fn find(id: &str) -> Option<&'static Group> {
        ALL.iter().find(|g| g.id.eq_ignore_ascii_case(id))
    }

    /// Whether `category` belongs to any of `groups` (ids in any case;
    /// unknown ones hold nothing).
    pub fn any_holds(groups: &[String], category: &str) -> bool {
        groups
            .iter()
            .filter_map(|g| find(g))
            .any(|g| g.categories.contains(&category))
    }

    pub fn ids() -> Vec<&'static str> {
        ALL.iter().map(|g| g.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{category, group};

    #[test]
    fn every_category_is_in_its_own_group_and_groups_hold_known_categories() {
        for (c, own) in category::ALL {
            let g = group::find(own).unwrap_or_else(|| panic!("{own} is not a group"));
            assert!(g.categories.contains(&c), "{c} is not in {own}");
        }
        for g in &group::ALL {
            assert!(!g.categories.is_empty(), "{}", g.id);
            for c in g.categories {
                assert!(
                    category::ALL.iter().any(|(k, _)| k == c),
                    "{}: {c} is not a category",
                    g.id
                );
            }
        }
        assert_eq!(
            group::find("deploymentcritical").map(|g| g.id),
            Some("DeploymentCritical")
        );
        assert!(group::find("AutoDeploy").is_none());
    }
}
