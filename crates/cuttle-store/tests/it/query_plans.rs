//! The hot reads keep their shape as history grows: against 100,000
//! deployments with their tasks, each query the server runs is planned
//! without reading a history table whole, and without sorting one where an
//! index gives the order. On PostgreSQL the tables have no statistics
//! (autovacuum off, nothing analysed after loading), as on a freshly
//! restored database, so a plan cannot owe its shape to luck. The lists'
//! totals read only the counts kept as data, never the history.
//!
//! The statements explained are the store's own (`*_statement`), not
//! copies, so a change to a query is checked here.

use cuttle_model::TaskState;
use cuttle_store::deployments::{
    latest_cells_statement, latest_deployments_statement, newest_release_deployments_statement,
    release_deployments_statement,
};
use cuttle_store::statement::Statement;
use cuttle_store::tasks::{claim_statement, time_out_statement};
use cuttle_store::testing::{
    deployment_with_task, disable_autovacuum, explain, explain_generic, HistoryEntry,
    ScratchPostgres, HISTORY_TABLES,
};
use cuttle_store::{Backend, DeploymentQuery, Store, TaskQuery};

const DEPLOYMENTS: i64 = 100_000;
const PROJECTS: i64 = 50;
const ENVIRONMENTS: i64 = 20;
/// Deployments per release: each release goes to ten environments.
const PER_RELEASE: i64 = 10;
const SPACE: &str = "Spaces-1";
/// Deployments per transaction while loading.
const BATCH: i64 = 10_000;

fn project(n: i64) -> String {
    format!("Projects-{}", n % PROJECTS + 1)
}

fn environment(n: i64) -> String {
    format!("Environments-{}", (n / PROJECTS) % ENVIRONMENTS + 1)
}

/// Each project's deployments go, ten at a time, to one release of it.
fn release(n: i64) -> String {
    format!(
        "Releases-{}",
        (n / (PROJECTS * PER_RELEASE)) * PROJECTS + n % PROJECTS + 1
    )
}

/// Nearly all succeeded, one in twenty failed, and the newest few are
/// still queued or running, as on a live server.
fn state(n: i64) -> TaskState {
    if n > DEPLOYMENTS - 5 {
        TaskState::Queued
    } else if n > DEPLOYMENTS - 10 {
        TaskState::Executing
    } else if n % 20 == 0 {
        TaskState::Failed
    } else {
        TaskState::Success
    }
}

async fn load_history(store: &Store) {
    let mut n = 1;
    while n <= DEPLOYMENTS {
        let end = (n + BATCH - 1).min(DEPLOYMENTS);
        let batch: Vec<_> = (n..=end)
            .map(|i| {
                let (p, e, r) = (project(i), environment(i), release(i));
                deployment_with_task(&HistoryEntry {
                    n: i,
                    space_id: SPACE,
                    project_id: &p,
                    environment_id: &e,
                    release_id: &r,
                    state: state(i),
                })
            })
            .collect();
        let mut tx = store.begin().await.unwrap();
        tx.import_deployments(&batch).await.unwrap();
        tx.commit().await.unwrap();
        n = end + 1;
    }
}

/// One hot query and what its plan may do.
struct Hot {
    name: &'static str,
    statement: Statement,
    /// A small result (the newest deployment of a few releases, say) may
    /// be sorted; a page of history must come in index order.
    may_sort: bool,
    /// A newest-first page (with LIMIT) may walk a whole space's index in
    /// order, stopping at the page's end; any other read must not.
    paged: bool,
    /// An index the plan must use: where it starts from.
    uses: Option<&'static str>,
    /// A list's total: summed from the counts kept as data, without
    /// reading a history table at all.
    total: bool,
}

fn hot(name: &'static str, statement: Statement) -> Hot {
    Hot {
        name,
        statement,
        may_sort: false,
        paged: false,
        uses: None,
        total: false,
    }
}

