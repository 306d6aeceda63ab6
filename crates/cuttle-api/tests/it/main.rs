//! The cuttle-api crate's integration tests, one binary: each module is what
//! was a test file, so they share one build and run side by side.
//! Tests that change the process itself (its limits, its allocator) or
//! measure its memory keep binaries of their own beside this directory.

mod common;

mod api;
mod audit_changes;
mod authorization;
mod build_info;
mod connections;
mod deployments;
mod idle;
mod input_rules;
mod interventions;
mod lifecycles;
mod log_stream;
mod machines;
mod octopus_client_shapes;
mod octopus_compat;
mod openapi;
mod permissions;
mod plans;
mod queue_costs;
mod release_packages;
mod sandbox;
mod space_isolation;
mod spaces;
mod subscriptions;
mod variables;
