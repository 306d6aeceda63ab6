//! Identifiers. Octopus names every resource `<Collection>-<n>`; the store hands
//! out `n` per collection, so ids stay short and readable in URLs and logs.

/// A collection of resources that get `<prefix>-<n>` ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collection {
    Spaces,
    Environments,
    ProjectGroups,
    Lifecycles,
    Projects,
    Channels,
    Releases,
    Deployments,
    ServerTasks,
    Users,
    ApiKeys,
    Events,
    LibraryVariableSets,
    Interruptions,
    Machines,
    Workers,
    WorkerPools,
    MachinePolicies,
    BuildInformation,
    Subscriptions,
    SubscriptionDeliveries,
    Teams,
    UserRoles,
    ScopedUserRoles,
}

impl Collection {
    pub fn prefix(self) -> &'static str {
        match self {
            Collection::Spaces => "Spaces",
            Collection::Environments => "Environments",
            Collection::ProjectGroups => "ProjectGroups",
            Collection::Lifecycles => "Lifecycles",
            Collection::Projects => "Projects",
            Collection::Channels => "Channels",
            Collection::Releases => "Releases",
            Collection::Deployments => "Deployments",
            Collection::ServerTasks => "ServerTasks",
            Collection::Users => "Users",
            Collection::ApiKeys => "APIKeys",
            Collection::Events => "Events",
            Collection::LibraryVariableSets => "LibraryVariableSets",
            Collection::Interruptions => "Interruptions",
            Collection::Machines => "Machines",
            Collection::Workers => "Workers",
            Collection::WorkerPools => "WorkerPools",
            Collection::MachinePolicies => "MachinePolicies",
            Collection::BuildInformation => "BuildInformation",
            Collection::Subscriptions => "Subscriptions",
            Collection::SubscriptionDeliveries => "SubscriptionDeliveries",
            Collection::Teams => "Teams",
            Collection::UserRoles => "UserRoles",
            Collection::ScopedUserRoles => "ScopedUserRoles",
        }
    }

    pub fn id(self, n: i64) -> String {
        format!("{}-{n}", self.prefix())
    }
}

/// The numeric part of an id, used to order by creation.
pub fn sequence_of(id: &str) -> i64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The id of a project's deployment process.
pub fn process_id_for(project_id: &str) -> String {
    format!("deploymentprocess-{project_id}")
}

/// The id of a project's variable set.
pub fn variable_set_id_for(project_id: &str) -> String {
    format!("variableset-{project_id}")
}

/// The id of the frozen copy of a project's variables that a release keeps.
pub fn variable_snapshot_id_for(project_id: &str, release_id: &str) -> String {
    format!("variableset-{project_id}-s-{release_id}")
}

/// The id of the built-in package feed, the same in every space.
pub const BUILTIN_FEED_ID: &str = "feeds-builtin";

/// A new GUID, as steps and actions are identified.
pub fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(Collection::Projects.id(12), "Projects-12");
        assert_eq!(sequence_of("Projects-12"), 12);
        assert_eq!(sequence_of("nonsense"), 0);
        assert_eq!(process_id_for("Projects-1"), "deploymentprocess-Projects-1");
    }
}
