//! The list totals kept as data agree with counting the rows: after a
//! mixed run of deployments, other tasks, claims, time-outs, completions,
//! cancellations, deletions (one deployment, a project's, a space's), bulk
//! imports and failed writes; after the counts are made by their migration
//! or when the deployment index is filled; and after a restore, whatever
//! counts the backup held. A write that fails changes none of them. On
//! SQLite and, when configured, PostgreSQL.

use cuttle_model::{Deployment, Space, TaskState, Timestamp};
use cuttle_store::backup::{known_schema_version, Loader};
use cuttle_store::testing::{
    count, deployment_with_task, forget_deployment_index, kept_counts_disagree, negative_counts,
    HistoryEntry, ScratchPostgres,
};
use cuttle_store::{DeploymentQuery, NewTask, Store, TaskQuery};
use serde_json::Value;
use sqlx::Connection;
use std::future::Future;

const SPACES: [&str; 3] = ["Spaces-1", "Spaces-2", "Spaces-3"];
const PROJECTS: [&str; 3] = ["Projects-1", "Projects-2", "Projects-3"];
const ENVIRONMENTS: [&str; 3] = ["Environments-1", "Environments-2", "Environments-3"];

/// Runs `scenario` on a fresh SQLite store and, when configured, a fresh
/// PostgreSQL store; it gets the store and the URL that opens it again.
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

