//! The raw log read a page at a time is the text the whole tree renders,
//! byte for byte: nested activities, lines and children interleaved by
//! time (lines first at equal times, unstarted children last), activities
//! longer than a page, Verbose lines, lines of an unknown activity left out.

use cuttle_model::task::{
    build_activity_tree, render_raw_log, Activity, ActivityStatus, LogCategory, LogLine,
};
use cuttle_model::Timestamp;
use cuttle_service::raw_log::{RawLog, PAGE_LINES};
use cuttle_store::testing::ScratchPostgres;
use cuttle_store::{NewTask, Store};

fn activity(task: &str, n: i64, parent: Option<i64>, started: Option<Timestamp>) -> Activity {
    Activity {
        id: format!("{task}_{n}"),
        parent_id: parent.map(|p| format!("{task}_{p}")),
        name: format!("Activity {n}"),
        status: if started.is_some() {
            ActivityStatus::Success
        } else {
            ActivityStatus::Pending
        },
        started,
        ended: None,
        show_at_summary_level: true,
        progress_percentage: None,
        progress_message: None,
    }
}

async fn same_text(store: Store) {
    let mut tx = store.begin().await.unwrap();
    let task = tx
        .insert_task(NewTask {
            name: "Deploy".into(),
            description: "Deploy".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let id = task.id;
    let t0 = Timestamp::now();
    let at = |ms: i64| t0.add_millis(ms);
    // 1 ─┬ 2 (starts at 100) ─ 4 (starts at 150)
    //    ├ 3 (starts at 100, created after 2)
    //    └ 5 (never started)
    let activities = [
        activity(&id, 1, None, Some(at(0))),
        activity(&id, 2, Some(1), Some(at(100))),
        activity(&id, 3, Some(1), Some(at(100))),
        activity(&id, 4, Some(2), Some(at(150))),
        activity(&id, 5, Some(1), None),
    ];
    for (i, a) in activities.iter().enumerate() {
        store.put_activity(&id, a, i as i64 + 1).await.unwrap();
    }
    let mut lines = vec![];
    let mut line = |activity: i64, ms: i64, category: LogCategory| {
        let seq = lines.len() as i64 + 1;
        lines.push(LogLine {
            seq,
            activity_id: format!("{id}_{activity}"),
            category,
            occurred_at: at(ms),
            message: format!("line {seq} of {activity}"),
            detail: None,
        });
    };
    line(1, 10, LogCategory::Info);
    // At the very time 2 and 3 start: before them.
    line(1, 100, LogCategory::Warning);
    // Longer than a page, spanning 4's start.
    for i in 0..(PAGE_LINES * 2 + 17) {
        line(2, 100 + i / 20, LogCategory::Verbose);
    }
    line(3, 120, LogCategory::Info);
    line(4, 160, LogCategory::Error);
    line(1, 400, LogCategory::Info);
    // Of an activity nobody knows: not shown.
    line(9, 50, LogCategory::Info);
    store.append_log_lines(&id, &lines).await.unwrap();

    let (acts, all) = store.task_log(&id).await.unwrap();
    let expected = render_raw_log(&build_activity_tree(&acts, &all, true));
    let mut raw = RawLog::open(store.clone(), &id).await.unwrap();
    let mut text = String::new();
    let mut pieces = 0;
    while let Some(piece) = raw.next_piece().await.unwrap() {
        pieces += 1;
        text.push_str(&piece);
    }
    assert!(pieces > 1, "the log came in one piece");
    assert_eq!(text, expected);
    assert!(!text.contains("of 9"));
}

#[tokio::test]
async fn the_raw_log_read_in_pages_is_the_whole_trees_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(&dir.path().join("c.db")))
        .await
        .unwrap();
    same_text(store).await;
    if let Some(pg) = ScratchPostgres::create("raw_log_pages").await {
        same_text(Store::open(&pg.url).await.unwrap()).await;
    }
}
