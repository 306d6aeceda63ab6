//! The deployment targets a deployment runs on. Machines are few per space
//! (hundreds, rarely thousands) and belong to several environments, so they
//! are read by space and filtered here rather than indexed per environment.

use crate::documents::{list_on, DocumentQuery};
use crate::{Result, Store, Tx};
use cuttle_model::machine::CommunicationStyle;
use cuttle_model::{Machine, Worker};
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
    pub async fn change_machine<M: crate::Document>(
        &self,
        id: &str,
        change: impl FnOnce(&mut M),
    ) -> Result<Option<M>> {
        let mut tx = self.begin().await?;
        let Some(mut machine) = tx.get::<M>(id).await? else {
            return Ok(None);
        };
        change(&mut machine);
        tx.update(&machine).await?;
        tx.commit().await?;
        Ok(Some(machine))
    }
}

impl Store {
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