/// A list's total, read from the table of counts `table`: it may sort (or
/// scan) those few thousand rows, and must not touch the history.
fn total(name: &'static str, table: &'static str, statement: Statement) -> Hot {
    Hot {
        may_sort: true,
        uses: Some(table),
        total: true,
        ..hot(name, statement)
    }
}

/// A newest-first page.
fn page(name: &'static str, statement: Statement) -> Hot {
    Hot {
        paged: true,
        ..hot(name, statement)
    }
}

/// The names the store's statements give history tables in a join.
const HISTORY_ALIASES: [&str; 8] = ["d", "doc", "t", "q", "busy", "sp", "l", "m"];

/// The indexes that lead with the space alone: walking one reads all of a
/// space's history.
const WHOLE_SPACE_INDEXES: [&str; 2] = ["deployments_space", "server_tasks_space"];

fn hot_queries() -> Vec<Hot> {
    let deployments = |f: fn(&mut DeploymentQuery)| {
        let mut q = DeploymentQuery {
            space_id: SPACE.into(),
            take: Some(30),
            ..Default::default()
        };
        f(&mut q);
        q.page_statement()
    };
    let tasks = |f: fn(&mut TaskQuery)| {
        let mut q = TaskQuery {
            space_id: Some(SPACE.into()),
            take: Some(30),
            ..Default::default()
        };
        f(&mut q);
        q.page_statement()
    };
    let deployment_total = |f: fn(&mut DeploymentQuery)| {
        let mut q = DeploymentQuery {
            space_id: SPACE.into(),
            ..Default::default()
        };
        f(&mut q);
        q.count_statement()
    };
    let task_total = |f: fn(&mut TaskQuery)| {
        let mut q = TaskQuery {
            space_id: Some(SPACE.into()),
            ..Default::default()
        };
        f(&mut q);
        q.count_statement()
    };
    let now = "2030-01-01T00:00:00.000Z";
    vec![
        page("deployments", deployments(|_| {})),
        page("deployments, second page", deployments(|q| q.skip = 30)),
        // One state alone: the tasks in it, newest first, however rare.
        Hot {
            uses: Some("server_tasks_space_state"),
            ..page(
                "deployments?taskState=Success",
                deployments(|q| q.task_states = vec![TaskState::Success]),
            )
        },
        Hot {
            uses: Some("server_tasks_space_state"),
            ..page(
                "deployments?taskState=Canceled",
                deployments(|q| q.task_states = vec![TaskState::Canceled]),
            )
        },
        // Starts from the unfinished tasks, few by nature, and sorts those.
        Hot {
            may_sort: true,
            uses: Some("server_tasks_space_state"),
            ..page(
                "deployments?taskState=Executing,Queued",
                deployments(|q| q.task_states = vec![TaskState::Executing, TaskState::Queued]),
            )
        },
        // The totals: sums of the kept counts, whatever the filters.
        total(
            "deployments: total",
            "deployment_counts",
            deployment_total(|_| {}),
        ),
        total(
            "deployments?taskState=Success: total",
            "deployment_counts",
            deployment_total(|q| q.task_states = vec![TaskState::Success]),
        ),
        total(
            "deployments?taskState=Executing,Queued: total",
            "deployment_counts",
            deployment_total(|q| q.task_states = vec![TaskState::Executing, TaskState::Queued]),
        ),
        total(
            "deployments?projects=&environments=&taskState=: total",
            "deployment_counts",
            deployment_total(|q| {
                q.project_ids = vec!["Projects-7".into(), "Projects-8".into()];
                q.environment_ids = vec!["Environments-3".into()];
                q.task_states = vec![TaskState::Success, TaskState::Failed];
            }),
        ),
        total("tasks: total", "task_counts", task_total(|_| {})),
        total(
            "tasks of every space: total",
            "task_counts",
            task_total(|q| q.space_id = None),
        ),
        total(
            "tasks?states=Success: total",
            "task_counts",
            task_total(|q| q.states = vec![TaskState::Success]),
        ),
        total(
            "tasks?project=&environment=: total",
            "task_counts",
            task_total(|q| {
                q.project_id = Some("Projects-7".into());
                q.environment_id = Some("Environments-3".into());
            }),
        ),
        total(
            "tasks of every space?name=Deploy&states=Failed: total",
            "task_counts",
            task_total(|q| {
                q.space_id = None;
                q.name = Some("Deploy".into());
                q.states = vec![TaskState::Failed];
            }),
        ),
        page(
            "deployments?taskState=Failed,Canceled",
            deployments(|q| q.task_states = vec![TaskState::Failed, TaskState::Canceled]),
        ),
        page(
            "deployments?projects=",
            deployments(|q| q.project_ids = vec!["Projects-7".into()]),
        ),
        page(
            "deployments?environments=",
            deployments(|q| q.environment_ids = vec!["Environments-3".into()]),
        ),
        page(
            "deployments?projects=&environments=&taskState=",
            deployments(|q| {
                q.project_ids = vec!["Projects-7".into()];
                q.environment_ids = vec!["Environments-3".into()];
                q.task_states = vec![TaskState::Success];
            }),
        ),
        page(
            "releases/{id}/deployments",
            deployments(|q| q.release_id = Some("Releases-77".into())),
        ),
        hot(
            "lifecycle progression",
            release_deployments_statement(SPACE, "Releases-77"),
        ),
        // One row per project and environment: sorting them is cheap.
        Hot {
            may_sort: true,
            ..hot("dashboard", latest_deployments_statement(SPACE))
        },
        Hot {
            may_sort: true,
            ..hot("dashboard's cells", latest_cells_statement(SPACE))
        },
        Hot {
            may_sort: true,
            uses: Some("deployments_release"),
            ..hot(
                "project overview",
                newest_release_deployments_statement(
                    SPACE,
                    &["Releases-77".into(), "Releases-127".into()],
                ),
            )
        },
        hot("task queue: time out", time_out_statement(now)),
        Hot {
            uses: Some("server_tasks_running"),
            ..hot(
                "task queue: claim (SQLite)",
                claim_statement(Backend::Sqlite, now, "node", now, 60_000),
            )
        },
        Hot {
            uses: Some("server_tasks_running"),
            ..hot(
                "task queue: claim (PostgreSQL)",
                claim_statement(Backend::Postgres, now, "node", now, 60_000),
            )
        },
        page("tasks", tasks(|_| {})),
        page("tasks of every space", tasks(|q| q.space_id = None)),
        page(
            "tasks of every space?states=Success",
            tasks(|q| {
                q.space_id = None;
                q.states = vec![TaskState::Success];
            }),
        ),
        page(
            "tasks?states=Success",
            tasks(|q| q.states = vec![TaskState::Success]),
        ),
        page(
            "tasks?states=Queued",
            tasks(|q| q.states = vec![TaskState::Queued]),
        ),
        page(
            "tasks?project=",
            tasks(|q| q.project_id = Some("Projects-7".into())),
        ),
        page(
            "tasks?environment=",
            tasks(|q| q.environment_id = Some("Environments-3".into())),
        ),
        Hot {
            uses: Some("server_tasks_space_name"),
            ..page(
                "tasks?name=Health",
                tasks(|q| q.name = Some("Health".into())),
            )
        },
        total(
            "tasks?name=Health: total",
            "task_counts",
            task_total(|q| q.name = Some("Health".into())),
        ),
        Hot {
            uses: Some("server_tasks_name"),
            ..page(
                "tasks of every space?name=Health",
                tasks(|q| {
                    q.space_id = None;
                    q.name = Some("Health".into());
                }),
            )
        },
    ]
}

