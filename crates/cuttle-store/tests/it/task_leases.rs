//! Task leases on the database's clock and their fencing token: a node
//! that lost a task has every write for it refused, and nothing of the
//! write is kept. On SQLite and (when CUTTLE_TEST_DATABASE_URL is set)
//! PostgreSQL.

use crate::common;

use common::on_both;
use cuttle_model::task::{Activity, ActivityStatus, LogCategory, LogLine};
use cuttle_model::{TaskState, Timestamp};
use cuttle_store::{NewTask, StepResult, Store, StoreError, TaskLease};
use std::time::Duration;

async fn queue(store: &Store) -> String {
    let mut tx = store.begin().await.unwrap();
    let t = tx
        .insert_task(NewTask {
            name: "Deploy".into(),
            description: "Deploy".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.id
}

fn line(message: &str) -> LogLine {
    LogLine {
        seq: 0,
        activity_id: "A".into(),
        category: LogCategory::Warning,
        occurred_at: Timestamp::now(),
        message: message.into(),
        detail: None,
    }
}

fn numbered(from: i64, messages: &[&str]) -> Vec<LogLine> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| LogLine {
            seq: from + i as i64,
            ..line(m)
        })
        .collect()
}

fn activity(task: &str, status: ActivityStatus) -> Activity {
    Activity {
        id: format!("{task}_1"),
        parent_id: None,
        name: "Deploy".into(),
        status,
        started: None,
        ended: None,
        show_at_summary_level: true,
        progress_percentage: None,
        progress_message: None,
    }
}

fn step(n: i64) -> StepResult {
    StepResult {
        step_number: n,
        status: "Success".into(),
        failures: vec![],
        canceled: false,
        state: "sealed".into(),
    }
}

fn is_lost(r: Result<impl std::fmt::Debug, StoreError>, held: i64, current: i64) {
    match r {
        Err(StoreError::LeaseLost {
            held: h,
            current: c,
            ..
        }) => assert_eq!((h, c), (held, current)),
        other => panic!("expected the lease to be lost, got {other:?}"),
    }
}

/// Claims `task`'s lease for a moment only, so that it lapses on the
/// database's clock at once.
async fn claim_briefly(store: &Store, node: &str) -> TaskLease {
    let (_, lease) = store
        .claim_next_task_held(node, 1)
        .await
        .unwrap()
        .expect("a queued task");
    tokio::time::sleep(Duration::from_millis(20)).await;
    lease
}

