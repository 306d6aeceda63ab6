//! What an installation and each space start with.

use crate::default_choice;
use crate::Result;
use cuttle_model::ids::Collection;
use cuttle_model::lifecycle::DEFAULT_LIFECYCLE_NAME;
use cuttle_model::machine::DEFAULT_WORKER_POOL_NAME;
use cuttle_model::machine_policy::DEFAULT_MACHINE_POLICY_NAME;
use cuttle_model::project::DEFAULT_PROJECT_GROUP_NAME;
use cuttle_model::space::{DEFAULT_SPACE_ID, DEFAULT_SPACE_NAME};
use cuttle_model::{slugify, Lifecycle, MachinePolicy, ProjectGroup, Space, WorkerPool};
use cuttle_store::{DocumentQuery, Store, StoreError, Tx};

/// Creates the default space `Spaces-1` on a new database. Several nodes may
/// start at once against one PostgreSQL; the loser of the race sees a conflict
/// and finds the space there.
pub async fn ensure_default_space(store: &Store) -> Result<()> {
    if store.get::<Space>(DEFAULT_SPACE_ID).await?.is_some() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    let id = tx.next_id(Collection::Spaces).await?;
    let space = Space {
        id,
        name: DEFAULT_SPACE_NAME.into(),
        slug: slugify(DEFAULT_SPACE_NAME),
        description: "The default space".into(),
        is_default: true,
        ..Default::default()
    };
    let created = async {
        tx.insert(&space).await?;
        seed_space(&mut tx, &space.id).await?;
        tx.commit().await
    }
    .await;
    match created {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What every new space contains: a default project group, a default
/// lifecycle (no phases: every environment, in order), a default worker pool
/// and a default machine policy. The built-in feed is the same in every space
/// and needs no row.
pub async fn seed_space(tx: &mut Tx, space_id: &str) -> Result<(), StoreError> {
    let group = ProjectGroup {
        id: tx.next_id(Collection::ProjectGroups).await?,
        space_id: space_id.into(),
        name: DEFAULT_PROJECT_GROUP_NAME.into(),
        slug: slugify(DEFAULT_PROJECT_GROUP_NAME),
        ..Default::default()
    };
    tx.insert(&group).await?;
    let lifecycle = Lifecycle {
        id: tx.next_id(Collection::Lifecycles).await?,
        space_id: space_id.into(),
        name: DEFAULT_LIFECYCLE_NAME.into(),
        slug: slugify(DEFAULT_LIFECYCLE_NAME),
        description: "Promotes releases through every environment, in order".into(),
        ..Default::default()
    };
    tx.insert(&lifecycle).await?;
    seed_machine_defaults(tx, space_id).await
}

/// The default worker pool and machine policy, if the space lacks them.
async fn seed_machine_defaults(tx: &mut Tx, space_id: &str) -> Result<(), StoreError> {
    default_choice::seed(
        tx,
        space_id,
        Collection::WorkerPools,
        DEFAULT_WORKER_POOL_NAME,
        || WorkerPool {
            space_id: space_id.into(),
            name: DEFAULT_WORKER_POOL_NAME.into(),
            slug: slugify(DEFAULT_WORKER_POOL_NAME),
            sort_order: 1,
            ..Default::default()
        },
    )
    .await?;
    default_choice::seed(
        tx,
        space_id,
        Collection::MachinePolicies,
        DEFAULT_MACHINE_POLICY_NAME,
        || MachinePolicy {
            space_id: space_id.into(),
            name: DEFAULT_MACHINE_POLICY_NAME.into(),
            description: "The policy machines get unless they name another".into(),
            ..Default::default()
        },
    )
    .await
}

/// Gives spaces created before worker pools and machine policies existed
/// their defaults; run at every start. A node racing another sees a conflict
/// and leaves the work to it.
pub async fn ensure_space_defaults(store: &Store) -> Result<()> {
    for space in store.list::<Space>(&DocumentQuery::default()).await?.items {
        let mut tx = store.begin().await?;
        let seeded = async {
            seed_machine_defaults(&mut tx, &space.id).await?;
            tx.commit().await
        }
        .await;
        match seeded {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
