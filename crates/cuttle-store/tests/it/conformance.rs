//! The store's conformance suite: every scenario runs on SQLite and, when
//! CUTTLE_TEST_DATABASE_URL is set, on PostgreSQL, and must behave the same.

use crate::common;

use common::on_both;
use cuttle_model::ids::Collection;
use cuttle_model::task::{Activity, ActivityStatus, LogCategory, LogLine};
use cuttle_model::{ApiKey, Environment, Release, TaskState, Timestamp, User};
use cuttle_store::tasks::CancelOutcome;
use cuttle_store::testing::ScratchPostgres;
use cuttle_store::{DocumentQuery, NewTask, Store, StoreError, TaskQuery};

fn env(id: &str, name: &str, sort: i64) -> Environment {
    Environment {
        id: id.into(),
        space_id: "Spaces-1".into(),
        name: name.into(),
        sort_order: sort,
        ..Default::default()
    }
}

#[tokio::test]
async fn documents_crud_uniqueness_and_paging() {
    on_both("documents", |store| async move {
        let mut tx = store.begin().await.unwrap();
        let a = tx.next_id(Collection::Environments).await.unwrap();
        let b = tx.next_id(Collection::Environments).await.unwrap();
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("Environments-1", "Environments-2")
        );
        tx.insert(&env(&a, "Production", 2)).await.unwrap();
        tx.insert(&env(&b, "Dev_50%", 1)).await.unwrap();
        tx.commit().await.unwrap();

        // Names are unique per space, case-insensitively, and a clash writes nothing.
        let mut tx = store.begin().await.unwrap();
        let err = tx
            .insert(&env("Environments-9", "production", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(ref m) if m.contains("already exists")),
            "{err}"
        );
        drop(tx);
        assert!(store
            .get::<Environment>("Environments-9")
            .await
            .unwrap()
            .is_none());

        // Ordered by sort order; paged; filtered by partial and exact name and ids.
        let all = store
            .list::<Environment>(&DocumentQuery::default())
            .await
            .unwrap();
        assert_eq!(all.total, 2);
        assert_eq!(all.items[0].name, "Dev_50%");
        let page = store
            .list::<Environment>(&DocumentQuery {
                skip: 1,
                take: Some(1),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            (page.total, page.items.len(), page.items[0].name.as_str()),
            (2, 1, "Production")
        );
        let partial = |p: &str| DocumentQuery {
            partial_name: Some(p.into()),
            ..Default::default()
        };
        assert_eq!(
            store
                .list::<Environment>(&partial("PROD"))
                .await
                .unwrap()
                .total,
            1
        );
        assert_eq!(
            store
                .list::<Environment>(&partial("_50%"))
                .await
                .unwrap()
                .total,
            1
        );
        assert_eq!(
            store
                .list::<Environment>(&partial("%"))
                .await
                .unwrap()
                .total,
            1,
            "% is literal"
        );
        let by_ids = DocumentQuery {
            ids: vec![b.clone(), "Environments-77".into()],
            ..Default::default()
        };
        assert_eq!(
            store.list::<Environment>(&by_ids).await.unwrap().items[0].id,
            b
        );
        let found = store
            .find_by_name::<Environment>(Some("Spaces-1"), None, "production")
            .await
            .unwrap();
        assert_eq!(found.map(|e| e.id), Some(a.clone()));

        // Update, then delete.
        let mut e = store.require::<Environment>(&a).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        e.description = "live".into();
        tx.update(&e).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.require::<Environment>(&a).await.unwrap().description,
            "live"
        );
        let mut tx = store.begin().await.unwrap();
        tx.delete::<Environment>(&a).await.unwrap();
        assert!(matches!(
            tx.delete::<Environment>(&a).await,
            Err(StoreError::NotFound(_))
        ));
        tx.commit().await.unwrap();
        assert!(matches!(
            store.require::<Environment>(&a).await,
            Err(StoreError::NotFound(_))
        ));

        // Release versions are unique per project only.
        let rel = |id: &str, project: &str| Release {
            id: id.into(),
            space_id: "Spaces-1".into(),
            project_id: project.into(),
            version: "1.0.0".into(),
            ..Default::default()
        };
        let mut tx = store.begin().await.unwrap();
        tx.insert(&rel("Releases-1", "Projects-1")).await.unwrap();
        tx.insert(&rel("Releases-2", "Projects-2")).await.unwrap();
        let err = tx
            .insert(&rel("Releases-3", "Projects-1"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("version '1.0.0' already exists"),
            "{err}"
        );
    })
    .await;
}

