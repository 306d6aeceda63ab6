//! What `/metrics` reads at scrape time, the same on SQLite and (when
//! CUTTLE_TEST_DATABASE_URL is set) PostgreSQL: unfinished tasks by type,
//! the oldest waiting and running, agents by health status (a JSON field,
//! read in each dialect), the feed's bytes and the migrations.

use crate::common;

use common::on_both;
use cuttle_model::{HealthStatus, Machine, TaskState, Timestamp, Worker};
use cuttle_store::NewTask;

fn task(name: &str) -> NewTask {
    NewTask {
        space_id: Some("Spaces-1".into()),
        name: name.into(),
        description: format!("{name} task"),
        arguments: serde_json::json!({}),
        ..Default::default()
    }
}

fn sorted(mut v: Vec<(String, i64)>) -> Vec<(String, i64)> {
    v.sort();
    v
}

#[tokio::test]
async fn gauges_count_unfinished_tasks_and_agents_by_health() {
    on_both("gauges", |store| async move {
        let empty = store.task_gauges().await.unwrap();
        assert!(empty.queued.is_empty() && empty.running.is_empty());
        assert!(empty.oldest_queue_time.is_none() && empty.oldest_start_time.is_none());

        let mut tx = store.begin().await.unwrap();
        let first = tx.insert_task(task("Deploy")).await.unwrap();
        tx.insert_task(task("Deploy")).await.unwrap();
        tx.insert_task(task("Health")).await.unwrap();
        // Scheduled for later: queued, but not waiting yet.
        let later = NewTask {
            queue_time: Some(Timestamp::now().add_millis(3_600_000)),
            ..task("Deploy")
        };
        tx.insert_task(later).await.unwrap();
        tx.commit().await.unwrap();
        let lease = Timestamp::now().add_millis(60_000);
        let claimed = store.claim_next_task("node", lease).await.unwrap().unwrap();
        assert_eq!(claimed.id, first.id);

        let g = store.task_gauges().await.unwrap();
        assert_eq!(
            sorted(g.queued),
            [("Deploy".to_owned(), 2), ("Health".to_owned(), 1)]
        );
        assert_eq!(g.running, [("Deploy".to_owned(), 1)]);
        let now = Timestamp::now().millis();
        let oldest = g.oldest_queue_time.expect("a waiting task").millis();
        assert!(oldest <= now && now - oldest < 60_000, "{oldest} vs {now}");
        assert_eq!(g.oldest_start_time, claimed.start_time);

        // Finished tasks are history, not counted.
        store
            .complete_task(&claimed.id, TaskState::Success, None)
            .await
            .unwrap();
        let g = store.task_gauges().await.unwrap();
        assert!(g.running.is_empty(), "{:?}", g.running);
        assert!(g.oldest_start_time.is_none());

        let mut tx = store.begin().await.unwrap();
        for (i, status) in [
            HealthStatus::Healthy,
            HealthStatus::Healthy,
            HealthStatus::Unavailable,
        ]
        .into_iter()
        .enumerate()
        {
            let m = Machine {
                id: format!("Machines-{i}"),
                space_id: "Spaces-1".into(),
                name: format!("web{i}"),
                health_status: status,
                ..Default::default()
            };
            tx.insert(&m).await.unwrap();
        }
        let w = Worker {
            id: "Workers-1".into(),
            space_id: "Spaces-1".into(),
            name: "worker".into(),
            ..Default::default()
        };
        tx.insert(&w).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            sorted(store.agents_by_health().await.unwrap()),
            [
                ("Healthy".to_owned(), 2),
                ("Unavailable".to_owned(), 1),
                ("Unknown".to_owned(), 1)
            ]
        );

        assert_eq!(store.package_feed_bytes().await.unwrap(), 0);
        assert!(store.migrations_applied().await.unwrap());
        assert!(store.pool_use().size >= 1);
    })
    .await;
}
