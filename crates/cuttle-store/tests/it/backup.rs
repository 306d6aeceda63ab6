//! A backup's database side on SQLite and PostgreSQL: a snapshot sees one
//! instant while writes go on, finds every table from the catalogue (one a
//! later migration might add included), and its rows load into an empty
//! database of the other kind unchanged.

use cuttle_model::Environment;
use cuttle_store::backup::{database_is_empty, known_schema_version, Loader, Snapshot, Table};
use cuttle_store::testing::ScratchPostgres;
use cuttle_store::Store;
use serde_json::{json, Value};
use sqlx::Connection;

fn env(n: i64) -> Environment {
    Environment {
        id: format!("Environments-{n}"),
        space_id: "Spaces-1".into(),
        name: format!("Env {n}"),
        sort_order: n,
        ..Default::default()
    }
}

async fn rows(snapshot: &mut Snapshot, table: &Table) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    snapshot
        .each_row(table, |r| -> cuttle_store::Result<()> {
            out.push(r);
            Ok(())
        })
        .await
        .unwrap();
    out
}

/// A table no migration of this build made, as one of a later build's.
async fn add_extra_table(url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for sql in [
        "CREATE TABLE extra_things (id TEXT PRIMARY KEY, n BIGINT, ratio DOUBLE PRECISION, note TEXT)",
        "INSERT INTO extra_things VALUES ('a', 7, 0.5, NULL), ('b', NULL, NULL, 'it''s \"quoted\"')",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
}

/// Writes `n` environments, then checks what a snapshot taken before the
/// last of them sees, and returns every table's rows.
async fn scenario(url: &str) -> Vec<(Table, Vec<Vec<Value>>)> {
    let store = Store::open(url).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert(&env(1)).await.unwrap();
    tx.commit().await.unwrap();
    add_extra_table(url).await;

    let mut snapshot = store.snapshot().await.unwrap();
    // Committed after the snapshot began: not in it.
    let mut tx = store.begin().await.unwrap();
    tx.insert(&env(2)).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        snapshot.schema_version().await.unwrap(),
        known_schema_version()
    );
    let tables = snapshot.tables().await.unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    for expected in [
        "documents",
        "extra_things",
        "packages",
        "server_tasks",
        "settings",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(!names.contains(&"_sqlx_migrations"));
    let mut all = Vec::new();
    for t in tables {
        let r = rows(&mut snapshot, &t).await;
        all.push((t, r));
    }
    snapshot.finish().await.unwrap();
    let docs = &all.iter().find(|(t, _)| t.name == "documents").unwrap().1;
    let envs: Vec<&Value> = docs
        .iter()
        .filter(|r| r[1] == "Environments")
        .map(|r| &r[0])
        .collect();
    assert_eq!(
        envs,
        [&json!("Environments-1")],
        "the snapshot saw a later write"
    );
    // A new snapshot sees it.
    let mut later = Snapshot::connect(url).await.unwrap();
    let documents = later
        .tables()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "documents")
        .unwrap();
    let count = rows(&mut later, &documents)
        .await
        .iter()
        .filter(|r| r[1] == "Environments")
        .count();
    assert_eq!(count, 2);
    later.finish().await.unwrap();
    store.close().await;
    all
}

/// Loads `tables` into the empty database at `url`; the extra table is not
/// in this build's schema, and is refused by name.
async fn load(url: &str, tables: &[(Table, Vec<Vec<Value>>)]) {
    assert!(database_is_empty(url).await.unwrap());
    let mut loader = Loader::create(url, known_schema_version()).await.unwrap();
    for (t, rows) in tables {
        let loaded = loader.insert(&t.name, &t.columns, rows).await;
        if t.name == "extra_things" {
            let e = loaded.unwrap_err().to_string();
            assert!(e.contains("extra_things"), "{e}");
        } else {
            loaded.unwrap();
        }
    }
    loader.commit().await.unwrap();
    assert!(!database_is_empty(url).await.unwrap());
    let mut snapshot = Snapshot::connect(url).await.unwrap();
    for t in snapshot.tables().await.unwrap() {
        let mut got = rows(&mut snapshot, &t).await;
        let (_, want) = tables.iter().find(|(w, _)| w.name == t.name).unwrap();
        let mut want = want.clone();
        let key = |r: &Vec<Value>| r.iter().map(Value::to_string).collect::<Vec<_>>();
        got.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got, want, "{} differs once loaded", t.name);
    }
    snapshot.finish().await.unwrap();
}

#[tokio::test]
async fn a_snapshot_is_one_instant_of_every_table_and_loads_into_the_other_database() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = Store::sqlite_url(&dir.path().join("cuttle.db"));
    let from_sqlite = scenario(&sqlite_url).await;
    let extra = &from_sqlite
        .iter()
        .find(|(t, _)| t.name == "extra_things")
        .unwrap()
        .1;
    assert!(extra.contains(&vec![json!("a"), json!(7), json!(0.5), Value::Null]));
    assert!(extra.contains(&vec![
        json!("b"),
        Value::Null,
        Value::Null,
        json!("it's \"quoted\"")
    ]));

    let Some(pg) = ScratchPostgres::create("backup_snapshot").await else {
        // Without PostgreSQL, SQLite into SQLite.
        load(
            &Store::sqlite_url(&dir.path().join("copy.db")),
            &from_sqlite,
        )
        .await;
        return;
    };
    load(&pg.url, &from_sqlite).await;
    let Some(pg_source) = ScratchPostgres::create("backup_snapshot_source").await else {
        return;
    };
    let from_pg = scenario(&pg_source.url).await;
    load(&Store::sqlite_url(&dir.path().join("from-pg.db")), &from_pg).await;
}

#[tokio::test]
async fn a_schema_this_build_does_not_know_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url(&dir.path().join("x.db"));
    let e = Loader::create(&url, known_schema_version() + 1)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not one this build knows"), "{e}");
}
