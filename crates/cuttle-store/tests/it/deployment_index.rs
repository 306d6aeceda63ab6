//! The deployment index follows the documents it indexes: written with each
//! deployment, moved back when the newest is deleted, emptied with its
//! space, and filled from the documents for a database that predates it.
//! Its lists filter and page in SQL. On SQLite and, when configured,
//! PostgreSQL.

use cuttle_model::{Deployment, Space, TaskState};
use cuttle_store::testing::{forget_deployment_index, ScratchPostgres};
use cuttle_store::{DeploymentQuery, NewTask, Store};
use std::future::Future;

/// Runs `scenario` on a fresh SQLite store and a fresh PostgreSQL store;
/// it gets the store and the URL that opens it again.
async fn on_both<F, Fut>(name: &str, scenario: F)
where
    F: Fn(Store, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url(&dir.path().join("cuttle.db"));
    let sqlite = Store::open(&url).await.unwrap();
    scenario(sqlite, url).await;
    if let Some(pg) = ScratchPostgres::create(name).await {
        let store = Store::open(&pg.url).await.unwrap();
        scenario(store, pg.url.clone()).await;
    }
}

/// Queues a deployment with its task, as the server does, in one
/// transaction; returns its id.
async fn deploy(
    store: &Store,
    space: &str,
    project: &str,
    environment: &str,
    release: &str,
) -> String {
    let mut tx = store.begin().await.unwrap();
    let id = tx
        .next_id(cuttle_model::ids::Collection::Deployments)
        .await
        .unwrap();
    let task = tx
        .insert_task(NewTask {
            space_id: Some(space.into()),
            name: "Deploy".into(),
            project_id: Some(project.into()),
            environment_id: Some(environment.into()),
            deployment_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    tx.insert(&Deployment {
        id: id.clone(),
        space_id: space.into(),
        name: format!("Deploy to {environment}"),
        project_id: project.into(),
        environment_id: environment.into(),
        release_id: release.into(),
        task_id: task.id,
        ..Default::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn delete(store: &Store, id: &str) {
    let mut tx = store.begin().await.unwrap();
    tx.delete::<Deployment>(id).await.unwrap();
    tx.commit().await.unwrap();
}

/// The dashboard's cells: (project, environment, deployment), oldest first.
/// Read as documents and as the board's lean cells, which must agree.
async fn latest(store: &Store, space: &str) -> Vec<(String, String, String)> {
    let documents = store.latest_deployments(space).await.unwrap();
    let cells = store.latest_deployment_cells(space).await.unwrap();
    assert_eq!(cells.len(), documents.len());
    for ((d, t), c) in documents.iter().zip(&cells) {
        assert_eq!(
            (
                &c.deployment_id,
                &c.project_id,
                &c.environment_id,
                &c.release_id
            ),
            (&d.id, &d.project_id, &d.environment_id, &d.release_id)
        );
        assert_eq!((&c.task_id, c.state), (&t.id, t.state));
        assert_eq!(
            (c.queue_time, c.start_time, c.completed_time),
            (t.queue_time, t.start_time, t.completed_time)
        );
        assert_eq!(
            (c.has_warnings_or_errors, c.has_pending_interruptions),
            (t.has_warnings_or_errors, t.has_pending_interruptions)
        );
    }
    documents
        .into_iter()
        .map(|(d, t)| {
            assert_eq!(t.id, d.task_id, "each with its own task");
            (d.project_id, d.environment_id, d.id)
        })
        .collect()
}

fn cell(p: &str, e: &str, d: &str) -> (String, String, String) {
    (p.into(), e.into(), d.into())
}

async fn ids(store: &Store, q: DeploymentQuery) -> (Vec<String>, i64) {
    let page = store.list_deployments(&q).await.unwrap();
    (page.items.into_iter().map(|d| d.id).collect(), page.total)
}

fn in_space(space: &str) -> DeploymentQuery {
    DeploymentQuery {
        space_id: space.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_newest_deployment_moves_with_inserts_and_deletes() {
    on_both("latest_deployments", |store, _| async move {
        let d1 = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-1",
            "Releases-1",
        )
        .await;
        let d2 = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-1",
            "Releases-1",
        )
        .await;
        let d3 = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-2",
            "Releases-1",
        )
        .await;
        let d4 = deploy(
            &store,
            "Spaces-1",
            "Projects-2",
            "Environments-1",
            "Releases-2",
        )
        .await;
        let other = deploy(
            &store,
            "Spaces-2",
            "Projects-3",
            "Environments-3",
            "Releases-3",
        )
        .await;
        assert_eq!(
            latest(&store, "Spaces-1").await,
            vec![
                cell("Projects-1", "Environments-1", &d2),
                cell("Projects-1", "Environments-2", &d3),
                cell("Projects-2", "Environments-1", &d4),
            ]
        );
        assert_eq!(
            latest(&store, "Spaces-2").await,
            vec![cell("Projects-3", "Environments-3", &other)]
        );

        // Deleting an older one changes nothing; deleting the newest falls
        // back to the one before; deleting the only one empties the cell.
        delete(&store, &d1).await;
        assert_eq!(latest(&store, "Spaces-1").await.len(), 3);
        let d5 = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-1",
            "Releases-2",
        )
        .await;
        delete(&store, &d5).await;
        assert_eq!(
            latest(&store, "Spaces-1").await[0],
            cell("Projects-1", "Environments-1", &d2)
        );
        delete(&store, &d3).await;
        assert_eq!(
            latest(&store, "Spaces-1").await,
            vec![
                cell("Projects-1", "Environments-1", &d2),
                cell("Projects-2", "Environments-1", &d4),
            ]
        );
        let (listed, total) = ids(&store, in_space("Spaces-1")).await;
        assert_eq!((listed, total), (vec![d4.clone(), d2.clone()], 2));

        // Deleting a space takes its index rows with it, and no other's.
        let mut tx = store.begin().await.unwrap();
        tx.insert(&Space {
            id: "Spaces-1".into(),
            name: "Default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.delete_space("Spaces-1").await.unwrap();
        tx.commit().await.unwrap();
        assert!(latest(&store, "Spaces-1").await.is_empty());
        assert_eq!(ids(&store, in_space("Spaces-1")).await, (vec![], 0));
        assert_eq!(latest(&store, "Spaces-2").await.len(), 1);
    })
    .await;
}

/// Deleting a project takes its deployments in one statement, whatever
/// their number, and their index rows and dashboard cells with them; other
/// projects, and the same project id in another space, keep theirs.
#[tokio::test]
async fn a_projects_deployments_are_deleted_at_once_with_their_index() {
    on_both("delete_owned_deployments", |store, _| async move {
        let mut doomed = vec![];
        for environment in ["Environments-1", "Environments-1", "Environments-2"] {
            doomed.push(deploy(&store, "Spaces-1", "Projects-1", environment, "Releases-1").await);
        }
        let kept = deploy(
            &store,
            "Spaces-1",
            "Projects-2",
            "Environments-1",
            "Releases-2",
        )
        .await;
        let elsewhere = deploy(
            &store,
            "Spaces-2",
            "Projects-1",
            "Environments-3",
            "Releases-3",
        )
        .await;

        let mut tx = store.begin().await.unwrap();
        let removed = tx
            .delete_owned::<Deployment>("Spaces-1", "Projects-1")
            .await
            .unwrap();
        tx.commit().await.unwrap();

        assert_eq!(removed, 3);
        for id in &doomed {
            assert!(store.get::<Deployment>(id).await.unwrap().is_none(), "{id}");
        }
        assert_eq!(
            ids(&store, in_space("Spaces-1")).await,
            (vec![kept.clone()], 1)
        );
        assert_eq!(
            latest(&store, "Spaces-1").await,
            vec![cell("Projects-2", "Environments-1", &kept)]
        );
        assert_eq!(
            ids(&store, in_space("Spaces-2")).await,
            (vec![elsewhere.clone()], 1)
        );
        assert_eq!(
            latest(&store, "Spaces-2").await,
            vec![cell("Projects-1", "Environments-3", &elsewhere)]
        );

        // Nothing left to delete is no error, and deletes nothing more.
        let mut tx = store.begin().await.unwrap();
        let again = tx
            .delete_owned::<Deployment>("Spaces-1", "Projects-1")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(again, 0);
        assert_eq!(ids(&store, in_space("Spaces-1")).await.1, 1);
    })
    .await;
}

#[tokio::test]
async fn deployment_lists_filter_and_page_in_sql() {
    on_both("deployment_lists", |store, _| async move {
        let a = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-1",
            "Releases-1",
        )
        .await;
        let b = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-2",
            "Releases-1",
        )
        .await;
        let c = deploy(
            &store,
            "Spaces-1",
            "Projects-2",
            "Environments-1",
            "Releases-2",
        )
        .await;
        let d = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-1",
            "Releases-3",
        )
        .await;
        deploy(
            &store,
            "Spaces-2",
            "Projects-9",
            "Environments-9",
            "Releases-9",
        )
        .await;
        let task_of = |id: String| {
            let store = store.clone();
            async move { store.require::<Deployment>(&id).await.unwrap().task_id }
        };
        let (ta, tb) = (task_of(a.clone()).await, task_of(b.clone()).await);
        store
            .complete_task(&ta, TaskState::Success, None)
            .await
            .unwrap();
        store
            .complete_task(&tb, TaskState::Failed, Some("no"))
            .await
            .unwrap();

        // Newest first, paged, with the total of all that match.
        assert_eq!(
            ids(&store, in_space("Spaces-1")).await,
            (vec![d.clone(), c.clone(), b.clone(), a.clone()], 4)
        );
        let page = DeploymentQuery {
            skip: 1,
            take: Some(2),
            ..in_space("Spaces-1")
        };
        assert_eq!(ids(&store, page).await, (vec![c.clone(), b.clone()], 4));

        let q = DeploymentQuery {
            project_ids: vec!["Projects-1".into()],
            environment_ids: vec!["Environments-1".into()],
            ..in_space("Spaces-1")
        };
        assert_eq!(ids(&store, q).await, (vec![d.clone(), a.clone()], 2));
        let q = DeploymentQuery {
            release_id: Some("Releases-1".into()),
            ..in_space("Spaces-1")
        };
        assert_eq!(ids(&store, q).await, (vec![b.clone(), a.clone()], 2));
        let q = DeploymentQuery {
            ids: vec![a.clone(), c.clone()],
            ..in_space("Spaces-1")
        };
        assert_eq!(ids(&store, q).await, (vec![c.clone(), a.clone()], 2));
        // Another space's project names nothing here.
        let q = DeploymentQuery {
            project_ids: vec!["Projects-9".into()],
            ..in_space("Spaces-1")
        };
        assert_eq!(ids(&store, q).await, (vec![], 0));

        // By the task's state: finished ones, unfinished ones (which start
        // from the tasks), and both at once.
        let by_state = |states: Vec<TaskState>| DeploymentQuery {
            task_states: states,
            ..in_space("Spaces-1")
        };
        assert_eq!(
            ids(&store, by_state(vec![TaskState::Success])).await,
            (vec![a.clone()], 1)
        );
        assert_eq!(
            ids(&store, by_state(vec![TaskState::Queued])).await,
            (vec![d.clone(), c.clone()], 2)
        );
        let page = DeploymentQuery {
            skip: 1,
            take: Some(1),
            ..by_state(vec![TaskState::Queued, TaskState::Executing])
        };
        assert_eq!(ids(&store, page).await, (vec![c.clone()], 2));
        assert_eq!(
            ids(&store, by_state(vec![TaskState::Failed, TaskState::Queued])).await,
            (vec![d.clone(), c.clone(), b.clone()], 3)
        );

        // What lifecycle progression reads: one release's, with tasks.
        let release: Vec<(String, TaskState)> = store
            .release_deployments("Spaces-1", "Releases-1")
            .await
            .unwrap()
            .into_iter()
            .map(|(d, t)| (d.id, t.state))
            .collect();
        assert_eq!(
            release,
            vec![
                (b.clone(), TaskState::Failed),
                (a.clone(), TaskState::Success)
            ]
        );

        // A project's overview: the newest per release and environment.
        let e = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-1",
            "Releases-1",
        )
        .await;
        let newest: Vec<String> = store
            .newest_release_deployments("Spaces-1", &["Releases-1".into(), "Releases-3".into()])
            .await
            .unwrap()
            .into_iter()
            .map(|(d, _)| d.id)
            .collect();
        assert_eq!(newest, vec![e, d, b]);
    })
    .await;
}

#[tokio::test]
async fn deployments_written_before_the_index_are_indexed_on_open() {
    on_both("deployment_backfill", |store, url| async move {
        let a = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-1",
            "Releases-1",
        )
        .await;
        let b = deploy(
            &store,
            "Spaces-1",
            "Projects-1",
            "Environments-1",
            "Releases-1",
        )
        .await;
        let c = deploy(
            &store,
            "Spaces-1",
            "Projects-2",
            "Environments-1",
            "Releases-2",
        )
        .await;
        forget_deployment_index(&store).await.unwrap();
        assert_eq!(ids(&store, in_space("Spaces-1")).await, (vec![], 0));
        store.close().await;

        let store = Store::open(&url).await.unwrap();
        assert_eq!(
            ids(&store, in_space("Spaces-1")).await,
            (vec![c.clone(), b.clone(), a], 3)
        );
        assert_eq!(
            latest(&store, "Spaces-1").await,
            vec![
                cell("Projects-1", "Environments-1", &b),
                cell("Projects-2", "Environments-1", &c),
            ]
        );
        // Done once: opening again finds nothing to do and changes nothing.
        store.close().await;
        let store = Store::open(&url).await.unwrap();
        assert_eq!(latest(&store, "Spaces-1").await.len(), 2);
        store.close().await;
    })
    .await;
}
