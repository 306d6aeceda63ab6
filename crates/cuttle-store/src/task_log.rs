//! A task's log lines: stored in batches of many rows per statement, and
//! read a bounded piece at a time (one activity's tail, one page of an
//! activity's lines), so neither a chatty script nor a reader of a log of a
//! million lines holds the log in memory or a connection for long.

use crate::tasks::{log_line_from_row, stored_text};
use crate::{Backend, Result, Store};
use cuttle_model::task::{LogCategory, LogLine};
use sqlx::{AnyConnection, Row};
use std::borrow::Cow;
use std::sync::OnceLock;

/// Log lines stored per `INSERT` statement: enough that a statement's fixed
/// cost (a round trip to the database's thread or server) is shared by many
/// lines, few enough that a statement stays small. Eight values a row (six
/// on SQLite, where the task and the lease's generation are bound once per
/// statement) keep a full statement (4,000) far under both SQLite's limit
/// of parameters (32,766) and PostgreSQL's (65,535).
pub const LOG_ROWS_PER_STATEMENT: usize = 500;

const SQLITE_MAX_PARAMETERS: usize = 32_766;
const POSTGRES_MAX_PARAMETERS: usize = 65_535;
const COLUMNS: usize = 8;
/// The values of a row that differ from line to line.
const LINE_VALUES: usize = 6;
const _: () = assert!(2 + LINE_VALUES * LOG_ROWS_PER_STATEMENT <= SQLITE_MAX_PARAMETERS);
const _: () = assert!(COLUMNS * LOG_ROWS_PER_STATEMENT <= POSTGRES_MAX_PARAMETERS);

/// How many statements [`Store::append_log_lines`] runs for `lines` lines.
pub fn log_insert_statements(lines: usize) -> usize {
    lines.div_ceil(LOG_ROWS_PER_STATEMENT)
}

/// The `INSERT` of `rows` log lines. On SQLite the task and the lease's
/// generation, the same for every row, are its first two values, bound
/// once: each value bound is copied twice on its way to SQLite, and those
/// two are a quarter of a row's. The lines' own values follow, six a row.
/// PostgreSQL binds all eight a row (it reads a row's types from its
/// values, which a row of `VALUES` in a subquery would leave untyped).
fn insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::with_capacity(160 + rows * 40);
    let per_row = match backend {
        Backend::Sqlite => {
            sql.push_str(
                "INSERT INTO task_log_lines (task_id, lease_generation, seq, activity_id, category, occurred_at, message, detail) \
                 SELECT ?, ?, * FROM (VALUES ",
            );
            LINE_VALUES
        }
        Backend::Postgres => {
            sql.push_str(
                "INSERT INTO task_log_lines (task_id, seq, activity_id, category, occurred_at, message, detail, lease_generation) VALUES ",
            );
            COLUMNS
        }
    };
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ",(" });
        for c in 1..=per_row {
            if c > 1 {
                sql.push(',');
            }
            sql.push_str(&backend.placeholder(r * per_row + c));
        }
        sql.push(')');
    }
    if backend == Backend::Sqlite {
        sql.push(')');
    }
    sql
}

/// The statement for a full chunk, built once per backend.
fn full_insert_sql(backend: Backend) -> &'static str {
    static SQLITE: OnceLock<String> = OnceLock::new();
    static POSTGRES: OnceLock<String> = OnceLock::new();
    let cell = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    cell.get_or_init(|| insert_sql(backend, LOG_ROWS_PER_STATEMENT))
}

