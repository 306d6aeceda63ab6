//! What `GET /api/capabilities` lists: the requests this server answers,
//! under the names Octopus gives them. Octopus clients look a name up
//! before they use the request it stands for (the TypeScript client checks
//! `CreateReleaseCommandV1` and its siblings before the executions API), so
//! only requests Cuttle really answers are listed, each with its route.

/// One request, by Octopus's name, and the route that answers it.
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    pub name: &'static str,
    pub method: &'static str,
    /// With `{spaceId}` where the route is space-scoped.
    pub path: &'static str,
}

pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: "GetAllSpacesRequest",
        method: "GET",
        path: "/api/spaces/all",
    },
    Capability {
        name: "CreateReleaseCommandV1",
        method: "POST",
        path: "/api/{spaceId}/releases/create/v1",
    },
    Capability {
        name: "CreateDeploymentUntenantedCommandV1",
        method: "POST",
        path: "/api/{spaceId}/deployments/create/untenanted/v1",
    },
];

/// The names, as the capabilities document lists them.
pub fn names() -> Vec<&'static str> {
    CAPABILITIES.iter().map(|c| c.name).collect()
}