/// What is wrong with a plan, if anything.
fn faults(backend: Backend, plan: &[String], q: &Hot) -> Vec<String> {
    let mut found = vec![];
    if let Some(index) = q.uses {
        if !plan.iter().any(|l| l.contains(index)) {
            found.push(format!("does not start from {index}"));
        }
    }
    for line in plan {
        if q.total {
            // SQLite's plans name a table by its alias.
            let history = line
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .find(|word| HISTORY_TABLES.contains(word) || HISTORY_ALIASES.contains(word));
            if let Some(table) = history {
                found.push(format!("a total reads {table}: {}", line.trim()));
            }
        }
        if !q.paged {
            let walks_space = WHOLE_SPACE_INDEXES.iter().any(|index| {
                line.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|word| word == *index)
            });
            if walks_space {
                found.push(format!("reads a whole space's history: {}", line.trim()));
            }
        }
        let may_sort = q.may_sort;
        let node = line.trim_start().trim_start_matches("-> ").trim_start();
        match backend {
            Backend::Postgres => {
                for table in HISTORY_TABLES {
                    if node.starts_with(&format!("Seq Scan on {table} ")) {
                        found.push(format!("reads {table} whole: {node}"));
                    }
                }
                if !may_sort && (node.starts_with("Sort ") || node.starts_with("Incremental Sort"))
                {
                    found.push(format!("sorts where an index could order: {node}"));
                }
            }
            Backend::Sqlite => {
                // `SCAN x` without an index reads a table whole; `SCAN x
                // USING INDEX` walks an index in order (stopped by LIMIT).
                // A subquery's materialised result (`SCAN n`) is small.
                if let Some(what) = node.strip_prefix("SCAN ") {
                    let table = what.split_whitespace().next().unwrap_or("");
                    let history =
                        HISTORY_TABLES.contains(&table) || HISTORY_ALIASES.contains(&table);
                    if history && !what.contains("USING") {
                        found.push(format!("reads a table whole: {node}"));
                    }
                }
                if !may_sort && node.starts_with("USE TEMP B-TREE") {
                    found.push(format!("sorts where an index could order: {node}"));
                }
            }
        }
    }
    found
}

