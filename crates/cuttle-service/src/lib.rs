//! Cuttle's commands: every change to an installation goes through one of
//! these functions, which validate, write in one transaction with an audit
//! event, and wake the engine where needed. The REST API and the portal are
//! thin layers over them.
//!
//! # Layout
//! - [`instance`]: the [`Instance`], everything one installation owns.
//! - [`error`]: [`ServiceError`], mapped once to HTTP statuses by the API.
//! - [`actor`]: who runs a command and from where.
//! - [`audit`]: writing the audit log, sensitive values hidden.
//! - [`events`]: reading the audit log with Octopus's filters.
//! - [`auth`]: users, passwords, API keys, the first administrator.
//! - [`passwords`]: argon2 on a bounded blocking pool; unknown users cost the same.
//! - [`sign_in_throttle`]: refusing sign-ins after too many failures.
//! - [`permissions`]: a caller's permissions, and the 403 or 404 a refusal
//!   answers with; the built-in roles and teams.
//! - [`teams`]: teams, user roles and scoped user roles.
//! - [`bootstrap`]: the default space and what every space starts with.
//! - [`resources`]: spaces, environments, project groups, lifecycles.
//! - [`spaces`]: stopping and restarting a space's task queue; deleting a
//!   space once its queue is stopped.
//! - [`projects`]: projects, channels and deployment processes.
//! - [`releases`], [`deployments`]: releases and deployments, including the
//!   executions API that CI tools call by name.
//! - [`preview`]: the plan a deployment would follow, without running it.
//! - [`progression`]: lifecycle progression of releases and automatic
//!   deployments when a release reaches a phase.
//! - [`channels`]: channels, their lifecycle and version rules.
//! - [`tasks`]: cancelling tasks and reading their logs.
//! - [`log_stream`]: following a task's log live, as it is written.
//! - [`raw_log`]: a task's whole log as text, read a page at a time.
//! - [`interruptions`]: answering a paused deployment (manual intervention,
//!   guided failure).
//! - [`machines`]: deployment targets, and what they share with workers.
//! - [`workers`]: workers and worker pools.
//! - [`machine_policies`]: machine policies.
//! - [`default_choice`]: the one default worker pool and machine policy of
//!   each space.
//! - [`variables`]: project and library variable sets, sensitive values sealed.
//! - [`nodes`]: this server as a node of a cluster on one database
//!   (heartbeats, the leader lease, clock checks) and the node commands.
//! - [`paging`]: the list parameters every collection accepts.
//! - [`text`]: the characters names and filters may not hold.
//! - [`sessions`]: the web portal's sign-in sessions and CSRF tokens.
//! - [`dashboard`]: what the portal's dashboard and task pages read.
//! - [`metrics`]: what `/metrics` and `/readyz` answer.
//! - [`backup`]: backups of a running installation, and restoring one.
//! - [`subscriptions`]: event subscriptions and the dispatcher that
//!   delivers them (webhooks, email).

pub mod actor;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bootstrap;
pub mod build_info;
pub mod channels;
pub mod dashboard;
pub mod default_choice;
pub mod deployments;
pub mod error;
pub mod event_access;
pub mod events;
mod health_schedule;
pub mod instance;
pub mod interruptions;
pub mod job_times;
pub mod log_stream;
pub mod machine_policies;
pub mod machines;
pub mod metrics;
pub mod nodes;
pub mod package_retention;
pub mod package_selection;
pub mod packages;
pub mod paging;
pub mod passwords;
pub mod permissions;
pub mod preview;
pub mod progression;
pub mod projects;
pub mod raw_log;
pub mod releases;
pub mod resources;
pub mod server_identity;
pub mod sessions;
pub mod sign_in_throttle;
pub mod spaces;
pub mod subscriptions;
pub mod tasks;
pub mod teams;
pub mod text;
pub mod users;
pub mod variable_access;
pub mod variables;
pub mod workers;

pub use error::{DatabaseFault, ServiceError};
pub use instance::{Instance, InstanceConfig};

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
