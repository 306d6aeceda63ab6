//! Polling agents with several nodes: who holds each agent's connection,
//! relayed requests handed out once at most and given up when their
//! holder stops, and how far the log has got along an agent's script,
//! recorded with its lines under the task's lease. The relay's claims are
//! PostgreSQL's (`SKIP LOCKED`; SQLite is a single node, which relays
//! nothing); the rest runs on both.

use crate::common;

use common::on_both;
use cuttle_model::task::{LogCategory, LogLine};
use cuttle_model::Timestamp;
use cuttle_store::agent_relay::{RelayRequest, RelayState};
use cuttle_store::testing::ScratchPostgres;
use cuttle_store::{NewTask, Store, StoreError};
use std::collections::HashSet;
use std::time::Duration;

/// A minute: a node seen within it is alive.
const LAPSE_MS: i64 = 60_000;

fn request(thumbprint: &str, n: usize) -> RelayRequest {
    RelayRequest {
        id: format!("req-{n}-{}", uuid_like(n)),
        thumbprint: thumbprint.into(),
        method: "PUT".into(),
        path: format!("/v1/files/abc?offset={n}"),
        content_type: Some("application/octet-stream".into()),
        // Every byte value, to see the body come back whole.
        body: (0..=255u8).chain([n as u8]).collect(),
        wait_ms: 0,
        max_bytes: 1024,
    }
}

fn uuid_like(n: usize) -> String {
    format!("{:08x}", n * 7919)
}

#[tokio::test]
async fn the_newest_connection_holds_an_agent_and_a_stopped_node_holds_none() {
    on_both("relay_holders", |store| async move {
        let backend = store.backend().name();
        for node in ["a", "b"] {
            store.register_node(node, 8, "test").await.unwrap();
        }
        store.hold_polling_agent("T1", "a").await.unwrap();
        assert_eq!(
            store
                .polling_agent_holder("T1", LAPSE_MS, "b")
                .await
                .unwrap(),
            Some("a".into()),
            "{backend}"
        );
        // Not to itself: a node asks about agents held elsewhere.
        assert_eq!(
            store
                .polling_agent_holder("T1", LAPSE_MS, "a")
                .await
                .unwrap(),
            None,
            "{backend}"
        );
        // The agent reconnected to b; a, late to notice, records what it
        // still thinks it holds, and takes nothing back.
        store.hold_polling_agent("T1", "b").await.unwrap();
        store
            .held_polling_agents("a", &["T1".into(), "T2".into()])
            .await
            .unwrap();
        assert_eq!(
            store
                .polling_agent_holder("T1", LAPSE_MS, "x")
                .await
                .unwrap(),
            Some("b".into()),
            "{backend}"
        );
        assert_eq!(
            store
                .polling_agent_holder("T2", LAPSE_MS, "x")
                .await
                .unwrap(),
            Some("a".into()),
            "{backend}"
        );
        // a lost T2: forgotten.
        store.held_polling_agents("a", &[]).await.unwrap();
        assert_eq!(
            store
                .polling_agent_holder("T2", LAPSE_MS, "x")
                .await
                .unwrap(),
            None,
            "{backend}"
        );
        // b stopped: it holds nothing, at once for readers, and its rows go.
        store.node_stopped("b").await.unwrap();
        assert_eq!(
            store
                .polling_agent_holder("T1", LAPSE_MS, "x")
                .await
                .unwrap(),
            None,
            "{backend}"
        );
        assert_eq!(
            store.forget_lapsed_holders(LAPSE_MS).await.unwrap(),
            1,
            "{backend}"
        );
        // A node not seen within the lapse holds nothing either.
        store.hold_polling_agent("T3", "a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            store.polling_agent_holder("T3", 10, "x").await.unwrap(),
            None,
            "{backend}"
        );
    })
    .await;
}

#[tokio::test]
async fn fault_racing_holders_hand_each_relayed_request_out_once() {
    let Some(pg) = ScratchPostgres::create("relay_claims").await else {
        return;
    };
    let store = Store::open(&pg.url).await.unwrap();
    store.register_node("holder", 8, "test").await.unwrap();
    let sent: Vec<RelayRequest> = (0..60).map(|n| request("T", n)).collect();
    for r in &sent {
        store
            .queue_relay_request("holder", "asker", r)
            .await
            .unwrap();
    }
    // Another holder's requests are not handed to this one.
    store
        .queue_relay_request("other", "asker", &request("U", 99))
        .await
        .unwrap();
    let claimers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = vec![];
            loop {
                let batch = store.claim_relay_requests("holder", 7).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch);
            }
        })
    });
    let mut claimed = vec![];
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let ids: HashSet<&str> = claimed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(claimed.len(), sent.len(), "a request was handed out twice");
    assert_eq!(ids.len(), sent.len());
    // Each came out as it went in.
    for r in &sent {
        assert!(claimed.contains(r), "{} changed on its way", r.id);
    }
    assert!(store
        .claim_relay_requests("holder", 100)
        .await
        .unwrap()
        .is_empty());

    // Answered once: a second answer changes nothing.
    let id = &sent[0].id;
    store
        .answer_relay_request(id, 200, b"{\"ok\":true}")
        .await
        .unwrap();
    store.answer_relay_request(id, 500, b"late").await.unwrap();
    assert_eq!(
        store.relay_request_state(id, LAPSE_MS).await.unwrap(),
        RelayState::Answered {
            status: 200,
            body: b"{\"ok\":true}".to_vec()
        }
    );
    store
        .fail_relay_request(&sent[1].id, "the agent is gone")
        .await
        .unwrap();
    assert_eq!(
        store
            .relay_request_state(&sent[1].id, LAPSE_MS)
            .await
            .unwrap(),
        RelayState::Failed {
            error: "the agent is gone".into()
        }
    );
    store.delete_relay_request(id).await.unwrap();
    assert_eq!(
        store.relay_request_state(id, LAPSE_MS).await.unwrap(),
        RelayState::Gone
    );
    store.close().await;
}

