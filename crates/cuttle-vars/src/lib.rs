//! The variable language of Cuttle: Octostache-compatible templates
//! (`#{Name}`, filters, conditionals, iteration), the scoping rules that pick
//! each variable's value for a target, and masking of sensitive values.

pub mod filters;

use std::collections::HashMap;

/// Variables by name; names compare case-insensitively and keep the order in
/// which they were first defined (iteration order depends on it).
#[derive(Clone, Debug, Default)]
pub struct VariableDictionary {
    names: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl VariableDictionary {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let key = name.to_lowercase();
        match self.index.get(&key) {
            Some(&i) => self.names[i].1 = value.into(),
            None => {
                self.index.insert(key, self.names.len());
                self.names.push((name, value.into()));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.index.get(&name.to_lowercase()).map(|&i| self.names[i].1.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The result of rendering a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// `None` when the template evaluated to no value at all (the `null` filter).
    pub text: Option<String>,
    /// Tokens that could not be evaluated and were left in the output as written.
    pub unresolved: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VarsError {
    #[error("{0}")]
    Parse(String),
    #[error("An attempt to parse the variable symbol \"{name}\" appears to have resulted in a self referencing loop ({chain}). Ensure that recursive loops do not exist in the variable values.")]
    Cycle { name: String, chain: String },
}

/// Renders `template` against `variables`.
pub fn render(template: &str, variables: &VariableDictionary) -> Result<Rendered, VarsError> {
    // Placeholder until the evaluator lands: returns the template unchanged.
    let _ = variables;
    Ok(Rendered { text: Some(template.to_owned()), unresolved: vec![] })
}
