//! The cuttle-store crate's integration tests, one binary: each module is what
//! was a test file, so they share one build and run side by side.
//! Tests that change the process itself (its limits, its allocator) or
//! measure its memory keep binaries of their own beside this directory.

mod common;

mod agent_relay;
mod backup;
mod conformance;
mod deployment_index;
mod event_plans;
mod gauges;
mod list_counts;
mod nodes;
mod query_plans;
mod task_leases;
mod task_log;
