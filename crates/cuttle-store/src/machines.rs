//! The deployment targets a deployment runs on. Machines are few per space
//! (hundreds, rarely thousands) and belong to several environments, so they
//! are read by space and filtered here rather than indexed per environment.

use crate::documents::{list_on, DocumentQuery};
use crate::{Result, Store, Tx};
use cuttle_model::machine::{AgentMachine, CommunicationStyle};
use cuttle_model::{HealthStatus, Machine, Worker};
use sqlx::AnyConnection;

async fn deployment_targets_on(
    conn: &mut AnyConnection,
    space_id: &str,
    environment_id: &str,
) -> Result<Vec<Machine>> {
    let q = DocumentQuery {
        space_id: Some(space_id.to_owned()),
        ..Default::default()
    };
    Ok(list_on::<Machine>(conn, &q)
        .await?
        .items
        .into_iter()
        .filter(|m| !m.is_disabled && m.environment_ids.iter().any(|e| e == environment_id))
        .collect())
}

impl Store {
    /// The enabled machines in an environment, in creation order.
    pub async fn deployment_targets(
        &self,
        space_id: &str,
        environment_id: &str,
    ) -> Result<Vec<Machine>> {
        let mut conn = self.reader().acquire().await?;
        deployment_targets_on(&mut conn, space_id, environment_id).await
    }
}

impl Tx {
    /// As [`Store::deployment_targets`], inside a transaction.
    pub async fn deployment_targets(
        &mut self,
        space_id: &str,
        environment_id: &str,
    ) -> Result<Vec<Machine>> {
        deployment_targets_on(&mut self.inner, space_id, environment_id).await
    }
}

impl Store {
    /// Every machine in a space, disabled ones too, in creation order.
    pub async fn machines_in_space(&self, space_id: &str) -> Result<Vec<Machine>> {
        let q = DocumentQuery {
            space_id: Some(space_id.to_owned()),
            ..Default::default()
        };
        Ok(self.list::<Machine>(&q).await?.items)
    }

    /// Applies `change` to the machine (or worker) as it is now and stores
    /// it, in one transaction, so a health check's result does not undo an
    /// edit made while it ran. `None` if it was deleted meanwhile.
    ///
    /// A change of health status is an audit event in the same transaction
    /// (`MachineHealthy`, `MachineUnavailable`, …), which subscriptions
    /// follow; a check that finds the status unchanged writes none.
    pub async fn change_machine<M: crate::Document + AgentMachine>(
        &self,
        id: &str,
        change: impl FnOnce(&mut M),
    ) -> Result<Option<M>> {
        let mut tx = self.begin().await?;
        let Some(mut machine) = tx.get::<M>(id).await? else {
            return Ok(None);
        };
        let before = machine.health_status();
        change(&mut machine);
        tx.update(&machine).await?;
        let after = machine.health_status();
        if let Some(category) = health_category(after).filter(|_| before != after) {
            tx.record_event(crate::AuditEvent {
                space_id: machine.space_id().map(str::to_owned),
                category: category.into(),
                message: format!(
                    "{} {} is now {after:?} (was {before:?})",
                    M::KIND,
                    crate::Document::name(&machine)
                ),
                related_document_ids: vec![crate::Document::id(&machine).to_owned()],
                ..Default::default()
            })
            .await?;
        }
        tx.commit().await?;
        Ok(Some(machine))
    }
}

/// The event category of a health status a machine has just reached.
fn health_category(status: HealthStatus) -> Option<&'static str> {
    use cuttle_model::event::category;
    match status {
        HealthStatus::Healthy => Some(category::MACHINE_HEALTHY),
        HealthStatus::HasWarnings => Some(category::MACHINE_HAS_WARNINGS),
        HealthStatus::Unhealthy => Some(category::MACHINE_UNHEALTHY),
        HealthStatus::Unavailable => Some(category::MACHINE_UNAVAILABLE),
        HealthStatus::Unknown => None,
    }
}

impl Store {
    /// The certificate thumbprints of every polling machine and worker.
    pub async fn polling_agent_thumbprints(&self) -> Result<Vec<String>> {
        let all = DocumentQuery::default();
        let active = Some(CommunicationStyle::TentacleActive);
        let mut thumbprints: Vec<String> = self
            .list::<Machine>(&all)
            .await?
            .items
            .into_iter()
            .filter(|m| m.endpoint.communication_style == active)
            .map(|m| m.endpoint.thumbprint)
            .collect();
        thumbprints.extend(
            self.list::<Worker>(&all)
                .await?
                .items
                .into_iter()
                .filter(|w| w.endpoint.communication_style == active)
                .map(|w| w.endpoint.thumbprint),
        );
        Ok(thumbprints)
    }

    /// Whether a polling machine or worker, in any space, is registered with
    /// this certificate thumbprint (64 uppercase hex, as stored).
    pub async fn polling_agent_registered(&self, thumbprint: &str) -> Result<bool> {
        let all = DocumentQuery::default();
        let polling = |style: Option<CommunicationStyle>, t: &str| {
            style == Some(CommunicationStyle::TentacleActive) && t.eq_ignore_ascii_case(thumbprint)
        };
        let machines = self.list::<Machine>(&all).await?.items;
        if machines
            .iter()
            .any(|m| polling(m.endpoint.communication_style, &m.endpoint.thumbprint))
        {
            return Ok(true);
        }
        let workers = self.list::<Worker>(&all).await?.items;
        Ok(workers
            .iter()
            .any(|w| polling(w.endpoint.communication_style, &w.endpoint.thumbprint)))
    }
}
