//! A task's log stored in batches and read a piece at a time, on SQLite and
//! (when CUTTLE_TEST_DATABASE_URL is set) PostgreSQL: what comes back, and
//! that each piece is read through the activity index, never by scanning
//! the task's whole log.

use cuttle_model::task::{LogCategory, LogLine};
use cuttle_model::Timestamp;
use cuttle_store::task_log::{log_insert_statements, LOG_ROWS_PER_STATEMENT};
use cuttle_store::testing::ScratchPostgres;
use cuttle_store::{NewTask, Store};
use sqlx::{Connection, Row};
use std::future::Future;

/// Runs `scenario` against a fresh SQLite store and a fresh PostgreSQL
/// store, giving it the database's URL too.
async fn on_both<F, Fut>(name: &str, scenario: F)
where
    F: Fn(Store, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url(&dir.path().join("cuttle.db"));
    let sqlite = Store::open(&url).await.unwrap();
    scenario(sqlite.clone(), url).await;
    sqlite.close().await;
    if let Some(pg) = ScratchPostgres::create(name).await {
        let store = Store::open(&pg.url).await.unwrap();
        scenario(store.clone(), pg.url.clone()).await;
        store.close().await;
    }
}

async fn new_task(store: &Store) -> String {
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

/// `count` lines from position `first`, alternating between two activities,
/// every third line of activity 2 Verbose.
fn lines(task: &str, first: i64, count: i64) -> Vec<LogLine> {
    (first..first + count)
        .map(|seq| {
            let activity = if seq % 2 == 0 { 2 } else { 1 };
            LogLine {
                seq,
                activity_id: format!("{task}_{activity}"),
                category: if activity == 2 && seq % 3 == 0 {
                    LogCategory::Verbose
                } else {
                    LogCategory::Info
                },
                occurred_at: Timestamp::now(),
                message: format!("line {seq}"),
                detail: (seq % 7 == 0).then(|| format!("detail {seq}")),
            }
        })
        .collect()
}

#[test]
fn a_batch_of_a_few_thousand_lines_takes_a_few_statements() {
    assert_eq!(log_insert_statements(4_096), 9);
    assert!(log_insert_statements(100_000) <= 100_000 / LOG_ROWS_PER_STATEMENT + 1);
}

#[tokio::test]
async fn lines_stored_in_batches_read_back_by_activity() {
    on_both("task_log_batches", |store, _| async move {
        let task = new_task(&store).await;
        // Across statement boundaries: a full statement, a part, and a
        // second batch.
        let first = lines(&task, 1, LOG_ROWS_PER_STATEMENT as i64 + 37);
        store.append_log_lines(&task, &first).await.unwrap();
        let second = lines(&task, first.len() as i64 + 1, 963);
        store.append_log_lines(&task, &second).await.unwrap();
        let all: Vec<LogLine> = first.iter().chain(&second).cloned().collect();
        let total = all.len() as i64;
        assert_eq!(store.last_log_seq(&task).await.unwrap(), total);
        assert_eq!(
            store.log_lines_after(&task, 0, i64::MAX).await.unwrap(),
            all
        );

        let of = |activity: i64, verbose: bool| -> Vec<LogLine> {
            all.iter()
                .filter(|l| l.activity_id == format!("{task}_{activity}"))
                .filter(|l| verbose || l.category != LogCategory::Verbose)
                .cloned()
                .collect()
        };
        let mut counts = store.activity_line_counts(&task, true, None).await.unwrap();
        counts.sort();
        assert_eq!(
            counts,
            [
                (format!("{task}_1"), of(1, true).len() as i64),
                (format!("{task}_2"), of(2, true).len() as i64)
            ]
        );
        let mut counts = store
            .activity_line_counts(&task, false, Some(100))
            .await
            .unwrap();
        counts.sort();
        let upto = |v: Vec<LogLine>| v.into_iter().filter(|l| l.seq <= 100).count() as i64;
        assert_eq!(
            counts,
            [
                (format!("{task}_1"), upto(of(1, false))),
                (format!("{task}_2"), upto(of(2, false)))
            ]
        );

        // The tail: the last lines, in order, Verbose ones left out if asked.
        let a2 = format!("{task}_2");
        let tail = store
            .activity_log_tail(&task, &a2, true, 10, None)
            .await
            .unwrap();
        assert_eq!(tail, of(2, true)[of(2, true).len() - 10..]);
        let tail = store
            .activity_log_tail(&task, &a2, false, 10, Some(500))
            .await
            .unwrap();
        let quiet: Vec<LogLine> = of(2, false).into_iter().filter(|l| l.seq <= 500).collect();
        assert_eq!(tail, quiet[quiet.len() - 10..]);
        assert!(store
            .activity_log_tail(&task, &a2, true, 0, None)
            .await
            .unwrap()
            .is_empty());

        // Pages: never more than asked for, and together the whole activity.
        let mut paged = vec![];
        let mut after = 0;
        loop {
            let page = store
                .activity_log_page(&task, &a2, after, 300)
                .await
                .unwrap();
            assert!(page.len() <= 300);
            let Some(last) = page.last() else { break };
            after = last.seq;
            paged.extend(page);
        }
        assert_eq!(paged, of(2, true));
    })
    .await;
}

/// The plan of each log read: through an index on the activity, never a
/// scan of the table or a sort of an activity's lines.
#[tokio::test]
async fn log_reads_use_the_activity_index() {
    on_both("task_log_plans", |store, url| async move {
        let task = new_task(&store).await;
        store
            .append_log_lines(&task, &lines(&task, 1, 2_000))
            .await
            .unwrap();
        let a = format!("{task}_1");
        let reads = [
            format!(
                "SELECT seq FROM task_log_lines WHERE task_id = '{task}' AND activity_id = '{a}' \
                 AND seq <= 1000 ORDER BY seq DESC LIMIT 10"
            ),
            format!(
                "SELECT seq FROM task_log_lines WHERE task_id = '{task}' AND activity_id = '{a}' \
                 AND seq > 10 ORDER BY seq LIMIT 1000"
            ),
        ];
        for sql in reads {
            let plan = explain(&url, &sql).await;
            assert!(
                plan.contains("task_log_lines_activity"),
                "not through the activity index: {sql}\n{plan}"
            );
            assert!(
                !plan.contains("TEMP B-TREE")
                    && !plan.contains("Sort")
                    && !plan.contains("SCAN task_log_lines\n")
                    && !plan.contains("Seq Scan"),
                "a scan or a sort: {sql}\n{plan}"
            );
        }
    })
    .await;
}

/// The database's plan for `sql`, as text. PostgreSQL is told to avoid
/// sequential scans, as it would on a large table (this one is small).
async fn explain(url: &str, sql: &str) -> String {
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&mut c)
            .await
            .unwrap();
        rows.iter()
            .map(|r| format!("{}\n", r.get::<String, _>("detail")))
            .collect()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("ANALYZE task_log_lines")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut c)
            .await
            .unwrap();
        let rows = sqlx::query(&format!("EXPLAIN {sql}"))
            .fetch_all(&mut c)
            .await
            .unwrap();
        rows.iter()
            .map(|r| format!("{}\n", r.get::<String, _>(0)))
            .collect()
    }
}
