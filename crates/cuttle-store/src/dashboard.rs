//! Reads for the portal's dashboard that the generic document queries cannot
//! answer in one statement.

use crate::documents::Document;
use crate::{Result, Store, StoreError};
use cuttle_model::Deployment;

impl Store {
    /// The newest deployment of each project to each environment of a space,
    /// in one query however many deployments there are (the dashboard would
    /// otherwise read every project's history).
    pub async fn latest_deployments(&self, space_id: &str) -> Result<Vec<Deployment>> {
        // Deployments sort by their id's number, so the greatest sort_key of
        // a (project, environment) pair is its newest deployment.
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT d.body FROM documents d \
             JOIN (SELECT parent_id, environment_id, MAX(sort_key) AS newest FROM documents \
                   WHERE collection = $1 AND space_id = $2 \
                   GROUP BY parent_id, environment_id) n \
               ON d.parent_id = n.parent_id AND d.environment_id = n.environment_id \
              AND d.sort_key = n.newest \
             WHERE d.collection = $1 AND d.space_id = $2 \
             ORDER BY d.sort_key",
        )
        .bind(Deployment::COLLECTION)
        .bind(space_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|(body,)| {
                serde_json::from_str(body)
                    .map_err(|e| StoreError::Corrupt(format!("deployment document: {e}")))
            })
            .collect()
    }
}
