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
            // Straight to stderr: the test harness swallows `eprintln!` of
            // passing tests, and a skip must be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped on PostgreSQL: {TEST_DATABASE_ENV} is not set ({test_name})"
            );
            return None;
        };
        let name = format!("cuttle_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("{TEST_DATABASE_ENV} is set but PostgreSQL is unreachable: {e}")
        });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create scratch database");
        let url = with_database_name(&admin_url, &name);
        Some(ScratchPostgres {
            admin_url,
            name,
            url,
        })
    }
}

impl ScratchPostgres {
    /// The tables of this database with a row whose text holds `needle`, to
    /// prove that something is never stored in the clear.
    pub async fn tables_containing(&self, needle: &str) -> Vec<String> {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .expect("connect to the scratch database");
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("list tables");
        let mut found = vec![];
        for (table,) in tables {
            // A row cast to text shows every column, documents included.
            let sql = format!(
                "SELECT count(*) FROM \"{}\" t WHERE strpos(t::text, $1) > 0",
                table.replace('"', "\"\"")
            );
            let (hits,): (i64,) = sqlx::query_as(&sql)
                .bind(needle)
                .fetch_one(&mut conn)
                .await
                .expect("search a table");
            if hits > 0 {
                found.push(table);
            }
        }
        found
    }
}

/// The same server URL naming another database:
/// `postgres://u@h:5432/test?sslmode=disable` → `postgres://u@h:5432/NAME?sslmode=disable`.
pub fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
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

#[cfg(test)]
mod tests {
    use super::with_database_name;

    #[test]
    fn names_the_scratch_database() {
        assert_eq!(
            with_database_name("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database_name("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database_name("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
