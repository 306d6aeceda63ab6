//! Measures how fast the store keeps a task's log lines, the way the engine's
//! writer hands them over (batches of a few thousand lines):
//! `cargo run --release -p cuttle-store --example log_append -- URL [LINES] [BATCH]`.

use cuttle_model::task::{LogCategory, LogLine};
use cuttle_model::Timestamp;
use cuttle_store::{NewTask, Store};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: log_append URL [LINES] [BATCH]")?;
    let total: i64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let batch: i64 = args.next().map_or(Ok(4_096), |a| a.parse())?;
    let store = Store::open(&url).await?;
    let mut tx = store.begin().await?;
    let task = tx
        .insert_task(NewTask {
            name: "Deploy".into(),
            description: "log append benchmark".into(),
            ..Default::default()
        })
        .await?;
    tx.commit().await?;
    let activity = format!("{}_1", task.id);
    let started = Instant::now();
    let mut seq = 0;
    while seq < total {
        let n = batch.min(total - seq);
        let lines: Vec<LogLine> = (seq + 1..=seq + n)
            .map(|i| LogLine {
                seq: i,
                activity_id: activity.clone(),
                category: LogCategory::Info,
                occurred_at: Timestamp::now(),
                message: format!("line {i} of a script that prints without pause"),
                detail: None,
            })
            .collect();
        store.append_log_lines(&task.id, &lines).await?;
        seq += n;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} lines in batches of {batch}: {secs:.2} s, {:.0} lines/s",
        total as f64 / secs
    );
    Ok(())
}
