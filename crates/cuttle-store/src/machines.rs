//! The deployment targets a deployment runs on. Machines are few per space
//! (hundreds, rarely thousands) and belong to several environments, so they
//! are read by space and filtered here rather than indexed per environment.

use crate::documents::{list_on, DocumentQuery};
use crate::{Result, Store, Tx};
use cuttle_model::Machine;
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
        let mut conn = self.pool().acquire().await?;
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

    /// Applies `change` to the machine as it is now and stores it, in one
    /// transaction, so a health check's result does not undo an edit made
    /// while it ran. `None` if the machine was deleted meanwhile.
    pub async fn change_machine(
        &self,
        id: &str,
        change: impl FnOnce(&mut Machine),
    ) -> Result<Option<Machine>> {
        let mut tx = self.begin().await?;
        let Some(mut machine) = tx.get::<Machine>(id).await? else {
            return Ok(None);
        };
        change(&mut machine);
        tx.update(&machine).await?;
        tx.commit().await?;
        Ok(Some(machine))
    }
}
