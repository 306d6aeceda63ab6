//! Scratch databases for tests, so every test runs on SQLite and, when
//! `CUTTLE_TEST_DATABASE_URL` names a PostgreSQL server, on PostgreSQL too,
//! each in a database of its own that is dropped afterwards.

use sqlx::{Connection, Executor, PgConnection};

pub const TEST_DATABASE_ENV: &str = "CUTTLE_TEST_DATABASE_URL";

/// A PostgreSQL database created for one test and dropped when this is dropped.
pub struct ScratchPostgres {
    admin_url: String,
    name: String,
    pub url: String,
}

impl ScratchPostgres {
    /// Creates a fresh database, or returns `None` (after saying the test is
    /// skipped on PostgreSQL) when no test server is configured.
    pub async fn create(test_name: &str) -> Option<ScratchPostgres> {
        let Ok(admin_url) = std::env::var(TEST_DATABASE_ENV) else {
            eprintln!("skipped on PostgreSQL: {TEST_DATABASE_ENV} is not set ({test_name})");
            return None;
        };
        let name = format!("cuttle_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("{TEST_DATABASE_ENV} is set but PostgreSQL is unreachable: {e}")
        });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create scratch database");
        let url = match admin_url.rfind('/') {
            Some(slash)
                if admin_url[..slash].contains("://")
                    && slash > admin_url.find("://").unwrap_or(0) + 2 =>
            {
                let query = admin_url[slash..]
                    .find('?')
                    .map(|q| &admin_url[slash + q..])
                    .unwrap_or("");
                format!("{}/{name}{query}", &admin_url[..slash])
            }
            _ => format!("{admin_url}/{name}"),
        };
        Some(ScratchPostgres {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime; a thread of its own can block freely.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin_url).await.ok()?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}
