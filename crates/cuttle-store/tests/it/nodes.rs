//! Server nodes' rows and the leader lease, on SQLite and (when
//! CUTTLE_TEST_DATABASE_URL is set) PostgreSQL.

use crate::common;

use common::on_both;
use cuttle_model::Timestamp;
use cuttle_store::nodes::{NodeChange, LEADER_LEASE};
use cuttle_store::testing::ScratchPostgres;
use cuttle_store::{Backend, NewTask, Store, StoreError};
use std::time::Duration;

#[tokio::test]
async fn nodes_register_heartbeat_change_stop_and_are_deleted_only_offline() {
    on_both("nodes_rows", |store| async move {
        // The database's clock, read through the store, is today's.
        let db_now = store.database_now().await.unwrap();
        let here = Timestamp::now().millis();
        assert!(
            (db_now - here).abs() < 3_600_000,
            "{}: database clock {db_now} against {here}",
            store.backend().name()
        );

        let a = store.register_node("node-a", 4, "1.0.0").await.unwrap();
        assert_eq!(a.id, "OctopusServerNodes-node-a");
        assert_eq!(
            (a.max_concurrent_tasks, a.is_in_maintenance_mode, a.stopped),
            (4, false, false)
        );
        assert!(a.last_seen >= db_now);
        store.register_node("node-b", 8, "1.0.0").await.unwrap();

        // A task node-a claims counts as running on it.
        let mut tx = store.begin().await.unwrap();
        tx.insert_task(NewTask {
            name: "Health".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let lease = Timestamp::now().add_millis(60_000);
        let claimed = store.claim_next_task("node-a", lease).await.unwrap();
        assert!(claimed.is_some());
        let cluster = store.cluster().await.unwrap();
        let names: Vec<(&str, i64)> = cluster
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.running_tasks))
            .collect();
        assert_eq!(names, [("node-a", 1), ("node-b", 0)]);
        assert!(cluster.now >= db_now);

        // The heartbeat records the clock skew and hands back the row.
        let row = store
            .heartbeat_node("node-a", -7_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.clock_skew_ms, -7_000);

        // A change applies to its node alone; an unknown node is not found.
        let changed = store
            .change_node(
                "OctopusServerNodes-node-b",
                &NodeChange {
                    max_concurrent_tasks: Some(2),
                    is_in_maintenance_mode: Some(true),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (changed.max_concurrent_tasks, changed.is_in_maintenance_mode),
            (2, true)
        );
        let untouched = store
            .require_node("OctopusServerNodes-node-a")
            .await
            .unwrap();
        assert_eq!(
            (
                untouched.max_concurrent_tasks,
                untouched.is_in_maintenance_mode
            ),
            (4, false)
        );
        let missing = store
            .change_node("OctopusServerNodes-none", &NodeChange::default())
            .await
            .unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");

        // A drained node that restarts stays drained; its cap is the new start's.
        let restarted = store.register_node("node-b", 6, "1.1.0").await.unwrap();
        assert_eq!(
            (
                restarted.max_concurrent_tasks,
                restarted.is_in_maintenance_mode,
                restarted.version.as_str()
            ),
            (6, true, "1.1.0")
        );

        // An online node cannot be deleted, and stays.
        let refused = store
            .delete_offline_node("OctopusServerNodes-node-b", 60_000)
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Conflict(_)), "{refused}");
        assert!(store
            .node("OctopusServerNodes-node-b")
            .await
            .unwrap()
            .is_some());
        let unknown = store
            .delete_offline_node("OctopusServerNodes-none", 60_000)
            .await
            .unwrap_err();
        assert!(matches!(unknown, StoreError::NotFound(_)), "{unknown}");

        // Stopped cleanly, it can; its next heartbeat (were it to come
        // back) finds no row.
        store.node_stopped("node-b").await.unwrap();
        assert!(
            store
                .require_node("OctopusServerNodes-node-b")
                .await
                .unwrap()
                .stopped
        );
        store
            .delete_offline_node("OctopusServerNodes-node-b", 60_000)
            .await
            .unwrap();
        assert!(store.heartbeat_node("node-b", 0).await.unwrap().is_none());

        // Silent for longer than allowed, it is offline too.
        tokio::time::sleep(Duration::from_millis(50)).await;
        store
            .delete_offline_node("OctopusServerNodes-node-a", 1)
            .await
            .unwrap();
        assert!(store.cluster().await.unwrap().nodes.is_empty());
    })
    .await;
}

