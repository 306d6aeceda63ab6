//! The cuttle crate's integration tests, one binary: each module is what
//! was a test file, so they share one build and run side by side.
//! Tests that change the process itself (its limits, its allocator) or
//! measure its memory keep binaries of their own beside this directory.

mod support;

mod agent_deploy;
mod agent_hostile;
mod agent_init;
mod agent_listening;
mod agent_upload;
mod backup_restore;
mod blob_store;
mod broken_pipe;
mod certificate_rotation;
mod config_file;
mod fault_disk_full;
mod fault_kill;
mod fault_postgres_restart;
mod fault_takeover;
mod host;
mod host_sleep;
mod hosted_workers;
mod hosting_example;
mod observability;
mod octopus_client;
mod package_deploy;
mod portal_browser;
mod prometheus;
mod server_nodes;
mod server_process;
mod start_refusals;
mod subscription_outbox;
mod systemd_notify;
mod task_log_volume;
mod upgrade;
mod vars_render;
