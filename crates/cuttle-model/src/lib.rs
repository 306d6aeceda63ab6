//! Cuttle's domain: the resources a deployment server keeps and the pure rules
//! over them. No I/O lives here.
//!
//! # Layout
//! - [`time`]: the timestamp type every resource uses (UTC, millisecond precision).
//! - [`ids`]: `<Collection>-<n>` identifiers and the collections that have them.
//! - [`space`], [`environment`], [`project`], [`lifecycle`]: what a team models.
//! - [`progression`]: how a release moves through its lifecycle's phases.
//! - [`version_rule`]: channel version rules (NuGet ranges, pre-release tags).
//! - [`process`]: the deployment process, its steps and actions.
//! - [`release`], [`deployment`]: immutable releases and deployments of them.
//! - [`task`]: server tasks, their states and the activity log tree.
//! - [`interruption`]: a task pausing for a person (manual intervention,
//!   guided failure).
//! - [`machine`]: deployment targets, workers, worker pools and the
//!   endpoints agents are reached at.
//! - [`machine_policy`]: machine policies and .NET `TimeSpan` durations.
//! - [`event`]: audit events as the API shows them.
//! - [`user`]: users and API keys.
//! - [`permission`]: permission names, user roles, teams, scoped user roles
//!   and the rule that decides whether an action is allowed.
//! - [`subscription`]: event subscriptions (webhooks, email).
//! - [`server_node`]: the server processes sharing one database.
//! - [`variables`]: variables, their scopes and prompts.

pub mod build_info;
pub mod deployment;
pub mod environment;
pub mod event;
pub mod ids;
pub mod interruption;
pub mod lifecycle;
pub mod machine;
pub mod machine_policy;
pub mod package;
pub mod permission;
pub mod process;
pub mod progression;
pub mod project;
pub mod release;
pub mod server_node;
pub mod space;
pub mod subscription;
pub mod task;
pub mod time;
pub mod user;
pub mod variables;
pub mod version_rule;

pub use deployment::Deployment;
pub use environment::Environment;
pub use event::{Event, EventGroup, EventKind, MessageReference};
pub use interruption::Interruption;
pub use lifecycle::{Lifecycle, Phase, RetentionPolicy};
pub use machine::{CommunicationStyle, Endpoint, HealthStatus, Machine, Worker, WorkerPool};
pub use machine_policy::MachinePolicy;
pub use permission::{Permission, Permissions, Scope, ScopedUserRole, Team, UserRole};
pub use process::{Action, DeploymentProcess, Step};
pub use project::{Channel, Project, ProjectGroup};
pub use release::Release;
pub use space::Space;
pub use subscription::Subscription;
pub use task::{ActivityElement, ActivityStatus, LogCategory, LogElement, ServerTask, TaskState};
pub use time::Timestamp;
pub use user::{ApiKey, User};
pub use variables::{
    LibraryVariableSet, ReferenceItem, ScopeValues, Variable, VariablePrompt, VariableScope,
    VariableSet,
};

/// Turns a display name into the URL slug Octopus derives from it
/// ("My Web App" → "my-web-app").
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_alphanumeric() {
            slug.extend(c.to_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        assert_eq!(super::slugify("My Web App"), "my-web-app");
        assert_eq!(super::slugify("  Prod / EU  "), "prod-eu");
        assert_eq!(super::slugify("ÄBC"), "äbc");
    }
}
