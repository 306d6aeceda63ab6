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
