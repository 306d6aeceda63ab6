//! The audit log's pages keep their shape at ten thousand events: each
//! filter `/api/events` offers starts from an index of its own (a project or
//! environment through `event_documents`, never a search of the related ids'
//! text), and nothing reads the events or their documents whole. Checked on
//! the plans of the store's own statements, on SQLite and on PostgreSQL
//! without statistics (as after a restore), so no timing is involved.

use cuttle_model::Timestamp;
use cuttle_store::statement::Statement;
use cuttle_store::testing::{disable_autovacuum, explain, explain_generic, ScratchPostgres};
use cuttle_store::{AuditEvent, Backend, EventQuery, Store};

const EVENTS: i64 = 10_000;
const PROJECTS: i64 = 40;
const ENVIRONMENTS: i64 = 8;
const USERS: i64 = 20;
const BATCH: i64 = 2_000;

fn event(n: i64) -> AuditEvent {
    let project = format!("Projects-{}", n % PROJECTS + 1);
    let environment = format!("Environments-{}", n % ENVIRONMENTS + 1);
    let category = match n % 10 {
        0..=5 => "Modified",
        6 => "Created",
        7 => "DeploymentQueued",
        8 => "DeploymentSucceeded",
        _ => "LoginFailed",
    };
    AuditEvent {
        space_id: Some(format!("Spaces-{}", n % 2 + 1)),
        user_id: Some(format!("Users-{}", n % USERS + 1)),
        username: Some(format!("user{}", n % USERS + 1)),
        category: category.into(),
        message: format!("event {n}"),
        related_document_ids: vec![
            format!("Deployments-{n}"),
            project,
            environment,
            format!("ServerTasks-{n}"),
        ],
        ip_address: Some("127.0.0.1".into()),
        ..Default::default()
    }
}

async fn load(store: &Store) {
    let mut n = 0;
    while n < EVENTS {
        let mut tx = store.begin().await.unwrap();
        for i in n..(n + BATCH).min(EVENTS) {
            tx.record_event(event(i)).await.unwrap();
        }
        tx.commit().await.unwrap();
        n += BATCH;
    }
}

struct Hot {
    name: &'static str,
    statement: Statement,
    /// An index the plan must start from.
    uses: Option<&'static str>,
}

fn queries() -> Vec<Hot> {
    let page = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery {
            take: Some(30),
            ..Default::default()
        };
        f(&mut q);
        q.page_statement()
    };
    let count = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery::default();
        f(&mut q);
        q.count_statement()
    };
    let hot = |name, statement, uses| Hot {
        name,
        statement,
        uses,
    };
    vec![
        hot("events", page(|_| {}), Some("events_seq")),
        hot(
            "events, page 30",
            page(|q| q.skip = 900),
            Some("events_seq"),
        ),
        hot(
            "events?spaces=",
            page(|q| q.space_ids = vec!["Spaces-2".into()]),
            Some("events_space"),
        ),
        hot(
            "events?eventCategories=",
            page(|q| q.categories = vec!["LoginFailed".into()]),
            Some("events_category"),
        ),
        hot(
            "events?eventCategories=: total",
            count(|q| q.categories = vec!["LoginFailed".into()]),
            Some("events_category"),
        ),
        hot(
            "events?users=",
            page(|q| q.user_ids = vec!["Users-3".into()]),
            Some("events_user"),
        ),
        hot(
            "events?projects=",
            page(|q| q.document_sets = vec![vec!["Projects-7".into()]]),
            None,
        ),
        hot(
            "events?projects=: total",
            count(|q| q.document_sets = vec![vec!["Projects-7".into()]]),
            None,
        ),
        hot(
            "events of a space?projects=: total",
            count(|q| {
                q.space_ids = vec!["Spaces-1".into()];
                q.document_sets = vec![vec!["Projects-7".into()]];
            }),
            None,
        ),
        hot(
            "events?projects=&environments=",
            page(|q| {
                q.document_sets = vec![
                    vec!["Projects-7".into()],
                    vec!["Environments-3".into(), "Environments-4".into()],
                ]
            }),
            None,
        ),
        hot(
            "events?regarding=(one deployment)",
            page(|q| q.document_sets = vec![vec!["Deployments-4321".into()]]),
            None,
        ),
        hot(
            "events?documentTypes=",
            page(|q| q.document_types = vec!["Deployments".into()]),
            None,
        ),
        hot(
            "events?from=&to=",
            page(|q| {
                q.from = Timestamp::parse("2026-01-01T00:00:00Z");
                q.to = Timestamp::parse("2026-01-02T00:00:00Z");
            }),
            None,
        ),
        hot(
            "events?fromAutoId=&toAutoId=",
            page(|q| {
                q.from_auto_id = Some(100);
                q.to_auto_id = Some(200);
            }),
            Some("events_seq"),
        ),
    ]
}

