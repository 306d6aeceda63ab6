//! The server's TLS identity, one for the whole installation.
//!
//! Agents pin the certificate the server presents. With several nodes
//! behind one address, a polling agent may reach any of them and any of
//! them may dial a listening agent, so every node must present the same
//! certificate. The identity is kept in the database (its key sealed by the
//! master key) as well as in each node's data directory, where the
//! certificate commands work on it: the first node to start publishes its
//! own, and later nodes take it.

use crate::{Result, ServiceError};
use cuttle_protocol::identity::Slot;
use cuttle_protocol::Identity;
use cuttle_store::{MasterKey, Store};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The settings key that holds the shared identity.
pub const SETTING: &str = "server_identity";

#[derive(Serialize, Deserialize)]
struct Stored {
    certificate: String,
    /// The private key, sealed by the master key.
    key: String,
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("The server's TLS identity: {e}"))
}

fn encode(identity: &Identity, key: &MasterKey) -> Result<String> {
    serde_json::to_string(&Stored {
        certificate: identity.certificate_pem().to_owned(),
        key: key.seal(identity.key_pem()),
    })
    .map_err(internal)
}

fn decode(text: &str, key: &MasterKey) -> Result<Identity> {
    let stored: Stored = serde_json::from_str(text).map_err(internal)?;
    let key_pem = key.open(&stored.key).map_err(internal)?;
    Identity::from_pem_text(
        stored.certificate,
        key_pem,
        Path::new("the database's server identity"),
    )
    .map_err(internal)
}

/// The identity this node presents: the installation's, written into
/// `data_dir` when the directory has none or another. A directory whose
/// identity was switched from the installation's (`cuttle server
/// certificate use-next` and `roll-back` keep the one they replace as the
/// previous) publishes its new one, so a rotation or a roll-back made on one
/// node reaches the others at their next start.
pub async fn resolve(store: &Store, key: &MasterKey, data_dir: &Path) -> Result<Identity> {
    let local = if Identity::exists(data_dir) {
        Some(Identity::load(data_dir).map_err(internal)?)
    } else {
        None
    };
    let Some(shared_text) = store.setting(SETTING).await? else {
        let candidate = match local {
            Some(local) => local,
            None => {
                let made = Identity::generate("Cuttle Server").map_err(internal)?;
                made.save(data_dir).map_err(internal)?;
                made
            }
        };
        let winner_text = store
            .setting_or_insert(SETTING, &encode(&candidate, key)?)
            .await?;
        let winner = decode(&winner_text, key)?;
        if winner.thumbprint() == candidate.thumbprint() {
            return Ok(candidate);
        }
        // Another node published first, at the same moment.
        return adopt(winner, candidate, data_dir);
    };
    let shared = decode(&shared_text, key)?;
    let Some(local) = local else {
        shared.save(data_dir).map_err(internal)?;
        return Ok(shared);
    };
    if local.thumbprint() == shared.thumbprint() {
        return Ok(local);
    }
    // On SQLite the data directory's server is the only node: whatever was
    // done to its certificate by hand (a roll-back by renaming files, say)
    // is what it presents.
    let sole_node = store.backend() == cuttle_store::Backend::Sqlite;
    if sole_node || rotated_from(data_dir, &shared) {
        let published = store
            .replace_setting(SETTING, &shared_text, &encode(&local, key)?)
            .await?;
        if published {
            tracing::info!(
                previous = %shared.thumbprint(),
                current = %local.thumbprint(),
                "published this node's rotated server certificate to the other nodes"
            );
            return Ok(local);
        }
        // Another node changed it meanwhile: take whatever is there now.
        let now = store.setting(SETTING).await?.ok_or_else(|| {
            internal("the shared identity disappeared while this node published its own")
        })?;
        return adopt(decode(&now, key)?, local, data_dir);
    }
    adopt(shared, local, data_dir)
}

/// Whether this directory's previous identity is `shared`: the node switched
/// to its next certificate since the installation's was published.
fn rotated_from(data_dir: &Path, shared: &Identity) -> bool {
    Identity::exists_slot(data_dir, Slot::Previous)
        && Identity::load_slot(data_dir, Slot::Previous)
            .is_ok_and(|previous| previous.thumbprint() == shared.thumbprint())
}

/// Makes `shared` this directory's identity, keeping the one it replaces in
/// `certs/replaced.*` (not as the previous, which would read as a rotation
/// made on this node).
fn adopt(shared: Identity, local: Identity, data_dir: &Path) -> Result<Identity> {
    tracing::warn!(
        replaced = %local.thumbprint(),
        installation = %shared.thumbprint(),
        "this node's server certificate differs from the installation's; \
         presenting the installation's (the replaced one is kept in certs/replaced.*)"
    );
    local
        .replace_slot(data_dir, Slot::Replaced)
        .map_err(internal)?;
    shared.replace(data_dir).map_err(internal)?;
    Ok(shared)
}
