//! An idle server does next to nothing by itself: where no other node
//! shares its database (SQLite; on PostgreSQL, an instance whose host says
//! so, as a host's instances are), nobody asking anything for a few
//! seconds means no use of its database at all, and it still wakes for
//! work: a deployment queued for a moment later starts when it falls due.

use crate::common;

use common::on_both_configured;
use cuttle_store::Store;
use serde_json::json;
use std::time::Duration;

/// Waits until the start-up's own work is over: the count of database
/// uses holds still between two looks (bounded).
async fn settled(store: &Store) {
    let mut last = store.database_uses();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = store.database_uses();
        if now == last {
            return;
        }
        last = now;
    }
}

#[tokio::test]
async fn an_idle_sole_node_leaves_its_database_alone_and_still_wakes_for_work() {
    on_both_configured(
        "idle_sole_node",
        |c| c.sole_node = true,
        |s| async move {
            s.project_with_script("Later", "echo later", json!({}))
                .await;
            s.create(
                "/api/Spaces-1/releases/create/v1",
                json!({"ProjectName": "Later", "ReleaseVersion": "1.0.0"}),
            )
            .await;
            let store = s.inst.store.clone();
            settled(&store).await;

            // Before, each instance's loops polled: the runner's heartbeat,
            // the node's heartbeat and leader lease, the subscription
            // dispatcher and the health schedule, a dozen uses and more
            // in these seconds.
            let before = store.database_uses();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let used = store.database_uses() - before;
            assert_eq!(
                used, 0,
                "{}: an idle server used its database {used} times in 3 s",
                s.backend
            );

            // Due in a moment: the runner sleeps until then, not until its
            // next look for work (a minute away).
            let run_at = chrono::Utc::now() + chrono::Duration::seconds(1);
            let d = s
                .create(
                    "/api/Spaces-1/deployments/create/untenanted/v1",
                    json!({"ProjectName": "Later", "ReleaseVersion": "1.0.0",
                           "EnvironmentNames": ["Dev"],
                           "RunAt": run_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
                )
                .await;
            let task = d["DeploymentServerTasks"][0]["ServerTaskId"]
                .as_str()
                .unwrap()
                .to_owned();
            let t = s.wait_for_task(&task).await;
            assert_eq!(t["State"], "Success", "{}: {t}", s.backend);
        },
    )
    .await;
}