/// Reading a table whole, in either database's words.
fn whole_reads(backend: Backend, plan: &[String]) -> Vec<String> {
    let mut found = vec![];
    for line in plan {
        let node = line.trim_start().trim_start_matches("-> ").trim_start();
        match backend {
            Backend::Postgres => {
                for table in ["events", "event_documents"] {
                    if node.starts_with(&format!("Seq Scan on {table} ")) {
                        found.push(node.to_owned());
                    }
                }
            }
            Backend::Sqlite => {
                if let Some(what) = node.strip_prefix("SCAN ") {
                    let table = what.split_whitespace().next().unwrap_or("");
                    if ["e", "ed", "et", "events", "event_documents"].contains(&table)
                        && !what.contains("USING")
                    {
                        found.push(node.to_owned());
                    }
                }
            }
        }
    }
    found
}

async fn check(store: &Store) {
    let backend = store.backend();
    let mut failures = vec![];
    let mut report = String::new();
    for q in queries() {
        let mut plans = vec![explain(store, &q.statement).await.unwrap()];
        if backend == Backend::Postgres {
            plans.push(explain_generic(store, &q.statement).await.unwrap());
        }
        for plan in plans {
            report.push_str(&format!("\n{}:\n  {}\n", q.name, plan.join("\n  ")));
            for w in whole_reads(backend, &plan) {
                failures.push(format!("{}: reads a table whole: {w}", q.name));
            }
            if let Some(index) = q.uses {
                if !plan.iter().any(|l| l.contains(index)) {
                    failures.push(format!("{}: does not use {index}", q.name));
                }
            }
            // A filter by document is an index lookup, never a text search.
            if plan.iter().any(|l| l.contains("related_document_ids")) {
                failures.push(format!("{}: searches the related ids' text", q.name));
            }
        }
    }
    if std::env::var_os("CUTTLE_SHOW_PLANS").is_some() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{backend:?} plans:{report}");
    }
    assert!(
        failures.is_empty(),
        "{backend:?}:\n{}\n\nall plans:{report}",
        failures.join("\n")
    );
    // The page the plans describe holds what it should.
    let q = EventQuery {
        document_sets: vec![vec!["Projects-7".into()]],
        take: Some(30),
        ..Default::default()
    };
    let (page, total) = store.list_events(&q).await.unwrap();
    assert_eq!(total, EVENTS / PROJECTS);
    assert_eq!(page.len(), 30);
    assert!(page.windows(2).all(|w| w[0].seq > w[1].seq));
    assert!(page.iter().all(|e| e
        .event
        .related_document_ids
        .contains(&"Projects-7".to_owned())));
}

#[tokio::test]
async fn event_pages_use_indexes_at_10k_events_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(&dir.path().join("cuttle.db")))
        .await
        .unwrap();
    load(&store).await;
    check(&store).await;
    store.close().await;
}

#[tokio::test]
async fn event_pages_use_indexes_at_10k_events_on_postgres_without_statistics() {
    let Some(pg) = ScratchPostgres::create("event_plans").await else {
        return;
    };
    let store = Store::open(&pg.url).await.unwrap();
    disable_autovacuum(&store).await.unwrap();
    load(&store).await;
    check(&store).await;
    store.close().await;
}

/// Events written before `event_documents` existed are indexed once, at
/// the next start, and the filters find them.
async fn backfill_indexes_older_events(url: &str) {
    let store = Store::open(url).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for i in 0..3 {
        tx.record_event(event(i)).await.unwrap();
    }
    tx.commit().await.unwrap();
    // As a database from before the table was: no index rows, and the
    // migration's note that they are owed.
    cuttle_store::testing::forget_event_documents(&store)
        .await
        .unwrap();
    let by_project = EventQuery {
        document_sets: vec![vec!["Projects-2".into()]],
        ..Default::default()
    };
    assert_eq!(store.list_events(&by_project).await.unwrap().1, 0);
    store.close().await;
    let store = Store::open(url).await.unwrap();
    let (found, total) = store.list_events(&by_project).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(found[0].event.message, "event 1");
    store.close().await;
}

#[tokio::test]
async fn older_events_are_indexed_at_start_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    backfill_indexes_older_events(&Store::sqlite_url(&dir.path().join("cuttle.db"))).await;
}

#[tokio::test]
async fn older_events_are_indexed_at_start_on_postgres() {
    let Some(pg) = ScratchPostgres::create("event_backfill").await else {
        return;
    };
    backfill_indexes_older_events(&pg.url).await;
}