fn new_task(name: &str) -> NewTask {
    NewTask {
        space_id: Some("Spaces-1".into()),
        name: name.into(),
        description: format!("{name} task"),
        arguments: serde_json::json!({"DeploymentId": "Deployments-1"}),
        project_id: Some("Projects-1".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn task_queue_claims_in_order_once() {
    on_both("tasks", |store| async move {
        let mut tx = store.begin().await.unwrap();
        let t1 = tx.insert_task(new_task("Deploy")).await.unwrap();
        let t2 = tx.insert_task(new_task("Deploy")).await.unwrap();
        let later = NewTask {
            queue_time: Some(Timestamp::now().add_millis(3_600_000)),
            ..new_task("Deploy")
        };
        let t3 = tx.insert_task(later).await.unwrap();
        let expired = NewTask {
            queue_time_expiry: Some(Timestamp::now().add_millis(-1000)),
            ..new_task("Deploy")
        };
        let t4 = tx.insert_task(expired).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(t1.state, TaskState::Queued);

        let lease = Timestamp::now().add_millis(60_000);
        let c1 = store
            .claim_next_task("node-a", lease)
            .await
            .unwrap()
            .unwrap();
        let c2 = store
            .claim_next_task("node-b", lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c1.id.as_str(), c2.id.as_str()),
            (t1.id.as_str(), t2.id.as_str())
        );
        assert_eq!(c1.state, TaskState::Executing);
        assert_eq!(c1.server_node.as_deref(), Some("node-a"));
        assert!(c1.start_time.is_some());
        // The scheduled task is not due; the expired one timed out instead of starting.
        assert!(store
            .claim_next_task("node-a", lease)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store.require_task(&t4.id).await.unwrap().state,
            TaskState::TimedOut
        );
        assert!(store.next_scheduled_time().await.unwrap().unwrap() > Timestamp::now());

        assert!(store
            .complete_task(&c1.id, TaskState::Success, None)
            .await
            .unwrap());
        assert!(!store
            .complete_task(&c1.id, TaskState::Failed, Some("late"))
            .await
            .unwrap());
        let done = store.require_task(&c1.id).await.unwrap();
        assert!(done.is_completed && done.finished_successfully && done.completed_time.is_some());

        assert_eq!(
            store.request_cancel(&t3.id).await.unwrap(),
            CancelOutcome::CanceledWhileQueued
        );
        assert_eq!(
            store.request_cancel(&c2.id).await.unwrap(),
            CancelOutcome::Cancelling
        );
        assert_eq!(
            store
                .cancelling_among(std::slice::from_ref(&c2.id))
                .await
                .unwrap(),
            vec![c2.id.clone()]
        );
        assert_eq!(
            store.request_cancel(&c1.id).await.unwrap(),
            CancelOutcome::AlreadyDone
        );
        assert!(matches!(
            store.request_cancel("ServerTasks-999").await,
            Err(StoreError::NotFound(_))
        ));

        // A node that restarts finds its own running tasks.
        assert_eq!(
            store.orphaned_tasks(Some("node-b")).await.unwrap(),
            vec![c2.id.clone()]
        );
        assert!(store
            .orphaned_tasks(Some("node-z"))
            .await
            .unwrap()
            .is_empty());

        let (all, total) = store.list_tasks(&TaskQuery::default()).await.unwrap();
        assert_eq!(total, 4);
        assert_eq!(all[0].id, t4.id, "newest first");
        let q = TaskQuery {
            ids: vec![t2.id.clone(), "ServerTasks-404".into()],
            ..Default::default()
        };
        assert_eq!(store.list_tasks(&q).await.unwrap().0.len(), 1);
        let q = TaskQuery {
            states: vec![TaskState::Canceled],
            ..Default::default()
        };
        assert_eq!(store.list_tasks(&q).await.unwrap().0[0].id, t3.id);
    })
    .await;
}

/// A task's root activity, running, with its progress.
fn running_root(task_id: &str, percentage: i64, message: &str) -> Activity {
    Activity {
        id: format!("{task_id}_1"),
        parent_id: None,
        name: "Deploy".into(),
        status: ActivityStatus::Running,
        started: Some(Timestamp::now()),
        ended: None,
        show_at_summary_level: true,
        progress_percentage: Some(percentage),
        progress_message: Some(message.into()),
    }
}

#[tokio::test]
async fn task_log_round_trips() {
    on_both("log", |store| async move {
        let mut tx = store.begin().await.unwrap();
        let t = tx.insert_task(new_task("Deploy")).await.unwrap();
        tx.commit().await.unwrap();
        let root = running_root(&t.id, 30, "warming up");
        store.put_activity(&t.id, &root, 0).await.unwrap();
        let done = Activity {
            status: ActivityStatus::Success,
            ended: Some(Timestamp::now()),
            ..root.clone()
        };
        store.put_activity(&t.id, &done, 0).await.unwrap();
        let lines: Vec<LogLine> = (1..=3)
            .map(|i| LogLine {
                seq: i,
                activity_id: root.id.clone(),
                category: if i == 2 {
                    LogCategory::Error
                } else {
                    LogCategory::Info
                },
                occurred_at: Timestamp::now(),
                message: format!("line {i} ünïcode"),
                detail: None,
            })
            .collect();
        store.append_log_lines(&t.id, &lines).await.unwrap();
        assert_eq!(store.last_log_seq(&t.id).await.unwrap(), 3);
        let (acts, got) = store.task_log(&t.id).await.unwrap();
        assert_eq!(acts, vec![done]);
        assert_eq!(got, lines);
        // Writing a sequence number twice fails instead of duplicating a line.
        assert!(store.append_log_lines(&t.id, &lines[..1]).await.is_err());
    })
    .await;
}

/// A script may print a NUL. PostgreSQL cannot hold one in text, and
/// refused the whole batch of lines around it; SQLite kept it. Both now
/// keep every line, the NUL shown as U+FFFD.
#[tokio::test]
async fn fault_a_log_line_with_a_nul_is_kept_on_both_databases() {
    on_both("log_nul", |store| async move {
        let mut tx = store.begin().await.unwrap();
        let t = tx.insert_task(new_task("Deploy")).await.unwrap();
        tx.commit().await.unwrap();
        let line = |seq: i64, message: &str, detail: Option<&str>| LogLine {
            seq,
            activity_id: format!("{}_1", t.id),
            category: LogCategory::Info,
            occurred_at: Timestamp::now(),
            message: message.into(),
            detail: detail.map(str::to_owned),
        };
        let lines = [
            line(1, "before", None),
            line(2, "a\0b", Some("x\0y")),
            line(3, "after", None),
        ];
        store.append_log_lines(&t.id, &lines).await.unwrap();
        // A script's progress message may hold one too.
        let activity = running_root(&t.id, 50, "half\0way");
        store.put_activity(&t.id, &activity, 0).await.unwrap();
        let (acts, got) = store.task_log(&t.id).await.unwrap();
        assert_eq!(acts[0].progress_message.as_deref(), Some("half\u{FFFD}way"));
        let messages: Vec<(&str, Option<&str>)> = got
            .iter()
            .map(|l| (l.message.as_str(), l.detail.as_deref()))
            .collect();
        assert_eq!(
            messages,
            [
                ("before", None),
                ("a\u{FFFD}b", Some("x\u{FFFD}y")),
                ("after", None)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn users_and_api_keys() {
    on_both("users", |store| async move {
        let user = User {
            id: "Users-1".into(),
            username: "Admin".into(),
            display_name: "Administrator".into(),
            is_active: true,
            ..Default::default()
        };
        let mut tx = store.begin().await.unwrap();
        tx.insert_user(&user, Some("$argon2id$hash")).await.unwrap();
        let key = ApiKey {
            id: "APIKeys-1".into(),
            user_id: user.id.clone(),
            purpose: "ci".into(),
            ..Default::default()
        };
        tx.insert_api_key(&key, "hash-1").await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.begin().await.unwrap();
        let dup = User {
            id: "Users-2".into(),
            ..user.clone()
        };
        assert!(matches!(
            tx.insert_user(&dup, None).await,
            Err(StoreError::Conflict(_))
        ));
        drop(tx);

        assert_eq!(store.user_count().await.unwrap(), 1);
        let (u, hash) = store.user_with_password("admin").await.unwrap().unwrap();
        assert_eq!(
            (u.id.as_str(), hash.as_deref()),
            ("Users-1", Some("$argon2id$hash"))
        );
        assert_eq!(
            store
                .user_by_api_key_hash("hash-1")
                .await
                .unwrap()
                .map(|u| u.id),
            Some(user.id.clone())
        );
        assert!(store.user_by_api_key_hash("nope").await.unwrap().is_none());
        assert_eq!(store.api_keys(&user.id).await.unwrap().len(), 1);
        let mut tx = store.begin().await.unwrap();
        tx.revoke_api_key(&user.id, "APIKeys-1").await.unwrap();
        tx.commit().await.unwrap();
        assert!(store
            .user_by_api_key_hash("hash-1")
            .await
            .unwrap()
            .is_none());
        assert!(store.api_keys(&user.id).await.unwrap().is_empty());
        let mut tx = store.begin().await.unwrap();
        assert!(matches!(
            tx.revoke_api_key(&user.id, "APIKeys-1").await,
            Err(StoreError::NotFound(_))
        ));
        drop(tx);
        assert_eq!(store.setting_or_insert("k", "v1").await.unwrap(), "v1");
        assert_eq!(store.setting_or_insert("k", "v2").await.unwrap(), "v1");
    })
    .await;
}

#[tokio::test]
async fn task_log_pages_after_a_position() {
    on_both("log_pages", |store| async move {
        let mut tx = store.begin().await.unwrap();
        let t = tx.insert_task(new_task("Deploy")).await.unwrap();
        let other = tx.insert_task(new_task("Deploy")).await.unwrap();
        tx.commit().await.unwrap();
        let activity = |n: i64, parent: Option<String>| Activity {
            id: format!("{}_{n}", t.id),
            parent_id: parent,
            name: format!("Activity {n}"),
            status: ActivityStatus::Pending,
            started: None,
            ended: None,
            show_at_summary_level: n == 1,
            progress_percentage: None,
            progress_message: None,
        };
        let root = activity(1, None);
        let child = activity(2, Some(root.id.clone()));
        // Stored out of order: read back by position.
        store.put_activity(&t.id, &child, 2).await.unwrap();
        store.put_activity(&t.id, &root, 1).await.unwrap();
        assert_eq!(
            store.task_activities(&t.id).await.unwrap(),
            vec![root.clone(), child.clone()]
        );
        assert!(store.task_activities(&other.id).await.unwrap().is_empty());

        let line = |seq: i64| LogLine {
            seq,
            activity_id: child.id.clone(),
            category: LogCategory::Info,
            occurred_at: Timestamp::from_millis(1_700_000_000_000 + seq),
            message: format!("line {seq}"),
            detail: (seq == 3).then(|| "detail".into()),
        };
        let lines: Vec<LogLine> = (1..=5).map(line).collect();
        store.append_log_lines(&t.id, &lines).await.unwrap();
        store.append_log_lines(&other.id, &[line(1)]).await.unwrap();
        assert_eq!(
            store.log_lines_after(&t.id, 0, 2).await.unwrap(),
            lines[..2]
        );
        assert_eq!(
            store.log_lines_after(&t.id, 2, 2).await.unwrap(),
            lines[2..4]
        );
        assert_eq!(
            store.log_lines_after(&t.id, 4, 10).await.unwrap(),
            lines[4..]
        );
        assert!(store
            .log_lines_after(&t.id, 5, 10)
            .await
            .unwrap()
            .is_empty());
        assert!(store.log_lines_after(&t.id, 0, 0).await.unwrap().is_empty());
    })
    .await;
}

/// Two server nodes (two stores on one database) claiming at the same time
/// never both start deployments of one project to one environment.
#[tokio::test]
async fn nodes_claiming_at_once_serialise_a_project_and_environment() {
    async fn race(a: Store, b: Store) {
        let lease = Timestamp::now().add_millis(60_000);
        for round in 0..25 {
            let mut tx = a.begin().await.unwrap();
            for _ in 0..2 {
                let task = NewTask {
                    project_id: Some(format!("Projects-{round}")),
                    environment_id: Some("Environments-1".into()),
                    ..new_task("Deploy")
                };
                tx.insert_task(task).await.unwrap();
            }
            tx.commit().await.unwrap();
            let (x, y) = tokio::join!(
                a.claim_next_task("node-a", lease),
                b.claim_next_task("node-b", lease)
            );
            let claimed = [x.unwrap(), y.unwrap()].into_iter().flatten().count();
            assert_eq!(claimed, 1, "round {round}: both nodes started one");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url(&dir.path().join("cuttle.db"));
    let (a, b) = (
        Store::open(&url).await.unwrap(),
        Store::open(&url).await.unwrap(),
    );
    race(a.clone(), b.clone()).await;
    a.close().await;
    b.close().await;
    if let Some(pg) = ScratchPostgres::create("claim-race").await {
        let (a, b) = (
            Store::open(&pg.url).await.unwrap(),
            Store::open(&pg.url).await.unwrap(),
        );
        race(a.clone(), b.clone()).await;
        a.close().await;
        b.close().await;
    }
}

/// A node lock held by one node makes another wait until it is dropped
/// (PostgreSQL; SQLite, with one node, has no such lock).
#[tokio::test]
async fn node_locks_exclude_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&Store::sqlite_url(&dir.path().join("cuttle.db")))
        .await
        .unwrap();
    assert!(sqlite.node_lock("x").await.unwrap().is_none());
    sqlite.close().await;
    let Some(pg) = ScratchPostgres::create("node-lock").await else {
        return;
    };
    let (a, b) = (
        Store::open(&pg.url).await.unwrap(),
        Store::open(&pg.url).await.unwrap(),
    );
    let held = a.node_lock("release/1").await.unwrap();
    assert!(held.is_some());
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        b.node_lock("release/1"),
    )
    .await;
    assert!(
        waiting.is_err(),
        "the second node waits while the first holds it"
    );
    // Another key is free.
    assert!(b.node_lock("release/2").await.unwrap().is_some());
    drop(held);
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), b.node_lock("release/1"))
        .await
        .expect("free once the first node lets go")
        .unwrap();
    assert!(got.is_some());
}

/// A transaction holding the writer (a long write, or a slow request inside
/// one) must not stall reads: on SQLite they have connections of their own.
/// Before, the read below waited for the only connection, forever.
#[tokio::test]
async fn reads_go_on_while_a_transaction_holds_the_writer() {
    on_both("reads_beside_writer", |store| async move {
        let mut tx = store.begin().await.unwrap();
        let id = tx.next_id(Collection::Environments).await.unwrap();
        tx.insert(&env(&id, "Staging", 1)).await.unwrap();
        tx.commit().await.unwrap();

        let mut held = store.begin().await.unwrap();
        held.insert(&env("Environments-99", "Uncommitted", 2))
            .await
            .unwrap();
        // Bounded only so that a regression fails instead of hanging.
        let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            let page = store
                .list::<Environment>(&DocumentQuery::in_space("Spaces-1"))
                .await
                .unwrap();
            let task = store.task("ServerTasks-404").await.unwrap();
            (page, task)
        })
        .await
        .expect("a read waited for the transaction holding the writer");
        // The read sees what is committed, not the open transaction's row.
        let names: Vec<String> = read.0.items.into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["Staging".to_owned()]);
        assert!(read.1.is_none());
        held.rollback().await.unwrap();
    })
    .await;
}

fn log_line(seq: i64) -> LogLine {
    LogLine {
        seq,
        activity_id: "A0".into(),
        category: LogCategory::Info,
        occurred_at: Timestamp::now(),
        message: format!("line {seq}"),
        detail: None,
    }
}

fn running_activity(id: &str) -> Activity {
    Activity {
        id: id.into(),
        parent_id: None,
        name: format!("Step {id}"),
        status: ActivityStatus::Running,
        started: Some(Timestamp::now()),
        ended: None,
        show_at_summary_level: true,
        progress_percentage: None,
        progress_message: None,
    }
}

/// Running tasks' writes that arrive together share one commit (one flush
/// to disk) instead of one each; a write that fails among them is undone
/// alone, and its caller alone is told.
#[tokio::test]
async fn running_tasks_writes_share_commits_and_fail_alone() {
    on_both("group_commit", |store| async move {
        let mut tx = store.begin().await.unwrap();
        let t = tx
            .insert_task(NewTask {
                space_id: Some("Spaces-1".into()),
                name: "Deploy".into(),
                description: "grouped".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        store.append_log_lines(&t.id, &[log_line(1)]).await.unwrap();
        let before = store.progress_commits();

        // On SQLite, hold the one writer so that every write below queues
        // up behind it; PostgreSQL has more connections, and the writes
        // queue behind the committer's first commit instead.
        let held = store.begin().await.unwrap();
        let mut writes = vec![];
        for i in 0..64 {
            let (store, task) = (store.clone(), t.id.clone());
            writes.push(tokio::spawn(async move {
                store
                    .put_activity(&task, &running_activity(&format!("A{i}")), i)
                    .await
            }));
        }
        // The same line number again: refused by the primary key.
        let (dup_store, dup_task) = (store.clone(), t.id.clone());
        let duplicate =
            tokio::spawn(
                async move { dup_store.append_log_lines(&dup_task, &[log_line(1)]).await },
            );
        if store.backend() == cuttle_store::Backend::Sqlite {
            // Time for the writes to queue; they cannot commit before the
            // writer is released, however long this takes.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert_eq!(store.progress_commits(), before);
        }
        held.rollback().await.unwrap();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        assert!(duplicate.await.unwrap().is_err());

        let commits = store.progress_commits() - before;
        assert!(
            (1..=8).contains(&commits),
            "65 writes took {commits} commits"
        );
        let (acts, lines) = store.task_log(&t.id).await.unwrap();
        assert_eq!(acts.len(), 64);
        assert_eq!(lines.len(), 1);
    })
    .await;
}

/// A page's total is right whether it is counted or known from a short
/// page: whole lists, a short last page, a full page, and a page past the
/// end all say how many there are.
#[tokio::test]
async fn page_totals_with_and_without_counting() {
    on_both("page_totals", |store| async move {
        let mut tx = store.begin().await.unwrap();
        for i in 0..5 {
            let id = tx.next_id(Collection::Environments).await.unwrap();
            tx.insert(&env(&id, &format!("Env {i}"), i)).await.unwrap();
        }
        tx.commit().await.unwrap();
        let page = |skip: i64, take: Option<i64>| {
            let store = store.clone();
            async move {
                let p = store
                    .list::<Environment>(&DocumentQuery {
                        skip,
                        take,
                        ..DocumentQuery::in_space("Spaces-1")
                    })
                    .await
                    .unwrap();
                (p.items.len(), p.total)
            }
        };
        assert_eq!(page(0, None).await, (5, 5));
        assert_eq!(page(3, Some(10)).await, (2, 5));
        assert_eq!(page(0, Some(2)).await, (2, 5));
        assert_eq!(page(0, Some(5)).await, (5, 5));
        assert_eq!(page(9, Some(10)).await, (0, 5));
        assert_eq!(page(0, Some(0)).await, (0, 5));
    })
    .await;
}

/// A store told to record no audit events writes none, neither through its
/// transactions nor with a deployment's change of state, while another
/// store on the same database (another installation of the same process)
/// goes on recording.
#[tokio::test]
async fn recording_events_is_a_setting_of_each_store() {
    use cuttle_store::{AuditEvent, EventQuery};
    on_both("audit_switch", |store| async move {
        let mut quiet = store.clone();
        quiet.set_recording_events(false);
        let deploy = |n: &str| NewTask {
            deployment_id: Some(format!("Deployments-{n}")),
            ..new_task("Deploy")
        };
        for (s, who) in [(&quiet, "quiet"), (&store, "recording")] {
            let mut tx = s.begin().await.unwrap();
            tx.record_event(AuditEvent {
                category: "Modified".into(),
                message: format!("{who} changed something"),
                ..Default::default()
            })
            .await
            .unwrap();
            let task = tx.insert_task(deploy(who)).await.unwrap();
            tx.commit().await.unwrap();
            assert!(s
                .complete_task(&task.id, TaskState::Success, None)
                .await
                .unwrap());
        }
        let (events, total) = store.list_events(&EventQuery::default()).await.unwrap();
        let seen: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.event.category.as_str(), e.event.message.as_str()))
            .collect();
        assert_eq!(total, 2, "{seen:?}");
        assert_eq!(
            seen,
            [
                ("DeploymentSucceeded", "Deploy task: succeeded"),
                ("Modified", "recording changed something"),
            ]
        );
    })
    .await;
}
