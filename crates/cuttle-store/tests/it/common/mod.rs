//! What the store's test files share.

use cuttle_store::testing::ScratchPostgres;
use cuttle_store::Store;
use std::future::Future;

/// Runs `scenario` against a fresh SQLite store, then a fresh PostgreSQL
/// store when `CUTTLE_TEST_DATABASE_URL` is set (said as skipped otherwise).
pub async fn on_both<F, Fut>(name: &str, scenario: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&Store::sqlite_url(&dir.path().join("cuttle.db")))
        .await
        .unwrap();
    scenario(sqlite.clone()).await;
    sqlite.close().await;
    if let Some(pg) = ScratchPostgres::create(name).await {
        let store = Store::open(&pg.url).await.unwrap();
        scenario(store.clone()).await;
        store.close().await;
    }
}
