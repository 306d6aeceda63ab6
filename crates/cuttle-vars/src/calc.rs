//! `#{calc expr}`: arithmetic over numbers and variables, in doubles as
//! Octostache does, with .NET's way of printing them.

use std::fmt::{self, Display, Formatter};

use crate::template::Symbol;
use crate::VarsError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CalcExpr {
    Constant(f64),
    Variable(Symbol),
    Operation(Box<CalcExpr>, CalcOp, Box<CalcExpr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CalcOp {
    Add,
    Subtract,
    Multiply,
    Divide,
}

impl CalcOp {
    fn symbol(self) -> char {
        match self {
            CalcOp::Add => '+',
            CalcOp::Subtract => '-',
            CalcOp::Multiply => '*',
            CalcOp::Divide => '/',
        }
    }
}

impl CalcExpr {
    /// Evaluates the expression; `None` when a variable is undefined or not
    /// a number. Recursion depth is bounded by the parser's nesting limit.
    pub fn evaluate(
        &self,
        resolve: &mut dyn FnMut(&Symbol) -> Result<Option<String>, VarsError>,
    ) -> Result<Option<f64>, VarsError> {
        Ok(match self {
            CalcExpr::Constant(v) => Some(*v),
            CalcExpr::Variable(symbol) => resolve(symbol)?.as_deref().and_then(parse_number),
            CalcExpr::Operation(left, op, right) => {
                let Some(l) = left.evaluate(resolve)? else {
                    return Ok(None);
                };
                let Some(r) = right.evaluate(resolve)? else {
                    return Ok(None);
                };
                Some(match op {
                    CalcOp::Add => l + r,
                    CalcOp::Subtract => l - r,
                    CalcOp::Multiply => l * r,
                    CalcOp::Divide => l / r,
                })
            }
        })
    }
}

/// Octostache prints operations without parentheses; the echo of a calc that
/// could not be evaluated keeps that form.
impl Display for CalcExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            CalcExpr::Constant(v) => f.write_str(&format_number(*v)),
            CalcExpr::Variable(s) => write!(f, "{s}"),
            CalcExpr::Operation(l, op, r) => write!(f, "{l}{}{r}", op.symbol()),
        }
    }
}

/// Parses a variable's value as a number the way .NET's `double.TryParse`
/// does in an English culture: surrounding whitespace, a sign, thousands
/// separators, a fraction and an exponent are accepted.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | 'e' | 'E' | '+' | '-'))
        || !t.chars().any(|c| c.is_ascii_digit())
    {
        return None;
    }
    t.replace(',', "").parse::<f64>().ok()
}

/// Formats a double as .NET Core's `double.ToString()` does: the shortest
/// text that round-trips, in scientific notation (`1E+15`, `1E-05`) when the
/// exponent is 15 or more, or less than -4.
pub(crate) fn format_number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "∞".into() } else { "-∞".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "1.5e15", "-2e-7".
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return v.to_string();
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return v.to_string();
    };
    if (-4..15).contains(&exp) {
        // Rust's Display also prints the shortest round-trip digits, without
        // an exponent.
        return v.to_string();
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}E{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_dotnet() {
        assert_eq!(format_number(5.0), "5");
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(-12.0), "-12");
        assert_eq!(format_number(1e15), "1E+15");
        assert_eq!(format_number(123456789012345.0), "123456789012345");
        assert_eq!(format_number(0.0001), "0.0001");
        assert_eq!(format_number(0.00001), "1E-05");
        assert_eq!(format_number(1.5e-7), "1.5E-07");
    }

    #[test]
    fn parses_like_dotnet() {
        assert_eq!(parse_number(" 7 "), Some(7.0));
        assert_eq!(parse_number("1,000.5"), Some(1000.5));
        assert_eq!(parse_number("-2e3"), Some(-2000.0));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number("-"), None);
        assert_eq!(parse_number("inf"), None);
    }
}