async fn check_plans(store: &Store) {
    let backend = store.backend();
    let mut failures = vec![];
    let mut report = String::new();
    for q in hot_queries() {
        let wrong_backend = match backend {
            Backend::Sqlite => q.name.ends_with("(PostgreSQL)"),
            Backend::Postgres => q.name.ends_with("(SQLite)"),
        };
        if wrong_backend {
            continue;
        }
        let plan = explain(store, &q.statement)
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: explain {}: {e}", q.name));
        report.push_str(&format!("\n{}:\n  {}\n", q.name, plan.join("\n  ")));
        for f in faults(backend, &plan, &q) {
            failures.push(format!("{}: {f}", q.name));
        }
        // A prepared statement run often may switch to a plan made without
        // its values: that one must keep the shape too.
        if backend == Backend::Postgres {
            let generic = explain_generic(store, &q.statement)
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: explain {}: {e}", q.name));
            report.push_str(&format!(
                "\n{} (generic):\n  {}\n",
                q.name,
                generic.join("\n  ")
            ));
            for f in faults(backend, &generic, &q) {
                failures.push(format!("{} (generic plan): {f}", q.name));
            }
        }
    }
    if std::env::var_os("CUTTLE_SHOW_PLANS").is_some() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{backend:?} plans:{report}");
    }
    assert!(
        failures.is_empty(),
        "{backend:?}: plans that grow with history:\n{}\n\nall plans:{report}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn hot_queries_use_indexes_at_100k_deployments_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(&dir.path().join("cuttle.db")))
        .await
        .unwrap();
    load_history(&store).await;
    check_plans(&store).await;
    store.close().await;
}

#[tokio::test]
async fn hot_queries_use_indexes_at_100k_deployments_on_postgres_without_statistics() {
    let Some(pg) = ScratchPostgres::create("query_plans").await else {
        return;
    };
    // Opening analyses the empty tables (as after a restore); nothing
    // analyses them again once loaded.
    let store = Store::open(&pg.url).await.unwrap();
    disable_autovacuum(&store).await.unwrap();
    load_history(&store).await;
    check_plans(&store).await;
    store.close().await;
}
