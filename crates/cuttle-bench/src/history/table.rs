//! The figures of one database: a row per measurement, a column per history
//! size, the ratio of the largest size's figure to the smallest's, and the
//! issue's goals, each marked met or missed. Figures only: nothing here
//! fails the run.

use std::fmt::Write;

/// Every figure at the largest size within this factor of the smallest's.
const GROWTH_GOAL: f64 = 1.5;

#[derive(Clone, Debug)]
pub enum Figure {
    Value(f64),
    TimedOut,
    /// The server has no such route (yet).
    NoRoute,
    Failed(String),
}

#[derive(Clone, Copy, PartialEq)]
pub enum Unit {
    Ms,
    Seconds,
    MiB,
    LinesPerSecond,
    Times,
}

#[derive(Clone, Copy)]
pub enum Goal {
    None,
    AtMost(f64),
    AtLeast(f64),
}

struct Row {
    label: String,
    unit: Unit,
    goal: Goal,
    /// Whether the figure must stay flat as history grows (floors need not).
    flat: bool,
    values: Vec<Option<Figure>>,
}

pub struct Table {
    sizes: Vec<u64>,
    rows: Vec<Row>,
}

impl Table {
    pub fn new(sizes: &[u64]) -> Table {
        Table {
            sizes: sizes.to_vec(),
            rows: vec![],
        }
    }

    /// Records the figure of `label` at the size in column `column`.
    pub fn put(
        &mut self,
        column: usize,
        label: &str,
        unit: Unit,
        goal: Goal,
        flat: bool,
        f: Figure,
    ) {
        if let Figure::Failed(e) = &f {
            eprintln!("cuttle-bench history: {label}: {e}");
        }
        let n = self.sizes.len();
        let row = match self.rows.iter().position(|r| r.label == label) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    label: label.to_owned(),
                    unit,
                    goal,
                    flat,
                    values: vec![None; n],
                });
                self.rows.last_mut().expect("just pushed")
            }
        };
        row.values[column] = Some(f);
    }

    pub fn render(&self, title: &str) -> String {
        let label_width = self
            .rows
            .iter()
            .map(|r| r.label.len())
            .max()
            .unwrap_or(0)
            .max(title.len());
        let mut out = String::new();
        let _ = write!(out, "{title:<label_width$}");
        for s in &self.sizes {
            let _ = write!(out, " {:>12}", thousands(*s));
        }
        let _ = writeln!(out, " {:>14}  goal", "ratio");
        for r in &self.rows {
            let _ = write!(out, "{:<label_width$}", r.label);
            for v in &r.values {
                let _ = write!(out, " {:>12}", show(v.as_ref(), r.unit));
            }
            let _ = write!(out, " {:>14}", ratio(r));
            let _ = writeln!(out, "  {}", goal(r));
        }
        out
    }
}

fn value(f: Option<&Figure>) -> Option<f64> {
    match f {
        Some(Figure::Value(v)) => Some(*v),
        _ => None,
    }
}

fn show(f: Option<&Figure>, unit: Unit) -> String {
    match f {
        None => "-".into(),
        Some(Figure::TimedOut) => "timed out".into(),
        Some(Figure::NoRoute) => "no route".into(),
        Some(Figure::Failed(_)) => "failed".into(),
        Some(Figure::Value(v)) => match unit {
            Unit::Ms if *v >= 10_000.0 => format!("{:.1} s", v / 1000.0),
            Unit::Ms if *v >= 100.0 => format!("{v:.0} ms"),
            Unit::Ms => format!("{v:.1} ms"),
            Unit::Seconds => format!("{v:.2} s"),
            Unit::MiB => format!("{v:.1} MiB"),
            Unit::LinesPerSecond => format!("{}/s", thousands(*v as u64)),
            Unit::Times => format!("{v:.2}x"),
        },
    }
}

/// The largest size's figure over the smallest's. A rate is turned over, so
/// that above 1 always means worse.
fn ratio(r: &Row) -> String {
    let (Some(first), Some(last)) = (
        value(r.values.first().and_then(Option::as_ref)),
        value(r.values.last().and_then(Option::as_ref)),
    ) else {
        return if r.values.len() > 1 {
            "n/a".into()
        } else {
            String::new()
        };
    };
    if r.values.len() < 2 || first <= 0.0 || last <= 0.0 {
        return String::new();
    }
    let x = if r.unit == Unit::LinesPerSecond {
        first / last
    } else {
        last / first
    };
    if r.flat {
        format!(
            "{x:.2}x {}",
            if x <= GROWTH_GOAL { "met" } else { "missed" }
        )
    } else {
        format!("{x:.2}x")
    }
}

/// The goal, judged on the worst figure of any size; a request that timed
/// out missed it.
fn goal(r: &Row) -> String {
    let timed_out = r.values.iter().any(|v| matches!(v, Some(Figure::TimedOut)));
    let values: Vec<f64> = r.values.iter().filter_map(|v| value(v.as_ref())).collect();
    let (text, met) = match r.goal {
        Goal::None => return String::new(),
        Goal::AtMost(x) => (
            format!("<= {}", show(Some(&Figure::Value(x)), r.unit)),
            values.iter().all(|v| *v <= x),
        ),
        Goal::AtLeast(x) => (
            format!(">= {}", show(Some(&Figure::Value(x)), r.unit)),
            values.iter().all(|v| *v >= x),
        ),
    };
    let verdict = if timed_out || (!values.is_empty() && !met) {
        "missed"
    } else if values.is_empty() {
        "no figure"
    } else {
        "met"
    };
    format!("{text}: {verdict}")
}

/// 1000000 as 1,000,000.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn marks_ratios_and_goals() {
        let mut t = Table::new(&[10, 100]);
        t.put(
            0,
            "flat",
            Unit::Ms,
            Goal::AtMost(10.0),
            true,
            Figure::Value(4.0),
        );
        t.put(
            1,
            "flat",
            Unit::Ms,
            Goal::AtMost(10.0),
            true,
            Figure::Value(5.0),
        );
        t.put(
            0,
            "grows",
            Unit::Ms,
            Goal::AtMost(10.0),
            true,
            Figure::Value(4.0),
        );
        t.put(
            1,
            "grows",
            Unit::Ms,
            Goal::AtMost(10.0),
            true,
            Figure::Value(40.0),
        );
        t.put(
            0,
            "rate",
            Unit::LinesPerSecond,
            Goal::AtLeast(100.0),
            true,
            Figure::Value(200.0),
        );
        t.put(
            1,
            "rate",
            Unit::LinesPerSecond,
            Goal::AtLeast(100.0),
            true,
            Figure::TimedOut,
        );
        let text = t.render("sqlite");
        let line = |l: &str| text.lines().find(|x| x.starts_with(l)).unwrap().to_owned();
        assert!(line("flat").contains("1.25x met"), "{text}");
        assert!(line("flat").ends_with("<= 10.0 ms: met"), "{text}");
        assert!(line("grows").contains("10.00x missed"), "{text}");
        assert!(line("grows").ends_with("<= 10.0 ms: missed"), "{text}");
        assert!(line("rate").contains("timed out"), "{text}");
        assert!(line("rate").contains("n/a"), "{text}");
        assert!(line("rate").ends_with(">= 100/s: missed"), "{text}");
    }
}
