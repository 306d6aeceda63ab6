//! The cuttle-portal crate's integration tests, one binary: each module is what
//! was a test file, so they share one build and run side by side.
//! Tests that change the process itself (its limits, its allocator) or
//! measure its memory keep binaries of their own beside this directory.

mod common;

mod audit;
mod configuration;
mod infrastructure;
mod library;
mod long_log;
mod masking;
mod permissions;
mod portal;
mod process;
mod projects;
mod sign_in;
mod variables;
