//! The syntax tree of a parsed template, and its canonical text.
//!
//! The canonical text (`Display`) is what Octostache echoes for a token it
//! cannot evaluate: whitespace normalised, filter options that were literal
//! text written in double quotes. Unresolved-token diagnostics use it too.

use std::fmt::{self, Display, Formatter, Write as _};

use crate::calc::CalcExpr;

/// A parsed template, ready to be rendered any number of times.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub(crate) tokens: Vec<Token>,
}

impl Display for Template {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_tokens(f, &self.tokens)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Token {
    /// Literal output (escapes already applied: `##{` is stored as `#{`).
    Text(String),
    /// `#{Expr}`.
    Substitution(Expr),
    /// `#{if}` / `#{unless}`; `elseif` chains are folded into nested
    /// conditionals in the false branch, as Octostache does.
    Conditional(Box<Conditional>),
    /// `#{each x in Coll}...#{/each}`.
    Repetition(Box<Repetition>),
    /// `#{calc ...}`.
    Calculation(CalcExpr),
}

/// A symbol followed by zero or more filters. An empty `input` (no steps)
/// is the "no input value" of `#{ | NowDate}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Expr {
    pub input: Symbol,
    pub filters: Vec<FilterCall>,
}

impl Expr {
    /// True when the last filter is `null`, whose "no value" makes the whole
    /// evaluation yield no value (rather than an unresolved token).
    pub fn ends_with_null_filter(&self) -> bool {
        self.filters
            .last()
            .is_some_and(|f| f.name.eq_ignore_ascii_case("null"))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FilterCall {
    pub name: String,
    /// Literal options are `Token::Text`; nested tokens are evaluated first.
    pub options: Vec<Token>,
}

/// A variable path such as `Octopus.Action[Package A].Name`.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Symbol {
    pub steps: Vec<Step>,
    /// Byte offset in the text it was parsed from; part of its identity for
    /// cycle detection (see [`Symbol::key`]).
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// `.Name` (or the first name); trimmed.
    Ident(String),
    /// `[literal index]`.
    Index(String),
    /// `[#{Other.Symbol}]`: resolved when the path is looked up.
    SymbolIndex(Symbol),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Conditional {
    pub condition: Condition,
    pub truthy: Vec<Token>,
    pub falsy: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Condition {
    Truthy(Expr),
    /// `X == "text"` or `"text" == X` (the literal always ends up on the right).
    CompareText {
        left: Expr,
        equal: bool,
        right: String,
    },
    /// `X == Y` between two symbols or filter chains.
    CompareExpr {
        left: Expr,
        equal: bool,
        right: Expr,
    },
}

impl Condition {
    pub fn left(&self) -> &Expr {
        match self {
            Condition::Truthy(e) => e,
            Condition::CompareText { left, .. } | Condition::CompareExpr { left, .. } => left,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Repetition {
    pub enumerator: String,
    pub collection: Symbol,
    pub body: Vec<Token>,
}

impl Display for Symbol {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Ident(name) => {
                    if i > 0 {
                        f.write_char('.')?;
                    }
                    f.write_str(name)?;
                }
                Step::Index(index) => write!(f, "[{index}]")?,
                Step::SymbolIndex(symbol) => write!(f, "[#{{{symbol}}}]")?,
            }
        }
        Ok(())
    }
}

impl Symbol {
    /// Identity of a reference for cycle detection: the path, ignoring case,
    /// and where it was written. Octostache compares references the same way
    /// (position included), so a JSON value that refers to its own members
    /// from another position, `{Name: "#{Test.Value}", Value: 12}`, still
    /// resolves, while a true cycle recurs at the same position and is caught
    /// within a round or two.
    pub fn key(&self) -> (String, usize) {
        (self.to_string().to_lowercase(), self.pos)
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.input)?;
        for filter in &self.filters {
            write!(f, " | {}", filter.name)?;
            for option in &filter.options {
                f.write_char(' ')?;
                match option {
                    Token::Text(text) => write!(f, "\"{text}\"")?,
                    other => write!(f, "{other}")?,
                }
            }
        }
        Ok(())
    }
}

impl Display for Condition {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Truthy(e) => write!(f, "{e}"),
            Condition::CompareText { left, equal, right } => {
                write!(f, "{left} {} \"{right}\" ", op(*equal))
            }
            Condition::CompareExpr { left, equal, right } => {
                write!(f, "{left} {} {right} ", op(*equal))
            }
        }
    }
}

fn op(equal: bool) -> &'static str {
    if equal {
        "=="
    } else {
        "!="
    }
}

impl Display for Token {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Token::Text(text) => f.write_str(&text.replace("#{", "##{")),
            Token::Substitution(e) => write!(f, "#{{{e}}}"),
            Token::Conditional(c) => {
                write!(f, "#{{if {}}}", c.condition)?;
                write_tokens(f, &c.truthy)?;
                if !c.falsy.is_empty() {
                    f.write_str("#{else}")?;
                    write_tokens(f, &c.falsy)?;
                }
                f.write_str("#{/if}")
            }
            Token::Repetition(r) => {
                write!(f, "#{{each {} in {}}}", r.enumerator, r.collection)?;
                write_tokens(f, &r.body)?;
                f.write_str("#{/each}")
            }
            Token::Calculation(c) => write!(f, "#{{{c}}}"),
        }
    }
}

fn write_tokens(f: &mut Formatter<'_>, tokens: &[Token]) -> fmt::Result {
    tokens.iter().try_for_each(|t| write!(f, "{t}"))
}
