//! The agent-side building blocks of the "Deploy a package" step (Octopus's
//! `Octopus.TentaclePackage`): pure, synchronous functions on the local file
//! system, used once the package file is in the agent's cache.
//!
//! # Layout
//! - [`extract`]: unpacking `.zip`/`.nupkg`/`.tar`/`.tar.gz`/`.tar.bz2` into a
//!   fresh directory, refusing zip-slip, escaping links and bombs.
//! - [`install_dir`]: where a package goes (`<root>/<env>/<id>/<version>`,
//!   `_n` when re-deployed), purging and copying to a custom installation
//!   directory.
//! - [`substitute`]: "Substitute Variables in Templates": Octostache over the
//!   files the step lists.
//! - [`structured`]: "Structured Configuration Variables": values in JSON and
//!   YAML files replaced by variables named like their key paths.
//! - `files`: what those share: target-file globs and atomic rewrites.

pub mod extract;
mod files;
pub mod install_dir;
pub mod structured;
pub mod substitute;
mod yaml;

pub use extract::{extract, ArchiveFormat, ExtractError, ExtractLimits, ExtractReport};
pub use files::PatternError;
pub use install_dir::{copy_tree, install_dir, purge_dir, InstallError};
pub use structured::{replace_structured, StructuredChange, StructuredError, StructuredOutcome};
pub use substitute::{substitute_files, SubstituteError, SubstitutedFile, Substitution};