#[tokio::test]
async fn one_node_holds_the_leader_lease_until_it_lapses_or_is_given_up() {
    on_both("nodes_leader", |store| async move {
        let pg = store.backend() == Backend::Postgres;
        assert_eq!(
            store
                .take_lease(LEADER_LEASE, "node-a", 60_000)
                .await
                .unwrap(),
            Some(1)
        );
        // Renewing keeps the generation.
        assert_eq!(
            store
                .take_lease(LEADER_LEASE, "node-a", 60_000)
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(
            store.cluster().await.unwrap().leader.as_deref(),
            Some("node-a")
        );
        if !pg {
            // One node per SQLite database: whoever asks leads.
            assert_eq!(
                store
                    .take_lease(LEADER_LEASE, "node-b", 60_000)
                    .await
                    .unwrap(),
                Some(2)
            );
            assert_eq!(
                store.cluster().await.unwrap().leader.as_deref(),
                Some("node-b")
            );
            return;
        }
        // Another node is refused while the lease runs.
        assert_eq!(
            store
                .take_lease(LEADER_LEASE, "node-b", 60_000)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.cluster().await.unwrap().leader.as_deref(),
            Some("node-a")
        );

        // Given up, it goes to the next node that asks, with a new generation.
        store.release_lease(LEADER_LEASE, "node-b").await.unwrap(); // not its: nothing
        assert_eq!(
            store
                .take_lease(LEADER_LEASE, "node-b", 60_000)
                .await
                .unwrap(),
            None
        );
        store.release_lease(LEADER_LEASE, "node-a").await.unwrap();
        assert_eq!(store.cluster().await.unwrap().leader, None);
        assert_eq!(
            store.take_lease(LEADER_LEASE, "node-b", 200).await.unwrap(),
            Some(2)
        );
        assert_eq!(
            store
                .take_lease(LEADER_LEASE, "node-a", 60_000)
                .await
                .unwrap(),
            None
        );

        // Lapsed (node-b did not renew), it goes to node-a.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(store.cluster().await.unwrap().leader, None);
        assert_eq!(
            store
                .take_lease(LEADER_LEASE, "node-a", 60_000)
                .await
                .unwrap(),
            Some(3)
        );
        assert_eq!(
            store
                .take_lease(LEADER_LEASE, "node-b", 60_000)
                .await
                .unwrap(),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn a_task_queued_on_postgresql_wakes_every_watching_node() {
    let Some(pg) = ScratchPostgres::create("nodes_notify").await else {
        return;
    };
    let queuing = Store::open(&pg.url).await.unwrap();
    let watching = Store::open(&pg.url).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    watching
        .watch_task_queue(move || tx.send(()).is_ok())
        .await
        .unwrap();

    // Rolled back: no task, no wake-up.
    let mut t = queuing.begin().await.unwrap();
    t.insert_task(NewTask {
        name: "Health".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    t.rollback().await.unwrap();
    // Committed: the other store hears of it.
    let mut t = queuing.begin().await.unwrap();
    t.insert_task(NewTask {
        name: "Health".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    t.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the watching store heard of the queued task")
        .unwrap();
    // Exactly one notification for the one committed task.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "a rolled-back task woke a node"
    );
    queuing.close().await;
    watching.close().await;
}

async fn wait(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the watcher woke")
        .unwrap()
}

#[tokio::test]
async fn fault_a_node_whose_listening_connection_is_cut_wakes_and_listens_again() {
    let Some(pg) = ScratchPostgres::create("nodes_notify_cut").await else {
        return;
    };
    let store = Store::open(&pg.url).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    store
        .watch_task_queue(move || tx.send(()).is_ok())
        .await
        .unwrap();
    // The database ends the listening session, as a restart or a network
    // cut would: the node is woken (a task queued meanwhile went unheard).
    let admin = sqlx::PgPool::connect(&pg.url).await.unwrap();
    let cut: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(cut.len(), 1, "one listening session to cut: {cut:?}");
    assert!(cut[0].1, "the session was ended");
    let old_pid = cut[0].0;
    wait(&mut rx).await;

    // Listening again on a new session, it hears the next queued task.
    let listening = || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> $1",
        )
        .bind(old_pid)
        .fetch_one(&admin)
        .await
        .unwrap();
        n
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while listening().await == 0 {
        assert!(std::time::Instant::now() < until, "never listened again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while rx.try_recv().is_ok() {}
    let mut t = store.begin().await.unwrap();
    t.insert_task(NewTask {
        name: "Health".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    t.commit().await.unwrap();
    wait(&mut rx).await;
    admin.close().await;
    store.close().await;
}

#[tokio::test]
async fn a_migration_unsafe_for_older_nodes_is_refused_while_one_runs() {
    use cuttle_store::rolling_upgrade::{check, Pending};
    on_both("nodes_rolling", |store| async move {
        store.register_node("node-a", 4, "1.0.0").await.unwrap();
        store.register_node("node-b", 4, "1.0.0").await.unwrap();
        store.node_stopped("node-b").await.unwrap();
        let alive = store.nodes_alive().await.unwrap();
        let drop_column = Pending {
            version: 29990101000001,
            description: "drop a column",
            sql: "ALTER TABLE tasks DROP COLUMN name;",
        };
        let add_table = Pending {
            version: 29990101000001,
            description: "add a table",
            sql: "-- Safe with older nodes still running: new.\nCREATE TABLE t (a TEXT);",
        };
        assert!(check(&[add_table], &alive).is_ok());
        match store.backend() {
            // One node only: nothing to break.
            Backend::Sqlite => {
                assert!(alive.is_empty());
                assert!(check(&[drop_column], &alive).is_ok());
            }
            Backend::Postgres => {
                // The stopped node is not counted; the running one is named.
                assert_eq!(alive, [("node-a".to_owned(), "1.0.0".to_owned())]);
                let refused = check(&[drop_column], &alive).unwrap_err();
                assert!(matches!(refused, StoreError::UnsafeWithOlderNodes { .. }));
                let text = refused.to_string();
                assert!(
                    text.contains("migration 29990101000001 (drop a column)")
                        && text.contains("node-a (version 1.0.0)"),
                    "{text}"
                );
            }
        }
    })
    .await;
}