/// Stores log lines on a connection inside a transaction,
/// [`LOG_ROWS_PER_STATEMENT`] to a statement, as written under the lease
/// of `generation` (0: none).
pub(crate) async fn insert_log_lines(
    conn: &mut AnyConnection,
    backend: Backend,
    task_id: &str,
    generation: i64,
    lines: &[LogLine],
) -> Result<u64> {
    for chunk in lines.chunks(LOG_ROWS_PER_STATEMENT) {
        let full = chunk.len() == LOG_ROWS_PER_STATEMENT;
        let partial;
        let sql = if full {
            full_insert_sql(backend)
        } else {
            partial = insert_sql(backend, chunk.len());
            partial.as_str()
        };
        // A flood of lines shares few distinct times (they are kept to the
        // millisecond): each is written out once.
        let times = TimeTexts::of(chunk);
        let texts: Vec<(Cow<'_, str>, Option<Cow<'_, str>>)> = chunk
            .iter()
            .map(|l| {
                (
                    stored_text(&l.message),
                    l.detail.as_deref().map(stored_text),
                )
            })
            .collect();
        // A short chunk's statement is one of hundreds of shapes: not worth
        // a place in the connection's statement cache.
        let mut q = sqlx::query(sql).persistent(full);
        if backend == Backend::Sqlite {
            q = q.bind(task_id).bind(generation);
        }
        for (i, (l, (message, detail))) in chunk.iter().zip(&texts).enumerate() {
            if backend == Backend::Postgres {
                q = q.bind(task_id);
            }
            q = q
                .bind(l.seq)
                .bind(l.activity_id.as_str())
                .bind(l.category.as_str())
                .bind(times.of_line(i))
                .bind(message.as_ref())
                .bind(detail.as_deref());
            if backend == Backend::Postgres {
                q = q.bind(generation);
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(lines.len() as u64)
}

/// The stored text of each line's time, one string per distinct time.
struct TimeTexts {
    texts: Vec<String>,
    /// Per line, its text's index in `texts`.
    of_line: Vec<usize>,
}

impl TimeTexts {
    fn of(lines: &[LogLine]) -> TimeTexts {
        let mut texts: Vec<String> = Vec::new();
        let mut of_line = Vec::with_capacity(lines.len());
        let mut last: Option<i64> = None;
        for l in lines {
            let millis = l.occurred_at.millis();
            if last != Some(millis) {
                texts.push(l.occurred_at.to_string());
                last = Some(millis);
            }
            of_line.push(texts.len() - 1);
        }
        TimeTexts { texts, of_line }
    }

    fn of_line(&self, i: usize) -> &str {
        &self.texts[self.of_line[i]]
    }
}

const LINE_COLUMNS: &str = "seq, activity_id, category, occurred_at, message, detail";

impl Store {
    /// Each log line's position and the generation of the lease it was
    /// written under, in order: which holder of the task wrote what.
    pub async fn log_line_generations(&self, task_id: &str) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT seq, lease_generation FROM task_log_lines WHERE task_id = $1 ORDER BY seq",
        )
        .bind(task_id)
        .fetch_all(self.reader())
        .await?)
    }

    /// How many lines each activity of a task has (Verbose ones left out
    /// unless `with_verbose`; none after position `up_to`), counted in the
    /// database: nothing is loaded. Activities without lines are absent.
    pub async fn activity_line_counts(
        &self,
        task_id: &str,
        with_verbose: bool,
        up_to: Option<i64>,
    ) -> Result<Vec<(String, i64)>> {
        let sql = format!(
            "SELECT activity_id, COUNT(*) AS n FROM task_log_lines \
             WHERE task_id = $1 AND seq <= $2{} GROUP BY activity_id",
            verbose_filter(with_verbose)
        );
        let rows = sqlx::query(&sql)
            .bind(task_id)
            .bind(up_to.unwrap_or(i64::MAX))
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("activity_id")?, r.try_get("n")?)))
            .collect()
    }

    /// The last `limit` lines of one activity in order, leaving out Verbose
    /// ones unless `with_verbose`, and any after position `up_to`.
    pub async fn activity_log_tail(
        &self,
        task_id: &str,
        activity_id: &str,
        with_verbose: bool,
        limit: i64,
        up_to: Option<i64>,
    ) -> Result<Vec<LogLine>> {
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM task_log_lines \
             WHERE task_id = $1 AND activity_id = $2 AND seq <= $3{} \
             ORDER BY seq DESC LIMIT $4",
            verbose_filter(with_verbose)
        );
        let rows = sqlx::query(&sql)
            .bind(task_id)
            .bind(activity_id)
            .bind(up_to.unwrap_or(i64::MAX))
            .bind(limit.max(0))
            .fetch_all(self.reader())
            .await?;
        let mut lines = rows
            .iter()
            .map(log_line_from_row)
            .collect::<Result<Vec<_>>>()?;
        lines.reverse();
        Ok(lines)
    }

    /// Up to `limit` lines of one activity after position `after`, in
    /// order. A reader pages through an activity of any size this way,
    /// holding no connection between pages.
    pub async fn activity_log_page(
        &self,
        task_id: &str,
        activity_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM task_log_lines \
             WHERE task_id = $1 AND activity_id = $2 AND seq > $3 \
             ORDER BY seq LIMIT $4"
        ))
        .bind(task_id)
        .bind(activity_id)
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(log_line_from_row).collect()
    }
}

fn verbose_filter(with_verbose: bool) -> String {
    if with_verbose {
        String::new()
    } else {
        format!(" AND category <> '{}'", LogCategory::Verbose.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_one_statement_per_five_hundred_lines() {
        assert_eq!(log_insert_statements(0), 0);
        assert_eq!(log_insert_statements(1), 1);
        assert_eq!(log_insert_statements(500), 1);
        assert_eq!(log_insert_statements(501), 2);
        assert_eq!(log_insert_statements(4_096), 9);
    }

    #[test]
    fn the_insert_binds_eight_values_a_row_or_the_task_once() {
        let sql = insert_sql(Backend::Postgres, 2);
        assert!(sql.ends_with("VALUES ($1,$2,$3,$4,$5,$6,$7,$8),($9,$10,$11,$12,$13,$14,$15,$16)"));
        let sql = insert_sql(Backend::Sqlite, 2);
        assert!(sql.ends_with("SELECT ?, ?, * FROM (VALUES (?,?,?,?,?,?),(?,?,?,?,?,?))"));
        assert_eq!(sql.matches('?').count(), 2 + 2 * LINE_VALUES);
        let full = full_insert_sql(Backend::Sqlite);
        assert_eq!(
            full.matches('?').count(),
            2 + LINE_VALUES * LOG_ROWS_PER_STATEMENT
        );
        let full = full_insert_sql(Backend::Postgres);
        assert_eq!(full.matches('(').count(), 1 + LOG_ROWS_PER_STATEMENT);
        assert!(full.ends_with(&format!(",${})", COLUMNS * LOG_ROWS_PER_STATEMENT)));
    }

    #[test]
    fn lines_of_one_millisecond_share_one_time_text() {
        let at = |ms: i64| LogLine {
            seq: 1,
            activity_id: "a".into(),
            category: LogCategory::Info,
            occurred_at: cuttle_model::Timestamp::from_millis(ms),
            message: String::new(),
            detail: None,
        };
        let lines = [at(1_000), at(1_000), at(1_001), at(1_001), at(1_000)];
        let times = TimeTexts::of(&lines);
        assert_eq!(times.texts.len(), 3);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(times.of_line(i), l.occurred_at.to_string());
        }
    }
}