/// A small deterministic generator (xorshift), so a failure replays.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }

    fn name(&mut self, from: &[&'static str]) -> &'static str {
        from[self.below(from.len())]
    }
}

/// Filter combinations of each kind the lists offer, over the values the
/// runs use (and one they never use): the statements that read the kept
/// counts are checked on these; the counts themselves, on every key.
fn task_queries() -> Vec<TaskQuery> {
    let spaces = [None, Some("Spaces-1")];
    let names = [None, Some("Deploy")];
    let targets = [
        (None, None),
        (Some("Projects-1"), None),
        (Some("Projects-3"), Some("Environments-9")),
    ];
    let mut out = vec![];
    for space in spaces {
        for name in names {
            for (project, environment) in targets {
                for states in state_filters() {
                    out.push(TaskQuery {
                        space_id: space.map(str::to_owned),
                        name: name.map(str::to_owned),
                        project_id: project.map(str::to_owned),
                        environment_id: environment.map(str::to_owned),
                        states,
                        ..Default::default()
                    });
                }
            }
        }
    }
    out
}

fn deployment_queries() -> Vec<DeploymentQuery> {
    let targets: [(&[&str], &[&str]); 3] = [
        (&[], &[]),
        (&["Projects-1"], &["Environments-2", "Environments-9"]),
        (&["Projects-2", "Projects-3"], &[]),
    ];
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut out = vec![];
    for space in ["Spaces-1", "Spaces-3"] {
        for (project_ids, environment_ids) in targets {
            {
                for task_states in state_filters() {
                    out.push(DeploymentQuery {
                        space_id: space.into(),
                        project_ids: owned(project_ids),
                        environment_ids: owned(environment_ids),
                        task_states,
                        ..Default::default()
                    });
                }
            }
        }
    }
    out
}

fn state_filters() -> Vec<Vec<TaskState>> {
    use TaskState::*;
    vec![
        vec![],
        vec![Success],
        vec![Queued, Executing],
        vec![Cancelling, Failed, Canceled, TimedOut],
    ]
}

/// Every kept total, in [`task_queries`] then [`deployment_queries`] order.
async fn kept_totals(store: &Store) -> Vec<i64> {
    let mut out = vec![];
    for q in task_queries() {
        out.push(count(store, &q.count_statement()).await.unwrap());
    }
    for q in deployment_queries() {
        out.push(count(store, &q.count_statement()).await.unwrap());
    }
    out
}

/// Checks the kept counts against counting the rows, key by key, and the
/// totals of [`task_queries`] and [`deployment_queries`] read from them
/// against counting; `when` names the moment in a failure.
async fn agree(store: &Store, when: &str) {
    let mut wrong = kept_counts_disagree(store).await.unwrap();
    let mut matched = 0;
    for q in task_queries() {
        let kept = q.count_statement();
        assert!(kept.sql.contains("task_counts"), "{}", kept.sql);
        let kept = count(store, &kept).await.unwrap();
        let counted = count(store, &q.counting_statement()).await.unwrap();
        matched += counted;
        if kept != counted {
            wrong.push(format!("tasks {q:?}: kept {kept}, counted {counted}"));
        }
    }
    for q in deployment_queries() {
        let kept = q.count_statement();
        assert!(kept.sql.contains("deployment_counts"), "{}", kept.sql);
        let kept = count(store, &kept).await.unwrap();
        let counted = count(store, &q.counting_statement()).await.unwrap();
        matched += counted;
        if kept != counted {
            wrong.push(format!("deployments {q:?}: kept {kept}, counted {counted}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{:?} {when}: {} totals disagree:\n{}",
        store.backend(),
        wrong.len(),
        wrong.join("\n")
    );
    assert!(matched > 0, "{when}: nothing to count");
    assert_eq!(negative_counts(store).await.unwrap(), 0, "{when}");
}

/// Queues a deployment with its task in one transaction, as the server
/// does; returns its id.
async fn deploy(store: &Store, space: &str, project: &str, environment: &str) -> Deployment {
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
    let d = Deployment {
        id,
        space_id: space.into(),
        name: format!("Deploy to {environment}"),
        project_id: project.into(),
        environment_id: environment.into(),
        release_id: format!("Releases-{project}"),
        task_id: task.id,
        ..Default::default()
    };
    tx.insert(&d).await.unwrap();
    tx.commit().await.unwrap();
    d
}

/// A task that is no deployment, in a space or in none.
async fn other_task(store: &Store, space: Option<&str>, expired: bool) -> String {
    let mut tx = store.begin().await.unwrap();
    let past = Timestamp::from_millis(1_000_000);
    let t = tx
        .insert_task(NewTask {
            space_id: space.map(str::to_owned),
            name: "Health".into(),
            queue_time: expired.then_some(past),
            queue_time_expiry: expired.then(|| past.add_millis(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.id
}

/// What one run has written, to pick from.
#[derive(Default)]
struct Written {
    tasks: Vec<String>,
    deployments: Vec<Deployment>,
    imported: i64,
}

async fn step(store: &Store, dice: &mut Dice, w: &mut Written) {
    let lease = || Timestamp::now().add_millis(60_000);
    match dice.below(10) {
        0..=2 => {
            let d = deploy(
                store,
                dice.name(&SPACES),
                dice.name(&PROJECTS),
                dice.name(&ENVIRONMENTS),
            )
            .await;
            w.tasks.push(d.task_id.clone());
            w.deployments.push(d);
        }
        3 => {
            let space = *dice.pick(&[None, Some("Spaces-1"), Some("Spaces-3")]);
            let expired = dice.below(2) == 0;
            w.tasks.push(other_task(store, space, expired).await);
        }
        4 => {
            // Times out the expired ones on the way.
            store.claim_next_task("node", lease()).await.unwrap();
        }
        5 if !w.tasks.is_empty() => {
            let id = dice.pick(&w.tasks).clone();
            let state = *dice.pick(&[TaskState::Success, TaskState::Failed, TaskState::Canceled]);
            store.complete_task(&id, state, None).await.unwrap();
        }
        6 if !w.tasks.is_empty() => {
            let id = dice.pick(&w.tasks).clone();
            // Gone with its space: refused, and nothing changes.
            match store.request_cancel(&id).await {
                Ok(_) | Err(cuttle_store::StoreError::NotFound(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        7 if !w.deployments.is_empty() => {
            let i = dice.below(w.deployments.len());
            let d = w.deployments.swap_remove(i);
            let mut tx = store.begin().await.unwrap();
            // Gone already with its project or space: nothing changes.
            if tx.delete::<Deployment>(&d.id).await.is_ok() {
                tx.commit().await.unwrap();
            }
        }
        8 if !w.deployments.is_empty() => {
            let mut d = dice.pick(&w.deployments).clone();
            d.comments = Some("again".into());
            let mut tx = store.begin().await.unwrap();
            if tx.update(&d).await.is_ok() {
                tx.commit().await.unwrap();
            }
        }
        _ => {
            // Finished history written in bulk, ids far past the others
            // (ids written after move past them: the next batch goes a
            // million further).
            w.imported += 1;
            let mut batch = vec![];
            for j in 1..=3 {
                let (p, e) = (dice.name(&PROJECTS), dice.name(&ENVIRONMENTS));
                let state = *dice.pick(&[TaskState::Success, TaskState::Failed]);
                batch.push(deployment_with_task(&HistoryEntry {
                    n: 1_000_000 * w.imported + j,
                    space_id: dice.name(&SPACES),
                    project_id: p,
                    environment_id: e,
                    release_id: "Releases-imported",
                    state,
                }));
            }
            let mut tx = store.begin().await.unwrap();
            tx.import_deployments(&batch).await.unwrap();
            tx.commit().await.unwrap();
            for (d, t) in batch {
                w.tasks.push(t.id);
                w.deployments.push(d);
            }
        }
    }
}

/// A transaction that writes tasks and deployments (new, ended, deleted)
/// and then fails: none of it is kept, counts included.
async fn failed_write(store: &Store, w: &Written) {
    let mut tx = store.begin().await.unwrap();
    tx.insert_task(NewTask {
        space_id: Some("Spaces-1".into()),
        name: "Health".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for id in w.tasks.iter().take(5) {
        tx.complete_task(id, TaskState::Failed, Some("no"))
            .await
            .unwrap();
    }
    if let Some(d) = w.deployments.first() {
        // Gone already with its project or space: nothing to delete.
        let _ = tx.delete::<Deployment>(&d.id).await;
    }
    // The same document twice: refused, and the transaction with it.
    let probe = Space {
        id: "Spaces-probe".into(),
        name: "Probe".into(),
        slug: "probe".into(),
        ..Default::default()
    };
    tx.insert(&probe).await.unwrap();
    assert!(tx.insert(&probe).await.is_err());
    drop(tx);
}

async fn space(store: &Store, id: &str) {
    let mut tx = store.begin().await.unwrap();
    tx.insert(&Space {
        id: id.into(),
        name: id.into(),
        slug: id.to_lowercase(),
        ..Default::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Restores the store's snapshot into the empty database at `url`, with
/// its kept counts altered first (as a backup that disagreed would hold
/// them), and opens it.
async fn restore(store: &Store, url: &str) -> Store {
    let mut snapshot = store.snapshot().await.unwrap();
    let tables = snapshot.tables().await.unwrap();
    let mut loader = Loader::create(url, known_schema_version()).await.unwrap();
    for t in &tables {
        let mut rows = vec![];
        snapshot
            .each_row(t, |r| -> cuttle_store::Result<()> {
                rows.push(r);
                Ok(())
            })
            .await
            .unwrap();
        if t.name.ends_with("_counts") {
            let n = t.columns.iter().position(|c| c.name == "n").unwrap();
            for r in &mut rows {
                r[n] = Value::from(999);
            }
        }
        loader.insert(&t.name, &t.columns, &rows).await.unwrap();
    }
    snapshot.finish().await.unwrap();
    loader.commit().await.unwrap();
    Store::open(url).await.unwrap()
}

#[tokio::test]
async fn kept_totals_agree_with_counting_through_a_mixed_history() {
    on_both("list_counts_mixed", |store, _url| async move {
        for s in SPACES {
            space(&store, s).await;
        }
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
        let mut w = Written::default();
        for round in 0..2 {
            for _ in 0..40 {
                step(&store, &mut dice, &mut w).await;
            }
            failed_write(&store, &w).await;
            agree(&store, &format!("after round {round}")).await;
        }
        // A project's deployments at once, then a whole space.
        let mut tx = store.begin().await.unwrap();
        tx.delete_owned::<Deployment>("Spaces-1", "Projects-2")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        agree(&store, "after deleting a project's deployments").await;
        let mut tx = store.begin().await.unwrap();
        tx.delete_space("Spaces-3").await.unwrap();
        tx.commit().await.unwrap();
        for _ in 0..20 {
            step(&store, &mut dice, &mut w).await;
        }
        agree(&store, "after deleting a space").await;

        let dir = tempfile::tempdir().unwrap();
        let restored_pg = match store.backend() {
            cuttle_store::Backend::Postgres => ScratchPostgres::create("list_counts_restore").await,
            cuttle_store::Backend::Sqlite => None,
        };
        let url = match &restored_pg {
            Some(pg) => pg.url.clone(),
            None => Store::sqlite_url(&dir.path().join("restored.db")),
        };
        let restored = restore(&store, &url).await;
        agree(&restored, "after a restore").await;
        restored.close().await;
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_migration_and_the_deployment_index_fill_the_counts() {
    on_both("list_counts_migration", |store, url| async move {
        let mut dice = Dice(0x2545_f491_4f6c_dd1d);
        let mut w = Written::default();
        for _ in 0..40 {
            step(&store, &mut dice, &mut w).await;
        }
        store.close().await;
        // As before the counts' migration: no tables, not applied.
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        for sql in [
            "DROP TABLE task_counts",
            "DROP TABLE deployment_counts",
            "DELETE FROM _sqlx_migrations WHERE description = 'list counts'",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
        let store = Store::open(&url).await.unwrap();
        agree(&store, "after the migration").await;

        // A database older than the deployment index: its deployments are
        // counted once they are indexed.
        forget_deployment_index(&store).await.unwrap();
        store.close().await;
        let store = Store::open(&url).await.unwrap();
        agree(&store, "after the deployment index was filled").await;
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_write_leaves_the_counts_as_they_were() {
    on_both("list_counts_failed", |store, _| async move {
        let mut dice = Dice(0x1234_5678_9abc_def1);
        let mut w = Written::default();
        for _ in 0..15 {
            step(&store, &mut dice, &mut w).await;
        }
        // Something running under a lease (a new target: nothing holds it
        // back).
        deploy(&store, "Spaces-1", "Projects-9", "Environments-9").await;
        let (running, lease) = store
            .claim_next_task_held("node", 60_000)
            .await
            .unwrap()
            .expect("a queued task");
        let before = kept_totals(&store).await;
        failed_write(&store, &w).await;
        // A write under a lease another node took over: refused, whole.
        let stale = cuttle_store::TaskLease {
            generation: lease.generation - 1,
            ..lease.clone()
        };
        assert!(store
            .complete_task_held(&stale, TaskState::Success, None)
            .await
            .is_err());
        assert_eq!(kept_totals(&store).await, before);
        agree(&store, "after failed writes").await;
        // The same writes that succeed do move them.
        assert!(store
            .complete_task_held(&lease, TaskState::Success, None)
            .await
            .unwrap());
        assert_ne!(kept_totals(&store).await, before, "{running:?}");
        agree(&store, "after the write").await;
        store.close().await;
    })
    .await;
}
