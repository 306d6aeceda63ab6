//! The variable language of Cuttle: Octostache-compatible templates
//! (`#{Name}`, filters, conditionals, iteration), the scoping rules that pick
//! each variable's value for a target, and masking of sensitive values.
//!
//! # Layout
//!
//! - `dictionary`: [`VariableDictionary`], the variables to evaluate against.
//! - `tree`: the variable names read as paths (`A[Index].Name`), for lookups.
//! - `template` / `parse`: the syntax tree and the (backtracking, bounded)
//!   parser.
//! - `eval`: the evaluator: lookups through scopes, JSON members, nested
//!   evaluation with cycle detection, conditionals, `each`, limits.
//! - `json`: lenient JSON values read as structure. `calc`: `#{calc}`.
//!   `truthy`: what counts as true.
//! - `render`: the entry points ([`render`], [`parse`], [`evaluate_truthy`]).
//! - [`filters`]: the built-in filters. [`scope`]: which value of a variable
//!   applies where. [`mask`]: masking sensitive values in logs.

mod calc;
mod dictionary;
mod error;
mod eval;
pub mod filters;
mod json;
pub mod mask;
mod parse;
mod render;
pub mod scope;
mod template;
mod tree;
mod truthy;

pub use dictionary::VariableDictionary;
pub use error::VarsError;
pub use render::{
    evaluate_truthy, parse, render, render_with, PreparedTemplate, RenderOptions, Rendered,
};
pub use template::Template;
pub use truthy::is_truthy;
