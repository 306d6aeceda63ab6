//! The variables as a tree of paths, as Octostache binds them:
//! `Octopus.Action[Package A].Name` is the node `Name` under the index
//! `Package A` under `Action` under `Octopus`. Lookups walk it step by step,
//! and `#{each}` iterates a node's indexes in definition order.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::parse::{parse_path, parse_template};
use crate::template::{Step, Template};

pub(crate) const ROOT: usize = 0;

#[derive(Debug)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
    /// Total length of all values, to size evaluation budgets.
    value_bytes: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// The value; an index node starts out holding its index text.
    item: Option<String>,
    /// `.Name` steps, by lower-cased name.
    children: HashMap<String, usize>,
    /// `[index]` steps in definition order, and by lower-cased index.
    indexes: Vec<usize>,
    index_keys: HashMap<String, usize>,
    /// The item parsed as a template (`None` if it does not parse).
    parsed: OnceLock<Option<Arc<Template>>>,
}

impl Tree {
    /// Binds every name that reads as a path; others (`a+b`, empty) cannot
    /// be referenced from a template and are left out.
    pub fn build<'a>(variables: impl Iterator<Item = (&'a str, &'a str)>) -> Tree {
        let mut tree = Tree {
            nodes: vec![Node::default()],
            value_bytes: 0,
        };
        'names: for (name, value) in variables {
            let Some(path) = parse_path(name) else {
                continue;
            };
            let mut node = ROOT;
            for step in &path.steps {
                node = match step {
                    Step::Ident(name) => tree.child_or_insert(node, name),
                    Step::Index(index) => tree.index_or_insert(node, index),
                    // Names are parsed with literal indexers only.
                    Step::SymbolIndex(_) => continue 'names,
                };
            }
            tree.nodes[node].item = Some(value.to_owned());
            tree.value_bytes += value.len();
        }
        tree
    }

    fn child_or_insert(&mut self, node: usize, name: &str) -> usize {
        let key = name.to_lowercase();
        if let Some(&child) = self.nodes[node].children.get(&key) {
            return child;
        }
        let child = self.push(None);
        self.nodes[node].children.insert(key, child);
        child
    }

    fn index_or_insert(&mut self, node: usize, index: &str) -> usize {
        let key = index.to_lowercase();
        if let Some(&child) = self.nodes[node].index_keys.get(&key) {
            return child;
        }
        let child = self.push(Some(index.to_owned()));
        self.nodes[node].index_keys.insert(key, child);
        self.nodes[node].indexes.push(child);
        child
    }

    fn push(&mut self, item: Option<String>) -> usize {
        self.nodes.push(Node {
            item,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    pub fn value_bytes(&self) -> usize {
        self.value_bytes
    }

    pub fn item(&self, node: usize) -> Option<&str> {
        self.nodes.get(node).and_then(|n| n.item.as_deref())
    }

    pub fn child(&self, node: usize, name: &str) -> Option<usize> {
        self.nodes
            .get(node)?
            .children
            .get(&name.to_lowercase())
            .copied()
    }

    pub fn index(&self, node: usize, index: &str) -> Option<usize> {
        self.nodes
            .get(node)?
            .index_keys
            .get(&index.to_lowercase())
            .copied()
    }

    pub fn indexes(&self, node: usize) -> &[usize] {
        self.nodes.get(node).map_or(&[], |n| n.indexes.as_slice())
    }

    /// The node's value parsed as a template, parsed once per tree.
    pub fn parsed(&self, node: usize) -> Option<Arc<Template>> {
        let n = self.nodes.get(node)?;
        n.parsed
            .get_or_init(|| {
                n.item
                    .as_deref()
                    .and_then(|item| parse_template(item, true).ok())
                    .map(Arc::new)
            })
            .clone()
    }
}
