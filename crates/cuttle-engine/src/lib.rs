//! Cuttle's deployment engine.
//!
//! # Layout
//! - [`plan`]: pure planning of a deployment (which actions run, and why not).
//! - [`runner`]: the durable task queue's consumer: claims, runs, cancels,
//!   recovers, shuts down.
//! - [`deploy`]: carrying out one deployment task.
//! - [`health`]: the `Health` task: asking listening agents who they are.
//! - [`intervention`]: pausing a deployment for a person (manual
//!   intervention, guided failure) and waiting for the answer.
//! - [`log`]: the activity log a running task writes.
//! - [`signal`]: in-process wake-ups for live followers of a task's log.
//! - [`script`]: the built-in worker: user scripts as child processes.
//! - [`sandbox`]: their isolation: each step contained and kept apart, with
//!   limits; [`cgroup`] and [`step_user`] are two of its means, and
//!   `step_exec` what a step's process does before it runs the script.
//! - [`hosted_workers`]: workers a host lends an installation that has no
//!   built-in worker.
//! - [`agent_host`]: an agent's side: the server's scripts, run and followed.
//! - [`agent_relay`]: with several nodes, polling agents connected to
//!   another node reached through the database.
//! - [`variables`]: a deployment's variables, output variables and masking.
//! - [`helpers`]: the helper functions scripts get and the service messages
//!   they print.

pub mod agent_files;
pub mod agent_host;
pub mod agent_relay;
pub mod cgroup;
pub mod delta;
pub mod deploy;
pub mod deploy_package;
pub mod health;
pub mod helpers;
pub mod hosted_workers;
pub mod intervention;
pub mod log;
pub mod package;
pub mod package_step;
pub mod plan;
pub mod polling_wait;
pub mod remote;
pub mod runner;
pub mod sandbox;
pub mod script;
pub mod signal;
mod step_exec;
pub mod step_network;
pub mod step_user;
pub mod variables;
pub mod worker_choice;

pub use runner::{Runner, RunnerConfig, TaskFinished};
