//! One polling port for every instance (`--polling-listen`): an agent
//! names its instance in the TLS handshake (SNI, `NAME.DOMAIN`), which
//! picks the server certificate presented (each instance has its own, and
//! its agents pin it); its own certificate's thumbprint must then be one
//! that instance registered, and the connection goes to that instance,
//! woken if it sleeps. Any other certificate is refused.
//!
//! The index of thumbprints is the host's, so an asleep instance's agents
//! are known without waking it: read when an instance is opened or peeked
//! at, when it goes to sleep, and after each change to its machines or
//! workers through its API. The instance's own registration check still
//! runs on every connection, so a stale entry lets nothing in.

use super::instances::Host;
use cuttle_protocol::polling::Destination;
use cuttle_protocol::{Identity, Thumbprint};
use cuttle_service::Instance;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// Which instance registered each polling agent, and each instance's
/// server certificate.
#[derive(Default)]
pub struct AgentIndex {
    inner: RwLock<Index>,
}

#[derive(Default)]
struct Index {
    /// Thumbprint (upper case) → the instances that registered it.
    owners: HashMap<String, HashSet<String>>,
    /// Instance name → its certificate and its agents' thumbprints.
    instances: HashMap<String, (Arc<Identity>, Vec<String>)>,
}

impl AgentIndex {
    /// Records `name`'s certificate and agents, replacing what was known.
    pub fn set(&self, name: &str, identity: Arc<Identity>, thumbprints: &[String]) {
        let mut index = self.inner.write().unwrap_or_else(|p| p.into_inner());
        index.forget(name);
        let thumbprints: Vec<String> = thumbprints.iter().map(|t| t.to_ascii_uppercase()).collect();
        for t in &thumbprints {
            index
                .owners
                .entry(t.clone())
                .or_default()
                .insert(name.to_owned());
        }
        index
            .instances
            .insert(name.to_owned(), (identity, thumbprints));
    }

    /// Replaces `name`'s agents, keeping its certificate.
    fn set_thumbprints(&self, name: &str, thumbprints: &[String]) {
        let identity = {
            let index = self.inner.read().unwrap_or_else(|p| p.into_inner());
            index
                .instances
                .get(name)
                .map(|(identity, _)| identity.clone())
        };
        if let Some(identity) = identity {
            self.set(name, identity, thumbprints);
        }
    }

    pub fn remove(&self, name: &str) {
        let mut index = self.inner.write().unwrap_or_else(|p| p.into_inner());
        index.forget(name);
    }

    /// The instances that registered an agent with this certificate.
    pub fn owners(&self, thumbprint: &Thumbprint) -> HashSet<String> {
        let index = self.inner.read().unwrap_or_else(|p| p.into_inner());
        index
            .owners
            .get(&thumbprint.as_str().to_ascii_uppercase())
            .cloned()
            .unwrap_or_default()
    }

    /// The certificate instance `name` presents to agents.
    pub fn identity(&self, name: &str) -> Option<Arc<Identity>> {
        let index = self.inner.read().unwrap_or_else(|p| p.into_inner());
        index
            .instances
            .get(name)
            .map(|(identity, _)| identity.clone())
    }
}

impl Index {
    fn forget(&mut self, name: &str) {
        if let Some((_, thumbprints)) = self.instances.remove(name) {
            for t in thumbprints {
                if let Some(owners) = self.owners.get_mut(&t) {
                    owners.remove(name);
                    if owners.is_empty() {
                        self.owners.remove(&t);
                    }
                }
            }
        }
    }
}

/// Reads `name`'s polling agents from its database into the index.
pub async fn refresh(host: &Host, name: &str, instance: &Instance) {
    match instance.store.polling_agent_thumbprints().await {
        Ok(thumbprints) => host.agents.set_thumbprints(name, &thumbprints),
        Err(e) => {
            tracing::warn!(instance = %name, error = %e, "could not read an instance's polling agents")
        }
    }
}

/// Accepts every instance's polling agents on `listener` until `shutdown`.
pub async fn serve(
    host: Arc<Host>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let domain = host.config.domain.clone();
    let identities: cuttle_protocol::polling::Identities = {
        let host = host.clone();
        Arc::new(move |sni: &str| {
            let name = super::routing::instance_name(sni, &host.config.domain)?;
            host.agents.identity(&name)
        })
    };
    let route: cuttle_protocol::polling::Route = Arc::new(move |sni, thumbprint| {
        let (host, domain) = (host.clone(), domain.clone());
        Box::pin(async move {
            let named = sni
                .as_deref()
                .and_then(|sni| super::routing::instance_name(sni, &domain))
                .ok_or("refused a polling agent that named no instance")?;
            let owners = host.agents.owners(&thumbprint);
            if owners.is_empty() {
                return Err(format!(
                    "refused a polling agent of '{named}' with the unregistered certificate {thumbprint}"
                ));
            }
            if !owners.contains(&named) {
                let mut owners: Vec<String> = owners.into_iter().collect();
                owners.sort();
                return Err(format!(
                    "refused a polling agent of '{}' (certificate {thumbprint}) that presented itself to '{named}'",
                    owners.join("', '")
                ));
            }
            let owner = named;
            let served = host.wake(&owner).await.map_err(|_| {
                format!("refused a polling agent of '{owner}': the instance is not running")
            })?;
            served.touch();
            let registered = served.instance.registered_polling_agents();
            Ok(Destination {
                hub: served.instance.agents.polling().clone(),
                registered,
            })
        })
    });
    cuttle_protocol::polling::serve_shared(listener, identities, route, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_routes_only_to_the_instances_that_registered_it() {
        let index = AgentIndex::default();
        let identity = Arc::new(Identity::generate("Cuttle Server").unwrap());
        let agent: Thumbprint = "AB".repeat(32).parse().unwrap();
        let named = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<HashSet<_>>();
        assert!(index.owners(&agent).is_empty());
        // Stored in any case, found in any case.
        index.set("alpha", identity.clone(), &["ab".repeat(32)]);
        assert_eq!(index.owners(&agent), named(&["alpha"]));
        index.set("beta", identity.clone(), &["AB".repeat(32)]);
        assert_eq!(index.owners(&agent), named(&["alpha", "beta"]));
        // Alpha deletes its machine: the agent is beta's alone.
        index.set_thumbprints("alpha", &[]);
        assert_eq!(index.owners(&agent), named(&["beta"]));
        assert!(index.identity("alpha").is_some());
        index.remove("beta");
        assert!(index.owners(&agent).is_empty());
        assert!(index.identity("beta").is_none());
    }
}
