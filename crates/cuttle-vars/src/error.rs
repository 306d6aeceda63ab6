//! Why a template could not be rendered.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VarsError {
    /// The template does not parse (only from [`crate::parse`]; rendering
    /// returns an unparseable template unchanged, see [`crate::Rendered`]).
    #[error("{0}")]
    Parse(String),
    /// A variable refers to itself, directly or through others. `chain` is
    /// the path of references ending with `name` again.
    #[error("An attempt to parse the variable symbol \"{name}\" appears to have resulted in a self referencing loop ({chain}). Ensure that recursive loops do not exist in the variable values.")]
    Cycle { name: String, chain: String },
    /// The output (or one value on the way) grew past the size limit.
    #[error("The evaluated template is larger than {limit} bytes; a variable probably expands to many copies of another")]
    TooLarge { limit: usize },
    /// Evaluation took more steps than its budget.
    #[error("Evaluating the template took more than {limit} steps; a variable probably expands to many copies of another")]
    TooComplex { limit: u64 },
    /// Variable references and blocks nest deeper than the limit.
    #[error("Variable references and blocks nest more than {limit} levels deep")]
    TooDeep { limit: usize },
}
