//! One installation: its store, its task runner, its data directory and
//! settings, passed explicitly to every command (never global), so that one
//! process can later host several isolated installations.

use crate::Result;
use cuttle_engine::{Runner, RunnerConfig};
use cuttle_store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The Octopus API level Cuttle reports in `GET /api`; clients gate features
/// (creating releases through the executions API) on it.
pub const OCTOPUS_COMPATIBLE_VERSION: &str = "2024.1.0";
pub const CUTTLE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug)]
pub struct InstanceConfig {
    pub data_dir: PathBuf,
    /// `None` means SQLite in the data directory.
    pub database_url: Option<String>,
    pub node_name: String,
    pub max_concurrent_tasks: usize,
    pub default_script_timeout: Duration,
}

impl InstanceConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        InstanceConfig {
            data_dir,
            database_url: None,
            node_name: default_node_name(),
            max_concurrent_tasks: 8,
            default_script_timeout: Duration::from_secs(3600),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url(&self.data_dir.join("cuttle.db")))
    }
}

fn default_node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cuttle".into())
}

pub struct Instance {
    pub store: Store,
    pub runner: Runner,
    pub config: InstanceConfig,
    pub installation_id: String,
}

impl Instance {
    /// Opens the database (running migrations), makes sure the default space
    /// exists, and starts the task runner.
    pub async fn open(config: InstanceConfig) -> Result<Arc<Instance>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            crate::ServiceError::Internal(format!(
                "The data directory {} could not be created: {e}",
                config.data_dir.display()
            ))
        })?;
        let store = Store::open(&config.database_url()).await?;
        crate::bootstrap::ensure_default_space(&store).await?;
        let installation_id = store
            .setting_or_insert("installation_id", &uuid::Uuid::new_v4().to_string())
            .await?;
        let mut runner_config =
            RunnerConfig::new(config.node_name.clone(), config.data_dir.join("work"));
        runner_config.max_concurrent_tasks = config.max_concurrent_tasks;
        runner_config.default_script_timeout = config.default_script_timeout;
        let runner = Runner::start(store.clone(), runner_config).await?;
        Ok(Arc::new(Instance {
            store,
            runner,
            config,
            installation_id,
        }))
    }
}
