//! A task page of an activity longer than the page shows: its last lines,
//! after a note that says how many earlier ones the raw log has, linked.

use crate::common;

use common::{on_both, script_step};
use reqwest::StatusCode;

/// Lines the page shows of one activity at most.
const SHOWN: usize = 1_000;
const PRINTED: usize = 1_500;

#[tokio::test]
async fn a_long_activity_shows_its_tail_and_links_the_raw_log() {
    on_both("portal-long-log", |s| async move {
        s.environment("Dev").await;
        s.project(
            "Talkative",
            vec![script_step(
                "Talk",
                &format!("seq 1 {PRINTED} | sed 's/^/numbered line /'"),
            )],
        )
        .await;
        let task = s.deploy("Talkative", "1.0.0", "Dev").await;
        let done = s.wait_done(&task).await;
        assert_eq!(done["State"], "Success", "{}: {done}", s.backend);

        let b = s.sign_in().await;
        let page = b.get(&format!("/tasks/{task}")).await;
        assert_eq!(page.status, StatusCode::OK);
        let shown = |n: usize| page.body.contains(&format!(">numbered line {n}<"));
        assert_eq!(
            page.body.matches(">numbered line ").count(),
            SHOWN,
            "{}",
            s.backend
        );
        assert!(!shown(PRINTED - SHOWN) && shown(PRINTED - SHOWN + 1) && shown(PRINTED));
        // The script's lines and the step's own before them.
        let left_out: usize = page
            .body
            .split(" earlier lines not shown")
            .next()
            .and_then(|before| before.rsplit('>').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: no note of lines left out: {}", s.backend, page.body));
        assert!(
            (PRINTED - SHOWN..PRINTED - SHOWN + 5).contains(&left_out),
            "{left_out}"
        );
        assert!(page
            .body
            .contains(&format!("href=\"/api/tasks/{task}/raw\"")));
    })
    .await;
}