#[tokio::test]
async fn a_write_with_a_stale_generation_is_refused_and_changes_nothing() {
    on_both("lease_fencing", |store| async move {
        let backend = store.backend().name();
        let id = queue(&store).await;
        let a = claim_briefly(&store, "node-a").await;
        assert_eq!(a.task_id, id);
        assert_eq!(a.generation, 1, "{backend}: a claim is the first hand");
        store
            .append_log_lines_held(&a, &numbered(1, &["one", "two"]))
            .await
            .unwrap();
        store
            .put_activity_held(&a, &activity(&id, ActivityStatus::Running), 1)
            .await
            .unwrap();
        store.record_step_result(&a, &step(1)).await.unwrap();
        // A step is recorded once.
        assert!(matches!(
            store.record_step_result(&a, &step(1)).await,
            Err(StoreError::Conflict(_))
        ));

        // node-a's lease lapsed on the database's clock: node-b takes over.
        let b = store
            .take_over_lapsed_task("node-b", 60_000, &[])
            .await
            .unwrap()
            .expect("a lapsed task is taken over");
        assert_eq!(b.previous_node.as_deref(), Some("node-a"), "{backend}");
        assert_eq!(b.lease.generation, 2, "{backend}");
        assert_eq!(b.task.server_node.as_deref(), Some("node-b"), "{backend}");
        assert_eq!(b.task.state, TaskState::Executing, "{backend}");
        let b = b.lease;

        // Every write node-a makes now is refused.
        is_lost(
            store
                .append_log_lines_held(&a, &numbered(3, &["late"]))
                .await,
            1,
            2,
        );
        is_lost(
            store
                .put_activity_held(&a, &activity(&id, ActivityStatus::Failed), 1)
                .await,
            1,
            2,
        );
        is_lost(store.mark_warnings_held(&a).await, 1, 2);
        is_lost(store.record_step_result(&a, &step(2)).await, 1, 2);
        is_lost(
            store
                .complete_task_held(&a, TaskState::Failed, Some("late"))
                .await,
            1,
            2,
        );
        is_lost(store.renew_task_lease(&a, 60_000).await, 1, 2);
        let mut tx = store.begin().await.unwrap();
        is_lost(tx.check_task_lease(&a).await, 1, 2);
        tx.rollback().await.unwrap();

        // ...and changed nothing.
        let (activities, lines) = store.task_log(&id).await.unwrap();
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["one", "two"], "{backend}");
        assert_eq!(activities[0].status, ActivityStatus::Running, "{backend}");
        let task = store.task(&id).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Executing, "{backend}");
        assert!(!task.has_warnings_or_errors, "{backend}");
        assert_eq!(task.server_node.as_deref(), Some("node-b"), "{backend}");
        let steps: Vec<i64> = store
            .step_results(&id)
            .await
            .unwrap()
            .iter()
            .map(|s| s.step_number)
            .collect();
        assert_eq!(steps, [1], "{backend}");

        // node-b's lease runs out in about a minute, as node-c sees it;
        // node-b runs nothing of another node's.
        let lapse = store
            .next_lease_lapse_in_ms("node-c")
            .await
            .unwrap()
            .expect("node-b's lease");
        assert!((50_000..=60_000).contains(&lapse), "{backend}: {lapse}");
        assert_eq!(store.next_lease_lapse_in_ms("node-b").await.unwrap(), None);
        // node-b's lease runs: nobody else takes the task.
        assert!(store
            .take_over_lapsed_task("node-c", 60_000, &[])
            .await
            .unwrap()
            .is_none());
        // node-b carries on where the log stopped, and ends the task.
        assert_eq!(store.last_log_seq(&id).await.unwrap(), 2);
        store
            .append_log_lines_held(&b, &numbered(3, &["three"]))
            .await
            .unwrap();
        store.renew_task_lease(&b, 60_000).await.unwrap();
        assert!(store
            .complete_task_held(&b, TaskState::Success, None)
            .await
            .unwrap());
        // Renewing an ended task holds nothing and is no error.
        store.renew_task_lease(&b, 60_000).await.unwrap();
        assert_eq!(
            store.task(&id).await.unwrap().unwrap().state,
            TaskState::Success
        );
        assert!(store
            .take_over_lapsed_task("node-c", 60_000, &[])
            .await
            .unwrap()
            .is_none());

        // A lease for a task that does not exist is refused as such.
        let ghost = TaskLease {
            task_id: "ServerTasks-999999".into(),
            node: "node-a".into(),
            generation: 1,
        };
        assert!(matches!(
            store.append_log_lines_held(&ghost, &[line("x")]).await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn a_restarted_node_lapses_its_own_leases_and_takes_its_tasks_back() {
    on_both("lease_own_leftovers", |store| async move {
        let id = queue(&store).await;
        let (_, first) = store
            .claim_next_task_held("node-a", 60_000)
            .await
            .unwrap()
            .unwrap();
        // The lease runs: nobody may take the task.
        for node in ["node-a", "node-b"] {
            assert!(store
                .take_over_lapsed_task(node, 60_000, &[])
                .await
                .unwrap()
                .is_none());
        }
        // node-a restarts: its leases end at once.
        assert_eq!(store.lapse_leases_of("node-b").await.unwrap(), 0);
        assert_eq!(store.lapse_leases_of("node-a").await.unwrap(), 1);
        // A node passes over the tasks it runs already.
        assert!(store
            .take_over_lapsed_task("node-a", 60_000, std::slice::from_ref(&id))
            .await
            .unwrap()
            .is_none());
        let again = store
            .take_over_lapsed_task("node-a", 60_000, &[])
            .await
            .unwrap()
            .expect("its own leftover");
        assert_eq!(again.task.id, id);
        assert_eq!(again.previous_node.as_deref(), Some("node-a"));
        assert_eq!(again.lease.generation, first.generation + 1);
        // Taken: its new lease runs, so nobody takes it again.
        assert!(store
            .take_over_lapsed_task("node-a", 60_000, &[])
            .await
            .unwrap()
            .is_none());
        is_lost(
            store.append_log_lines_held(&first, &[line("x")]).await,
            first.generation,
            first.generation + 1,
        );
    })
    .await;
}

/// A node writing as fast as it can while another takes its task over:
/// every line is either stored before the takeover or refused, never after
/// it, so the new holder's numbering from the last stored line has neither
/// a gap nor a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_takeover_land_before_it_or_not_at_all() {
    on_both("lease_race", |store| async move {
        let backend = store.backend().name();
        let id = queue(&store).await;
        let a = claim_briefly(&store, "node-a").await;
        let writer = {
            let store = store.clone();
            let a = a.clone();
            tokio::spawn(async move {
                let mut stored = 0i64;
                for seq in 1..=10_000i64 {
                    match store
                        .append_log_lines_held(&a, &numbered(seq, &["a"]))
                        .await
                    {
                        Ok(()) => stored = seq,
                        Err(StoreError::LeaseLost { .. }) => return (stored, seq),
                        Err(e) => panic!("{e}"),
                    }
                }
                (stored, 0)
            })
        };
        // Let some lines land first.
        while store.last_log_seq(&id).await.unwrap() < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let b = store
            .take_over_lapsed_task("node-b", 60_000, &[])
            .await
            .unwrap()
            .expect("taken over")
            .lease;
        let last = store.last_log_seq(&id).await.unwrap();
        let (stored, refused_at) = writer.await.unwrap();
        assert!(refused_at > 0, "{backend}: node-a was never refused");
        assert_eq!(
            stored, last,
            "{backend}: node-a's last stored line is the last one the new holder saw"
        );
        assert_eq!(refused_at, last + 1, "{backend}");
        store
            .append_log_lines_held(&b, &numbered(last + 1, &["b"]))
            .await
            .unwrap();
        let lines = store.log_lines_after(&id, 0, 20_000).await.unwrap();
        let seqs: Vec<i64> = lines.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, (1..=last + 1).collect::<Vec<_>>(), "{backend}");
    })
    .await;
}
