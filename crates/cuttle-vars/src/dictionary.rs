//! The variables a template is evaluated against.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::tree::Tree;

/// Variables by name; names compare case-insensitively and keep the order in
/// which they were first defined (iteration order depends on it).
#[derive(Clone, Debug, Default)]
pub struct VariableDictionary {
    names: Vec<(String, String)>,
    index: HashMap<String, usize>,
    /// The names read as paths, built on first use and dropped on change, so
    /// rendering many templates against one dictionary parses names (and
    /// each value's template) once.
    tree: OnceLock<Arc<Tree>>,
}

impl VariableDictionary {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.tree = OnceLock::new();
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
        self.index
            .get(&name.to_lowercase())
            .and_then(|&i| self.names.get(i))
            .map(|(_, v)| v.as_str())
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

    pub(crate) fn tree(&self) -> Arc<Tree> {
        self.tree
            .get_or_init(|| Arc::new(Tree::build(self.iter())))
            .clone()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for VariableDictionary {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut d = VariableDictionary::new();
        for (n, v) in iter {
            d.set(n, v);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::VariableDictionary;
    use crate::render;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn shareable_between_threads() {
        assert_send_sync::<VariableDictionary>();
        assert_send_sync::<crate::Template>();
    }

    #[test]
    fn changes_are_seen_by_later_renders() {
        let mut v = VariableDictionary::new();
        v.set("Foo", "one");
        assert_eq!(render("#{foo}", &v).unwrap().text.as_deref(), Some("one"));
        v.set("FOO", "two");
        assert_eq!(render("#{foo}", &v).unwrap().text.as_deref(), Some("two"));
        assert_eq!(v.len(), 1);
        assert_eq!(v.iter().next(), Some(("Foo", "two")));
    }
}
