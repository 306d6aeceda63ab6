//! A statement with its arguments, built once and then run, or shown to a
//! test that checks its query plan: the plan checked is the plan of the
//! very text the store runs.

use sqlx::any::AnyArguments;
use sqlx::query::{Query, QueryAs};
use sqlx::Any;

/// One bound value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Int(i64),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Text(s.to_owned())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Text(s)
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}

/// SQL text whose placeholders (`$1`, `$2`, …) both databases accept, and
/// the values bound to them in order.
#[derive(Clone, Debug, Default)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Statement {
    /// Adds a value and returns its placeholder.
    pub(crate) fn arg(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    /// Placeholders for a list of values, comma-separated (for `IN (…)`).
    pub(crate) fn args(&mut self, values: &[String]) -> String {
        values
            .iter()
            .map(|v| self.arg(v.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Readies a statement of many values for `conn`. SQLite looks up a
    /// numbered placeholder's name by walking all of them, once for each
    /// value bound, so binding thousands of `$N` costs the square of their
    /// number; placeholders that come in order are made anonymous (`?`),
    /// which binds in one pass.
    pub(crate) fn for_connection(mut self, conn: &sqlx::AnyConnection) -> Self {
        self.sql = sql_for_connection(conn, std::mem::take(&mut self.sql));
        self
    }

    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(n) => q.bind(*n),
            };
        }
        q
    }

    pub(crate) fn query_as<O>(&self) -> QueryAs<'_, Any, O, AnyArguments<'_>>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        let mut q = sqlx::query_as(&self.sql);
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(n) => q.bind(*n),
            };
        }
        q
    }
}

/// A quoted SQL string literal of a value the store itself chose (a task
/// state's name), never of user input: such lists stay literal so that a
/// partial index's condition can be matched against them.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `sql` readied for `conn`, as [`Statement::for_connection`] does.
pub(crate) fn sql_for_connection(conn: &sqlx::AnyConnection, sql: String) -> String {
    if conn.backend_name() != "SQLite" {
        return sql;
    }
    anonymous_placeholders(&sql).unwrap_or(sql)
}

/// `sql` with `$1`, `$2`, … replaced by `?`, when they appear exactly in that
/// order, each once, outside quoted text; `None` otherwise (the numbers are
/// then needed to tell which value goes where).
pub(crate) fn anonymous_placeholders(sql: &str) -> Option<String> {
    let mut out = String::with_capacity(sql.len());
    let mut expected = 1usize;
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
            out.push(c);
            continue;
        }
        if c != '$' || quoted || !chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push(c);
            continue;
        }
        let mut n = 0usize;
        while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
            n = n.checked_mul(10)?.checked_add(d as usize)?;
            chars.next();
        }
        if n != expected {
            return None;
        }
        expected += 1;
        out.push('?');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::anonymous_placeholders;

    #[test]
    fn only_placeholders_in_order_become_anonymous() {
        assert_eq!(
            anonymous_placeholders("INSERT INTO t VALUES ($1, $2), ($3, 'a $4 b', $4)").as_deref(),
            Some("INSERT INTO t VALUES (?, ?), (?, 'a $4 b', ?)")
        );
        assert_eq!(
            anonymous_placeholders("SELECT 1").as_deref(),
            Some("SELECT 1")
        );
        // Out of order, repeated or skipped: the numbers must stay.
        assert_eq!(anonymous_placeholders("SELECT $2, $1"), None);
        assert_eq!(anonymous_placeholders("SELECT $1 WHERE a = $1"), None);
        assert_eq!(anonymous_placeholders("SELECT $1, $3"), None);
    }
}