#[tokio::test]
async fn fault_a_request_whose_holder_stopped_is_given_up_and_never_sent() {
    let Some(pg) = ScratchPostgres::create("relay_give_up").await else {
        return;
    };
    let store = Store::open(&pg.url).await.unwrap();
    store.register_node("holder", 8, "test").await.unwrap();
    let queued = request("T", 1);
    let sent = request("T", 2);
    store
        .queue_relay_request("holder", "asker", &sent)
        .await
        .unwrap();
    assert_eq!(
        store.claim_relay_requests("holder", 1).await.unwrap(),
        vec![sent.clone()]
    );
    store
        .queue_relay_request("holder", "asker", &queued)
        .await
        .unwrap();
    assert_eq!(
        store
            .relay_request_state(&queued.id, LAPSE_MS)
            .await
            .unwrap(),
        RelayState::Queued { holder_alive: true }
    );

    // The holder dies (here: stops; a lapsed heartbeat reads the same).
    store.node_stopped("holder").await.unwrap();
    assert_eq!(
        store
            .relay_request_state(&queued.id, LAPSE_MS)
            .await
            .unwrap(),
        RelayState::Queued {
            holder_alive: false
        }
    );
    assert_eq!(
        store.relay_request_state(&sent.id, LAPSE_MS).await.unwrap(),
        RelayState::Sent {
            holder_alive: false
        }
    );
    // Given up in the state the requester saw, and only in it.
    assert!(!store
        .abandon_relay_request(&queued.id, "sent")
        .await
        .unwrap());
    assert!(store
        .abandon_relay_request(&queued.id, "queued")
        .await
        .unwrap());
    assert!(store.abandon_relay_request(&sent.id, "sent").await.unwrap());
    // The holder comes back: it claims nothing, and its late answer is
    // not taken.
    store.register_node("holder", 8, "test").await.unwrap();
    assert!(store
        .claim_relay_requests("holder", 10)
        .await
        .unwrap()
        .is_empty());
    store
        .answer_relay_request(&sent.id, 200, b"late")
        .await
        .unwrap();
    assert_eq!(
        store.relay_request_state(&sent.id, LAPSE_MS).await.unwrap(),
        RelayState::Gone
    );
    // Requests older than the age given are swept.
    assert_eq!(store.sweep_relay_requests(LAPSE_MS).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.sweep_relay_requests(1).await.unwrap(), 2);
    store.close().await;
}

fn line(activity: &str, seq: i64, message: &str) -> LogLine {
    LogLine {
        seq,
        activity_id: activity.into(),
        category: LogCategory::Info,
        occurred_at: Timestamp::now(),
        message: message.into(),
        detail: None,
    }
}

#[tokio::test]
async fn how_far_the_log_got_along_an_agent_script_is_stored_with_its_lines() {
    on_both("relay_cursor", |store| async move {
        let backend = store.backend().name();
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
        let (_, a) = store
            .claim_next_task_held("node-a", 1)
            .await
            .unwrap()
            .expect("a queued task");
        let run = format!("{}_3", task.id);
        store.record_agent_command(&a, "cmd-1", &run).await.unwrap();
        // Recorded again (a retried write): left as it is.
        store
            .record_agent_command(&a, "cmd-1", "other")
            .await
            .unwrap();
        assert_eq!(
            store.agent_commands(&task.id).await.unwrap(),
            vec![("cmd-1".into(), run.clone(), 0)],
            "{backend}"
        );
        store
            .append_log_lines_marking(
                &a,
                &[line(&run, 1, "one"), line(&run, 2, "two")],
                &[("cmd-1".into(), 2)],
            )
            .await
            .unwrap();
        // A mark never goes back.
        store
            .append_log_lines_marking(&a, &[], &[("cmd-1".into(), 1)])
            .await
            .unwrap();
        assert_eq!(
            store.agent_commands(&task.id).await.unwrap()[0].2,
            2,
            "{backend}"
        );

        // Another node takes the task over; node-a's lines and mark are
        // refused together.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = store
            .take_over_lapsed_task("node-b", 60_000, &[])
            .await
            .unwrap()
            .expect("taken over")
            .lease;
        let late = store
            .append_log_lines_marking(&a, &[line(&run, 3, "three")], &[("cmd-1".into(), 3)])
            .await;
        assert!(
            matches!(late, Err(StoreError::LeaseLost { .. })),
            "{backend}: {late:?}"
        );
        assert!(matches!(
            store.record_agent_command(&a, "cmd-2", &run).await,
            Err(StoreError::LeaseLost { .. })
        ));
        assert_eq!(
            store.agent_commands(&task.id).await.unwrap(),
            vec![("cmd-1".into(), run.clone(), 2)],
            "{backend}"
        );
        assert_eq!(store.last_log_seq(&task.id).await.unwrap(), 2, "{backend}");
        store
            .append_log_lines_marking(&b, &[line(&run, 3, "three")], &[("cmd-1".into(), 3)])
            .await
            .unwrap();
        assert_eq!(
            store.agent_commands(&task.id).await.unwrap()[0].2,
            3,
            "{backend}"
        );
    })
    .await;
}
