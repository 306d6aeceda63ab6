//! The evaluator: walks a parsed template against the variable tree.
//!
//! # Lookups
//!
//! A path is walked step by step from the innermost scope (an `#{each}`
//! loop's own names) outwards to the dictionary. A step that is not a
//! defined name may still be read from the value so far as JSON. A value
//! found is itself a template, evaluated in the scope where it was found.
//!
//! # Safety
//!
//! Paths being resolved are kept on a stack: meeting one again is a cycle
//! (the Octostache error naming the chain). Nesting of blocks and variable
//! references is limited ([`Limits::max_depth`]) so no input overflows the
//! stack; every buffer is capped ([`Limits::max_output`]) and the total work
//! is budgeted ([`Limits::max_steps`]), so values that expand exponentially
//! end with an error instead of exhausting memory or time.

use std::sync::Arc;

use crate::filters::{self, FilterError};
use crate::json::{self, Member};
use crate::parse::parse_template;
use crate::template::{Condition, Conditional, Expr, Repetition, Step, Symbol, Template, Token};
use crate::tree::{Tree, ROOT};
use crate::truthy::is_truthy;
use crate::VarsError;

type Result<T> = std::result::Result<T, VarsError>;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest text any one buffer (the output, a value, a filter's result)
    /// may grow to, in bytes.
    pub max_output: usize,
    /// Budget of evaluation steps (tokens, lookups, loop iterations).
    pub max_steps: u64,
    /// Deepest nesting of blocks, filter options and variable references.
    pub max_depth: usize,
}

pub(crate) struct Outcome {
    pub text: String,
    /// Distinct, in order of first occurrence.
    pub missing: Vec<String>,
    /// A `null` filter was evaluated: the whole result is "no value".
    pub null: bool,
}

pub(crate) fn evaluate(template: &Template, tree: &Tree, limits: Limits) -> Result<Outcome> {
    let mut evaluator = Evaluator {
        tree,
        limits,
        steps: 0,
        depth: 0,
        stack: Vec::new(),
    };
    let mut out = String::new();
    let mut sink = Sink::default();
    evaluator.eval_tokens(&template.tokens, &Scope::Root, &mut out, &mut sink)?;
    let mut missing: Vec<String> = Vec::new();
    for token in sink.missing {
        if !missing.contains(&token) {
            missing.push(token);
        }
    }
    Ok(Outcome {
        text: out,
        missing,
        null: sink.null,
    })
}

/// What one evaluation reports besides its text. A variable's value is
/// evaluated with its own sink: its unresolved tokens are passed up by the
/// caller, its `null` filters are not (as in Octostache).
#[derive(Default)]
struct Sink {
    missing: Vec<String>,
    null: bool,
}

/// Where a walk stands.
#[derive(Clone, Debug)]
enum Binding {
    /// A node of the dictionary's tree.
    Node(usize),
    /// A value with no children: JSON member, list item, evaluated text.
    Text(String),
    /// A JSON object entry being iterated: the key, with `.Key`/`.Value`.
    Entry { key: String, value: String },
    /// A loop scope's own names: the scope itself, then
    /// `Octopus`, `Octopus.Template`, `Octopus.Template.Each`.
    Special(u8),
}

const LOCALS: u8 = 0;
const OCTOPUS: u8 = 1;
const TEMPLATE: u8 = 2;
const EACH: u8 = 3;

enum Scope<'s> {
    Root,
    Loop {
        enumerator: &'s str,
        item: Binding,
        index: usize,
        count: usize,
        parent: &'s Scope<'s>,
    },
}

/// A path step with symbol indexers already looked up; `Index(None)` is an
/// indexer whose symbol did not resolve.
enum Resolved<'a> {
    Ident(&'a str),
    Index(Option<String>),
}

enum Walk {
    Found(Binding),
    /// Stop: an indexer's symbol was undefined (not retried in outer scopes).
    NotFound,
    /// Not in this scope: try the enclosing one.
    Delegate,
}

struct Resolution {
    binding: Option<Binding>,
    missing: Vec<String>,
}

impl Resolution {
    fn none() -> Self {
        Resolution {
            binding: None,
            missing: Vec::new(),
        }
    }
}

struct Evaluator<'t> {
    tree: &'t Tree,
    limits: Limits,
    steps: u64,
    depth: usize,
    /// References being resolved, outermost first: (identity, as written).
    stack: Vec<((String, usize), String)>,
}

impl<'t> Evaluator<'t> {
    fn tick(&mut self) -> Result<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(VarsError::TooComplex {
                limit: self.limits.max_steps,
            });
        }
        Ok(())
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= self.limits.max_depth {
            return Err(VarsError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn check_size(&self, len: usize) -> Result<()> {
        if len > self.limits.max_output {
            return Err(VarsError::TooLarge {
                limit: self.limits.max_output,
            });
        }
        Ok(())
    }

    fn write(&self, out: &mut String, text: &str) -> Result<()> {
        self.check_size(out.len() + text.len())?;
        out.push_str(text);
        Ok(())
    }

    // ---- tokens --------------------------------------------------------------

    fn eval_tokens(
        &mut self,
        tokens: &[Token],
        scope: &Scope,
        out: &mut String,
        sink: &mut Sink,
    ) -> Result<()> {
        tokens
            .iter()
            .try_for_each(|t| self.eval_token(t, scope, out, sink))
    }

    fn eval_token(
        &mut self,
        token: &Token,
        scope: &Scope,
        out: &mut String,
        sink: &mut Sink,
    ) -> Result<()> {
        self.tick()?;
        match token {
            Token::Text(text) => self.write(out, text),
            Token::Substitution(expr) => match self.calculate(expr, scope, sink)? {
                Some(value) => self.write(out, &value),
                None => {
                    let echo = format!("#{{{expr}}}");
                    if expr.ends_with_null_filter() {
                        sink.null = true;
                    } else {
                        sink.missing.push(echo.clone());
                    }
                    self.write(out, &echo)
                }
            },
            Token::Conditional(c) => {
                self.nested(|s| s.eval_conditional(c, token, scope, out, sink))
            }
            Token::Repetition(r) => self.nested(|s| s.eval_repetition(r, scope, out, sink)),
            Token::Calculation(calc) => {
                let value = self.nested(|s| {
                    calc.evaluate(&mut |symbol| s.resolve_optional(symbol, scope, sink))
                })?;
                match value {
                    Some(v) => self.write(out, &crate::calc::format_number(v)),
                    None => {
                        // Octostache echoes without reporting; reporting it
                        // tells the user which calc did not evaluate.
                        let echo = format!("#{{{calc}}}");
                        sink.missing.push(echo.clone());
                        self.write(out, &echo)
                    }
                }
            }
        }
    }

    fn eval_conditional(
        &mut self,
        c: &Conditional,
        token: &Token,
        scope: &Scope,
        out: &mut String,
        sink: &mut Sink,
    ) -> Result<()> {
        // A side that is a filter chain which fails echoes the whole block.
        let Some(left) = self.operand(c.condition.left(), scope, sink)? else {
            sink.missing.push(c.condition.left().to_string());
            return self.write(out, &token.to_string());
        };
        let truthy = match &c.condition {
            Condition::Truthy(_) => is_truthy(&left),
            Condition::CompareText { equal, right, .. } => (left == *right) == *equal,
            Condition::CompareExpr { equal, right, .. } => {
                let Some(right_value) = self.operand(right, scope, sink)? else {
                    sink.missing.push(right.to_string());
                    return self.write(out, &token.to_string());
                };
                (left == right_value) == *equal
            }
        };
        let branch = if truthy { &c.truthy } else { &c.falsy };
        self.eval_tokens(branch, scope, out, sink)
    }

    /// A side of a condition: a plain symbol is its value, or empty when
    /// undefined; a filter chain may fail (`None`).
    fn operand(&mut self, expr: &Expr, scope: &Scope, sink: &mut Sink) -> Result<Option<String>> {
        if expr.filters.is_empty() {
            return Ok(Some(
                self.resolve_optional(&expr.input, scope, sink)?
                    .unwrap_or_default(),
            ));
        }
        self.calculate(expr, scope, sink)
    }

    fn eval_repetition(
        &mut self,
        r: &Repetition,
        scope: &Scope,
        out: &mut String,
        sink: &mut Sink,
    ) -> Result<()> {
        let items = self.resolve_all(&r.collection, scope, sink)?;
        let count = items.len();
        for (index, item) in items.into_iter().enumerate() {
            self.tick()?;
            let inner = Scope::Loop {
                enumerator: &r.enumerator,
                item,
                index,
                count,
                parent: scope,
            };
            self.eval_tokens(&r.body, &inner, out, sink)?;
        }
        Ok(())
    }

    /// The value of a symbol with its filters applied; `None` when the
    /// symbol is undefined with no filters, or the last filter failed.
    fn calculate(&mut self, expr: &Expr, scope: &Scope, sink: &mut Sink) -> Result<Option<String>> {
        let mut value = self.resolve_optional(&expr.input, scope, sink)?;
        for filter in &expr.filters {
            let mut args = Vec::with_capacity(filter.options.len());
            let mut args_len = 0usize;
            for option in &filter.options {
                let arg = self.option_text(option, scope, sink)?;
                // Each option is held to the budget as it is evaluated; so
                // are all of them together, before the next is made.
                args_len = args_len.saturating_add(arg.len());
                self.check_size(args_len)?;
                args.push(arg);
            }
            self.tick()?;
            // A failing filter passes "no value" down the chain, as in
            // Octostache; the token is echoed if the chain ends without one.
            // A result too large ends the evaluation: the filter stopped
            // building it at the budget.
            // Its work (regex matches) is paid from the same step budget.
            let mut budget = filters::Budget {
                max_output: self.limits.max_output,
                steps: self.limits.max_steps.saturating_sub(self.steps),
            };
            let result = filters::apply_within(&filter.name, value.as_deref(), &args, &mut budget);
            self.steps = self.limits.max_steps.saturating_sub(budget.steps);
            value = match result {
                Ok(v) => v,
                Err(FilterError::TooLarge { limit }) => return Err(VarsError::TooLarge { limit }),
                Err(FilterError::TooComplex) => {
                    return Err(VarsError::TooComplex {
                        limit: self.limits.max_steps,
                    })
                }
                Err(_) => None,
            };
        }
        Ok(value)
    }

    fn option_text(&mut self, option: &Token, scope: &Scope, sink: &mut Sink) -> Result<String> {
        if let Token::Text(text) = option {
            return Ok(text.clone());
        }
        let mut buffer = String::new();
        self.nested(|s| s.eval_token(option, scope, &mut buffer, sink))?;
        Ok(buffer)
    }

    // ---- lookups ---------------------------------------------------------------

    /// The text of a symbol's value, reporting its value's unresolved tokens.
    fn resolve_optional(
        &mut self,
        symbol: &Symbol,
        scope: &Scope,
        sink: &mut Sink,
    ) -> Result<Option<String>> {
        if symbol.steps.is_empty() {
            return Ok(None);
        }
        let resolution = self.resolve(symbol, scope)?;
        sink.missing.extend(resolution.missing);
        Ok(resolution
            .binding
            .and_then(|b| self.item(&b).map(str::to_owned)))
    }

    /// The items an `#{each}` iterates: a node's indexes, a JSON array's
    /// items or object's entries, or the comma-separated parts of a value.
    fn resolve_all(
        &mut self,
        symbol: &Symbol,
        scope: &Scope,
        sink: &mut Sink,
    ) -> Result<Vec<Binding>> {
        let resolution = self.resolve(symbol, scope)?;
        sink.missing.extend(resolution.missing);
        let Some(binding) = resolution.binding else {
            return Ok(Vec::new());
        };
        if let Binding::Node(node) = binding {
            let indexes = self.tree.indexes(node);
            if !indexes.is_empty() {
                return Ok(indexes.iter().map(|&i| Binding::Node(i)).collect());
            }
        }
        let Some(item) = self.item(&binding) else {
            return Ok(Vec::new());
        };
        if let Some(members) = json::members(item) {
            return Ok(members
                .into_iter()
                .map(|m| match m {
                    Member::Text(text) => Binding::Text(text),
                    Member::Entry { key, value } => Binding::Entry { key, value },
                })
                .collect());
        }
        Ok(item
            .split(',')
            .map(|part| Binding::Text(part.to_owned()))
            .collect())
    }

    fn resolve(&mut self, symbol: &Symbol, scope: &Scope) -> Result<Resolution> {
        let key = symbol.key();
        if self.stack.iter().any(|(k, _)| *k == key) {
            return Err(self.cycle_error(symbol));
        }
        self.tick()?;
        self.nested(|s| {
            s.stack.push((key, symbol.to_string()));
            let result = s.walk(symbol, scope);
            s.stack.pop();
            result
        })
    }

    /// Names the loop from the outermost reference to the first name that
    /// comes round again. Detection compares positions too (see
    /// [`Symbol::key`]) and may go a round further than that first repeat;
    /// the first repeat is the loop a user recognises (`A -> B -> C -> A`).
    fn cycle_error(&self, symbol: &Symbol) -> VarsError {
        let shown = symbol.to_string();
        let mut chain: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let entries = self
            .stack
            .iter()
            .map(|((path, _), shown)| (path.as_str(), shown.as_str()));
        let (path, _) = symbol.key();
        for (path, shown) in entries.chain(std::iter::once((path.as_str(), shown.as_str()))) {
            chain.push(shown);
            if !seen.insert(path) {
                let name = shown.to_owned();
                return VarsError::Cycle {
                    name,
                    chain: chain.join(" -> "),
                };
            }
        }
        VarsError::Cycle {
            name: shown.clone(),
            chain: chain.join(" -> "),
        }
    }

    fn walk(&mut self, symbol: &Symbol, scope: &Scope) -> Result<Resolution> {
        // Symbol indexers are looked up once, from the scope of the lookup.
        let mut steps = Vec::with_capacity(symbol.steps.len());
        for step in &symbol.steps {
            steps.push(match step {
                Step::Ident(name) => Resolved::Ident(name),
                Step::Index(index) => Resolved::Index(Some(index.clone())),
                Step::SymbolIndex(inner) => {
                    let index = self.resolve(inner, scope)?;
                    Resolved::Index(index.binding.and_then(|b| self.item(&b).map(str::to_owned)))
                }
            });
        }
        let mut current = scope;
        loop {
            match self.walk_in(&steps, current)? {
                Walk::Found(binding) => return self.finish(binding, current),
                Walk::NotFound => return Ok(Resolution::none()),
                Walk::Delegate => match current {
                    Scope::Loop { parent, .. } => current = parent,
                    Scope::Root => return Ok(Resolution::none()),
                },
            }
        }
    }

    fn walk_in(&mut self, steps: &[Resolved], scope: &Scope) -> Result<Walk> {
        let mut value = match scope {
            Scope::Root => Binding::Node(ROOT),
            Scope::Loop { .. } => Binding::Special(LOCALS),
        };
        for step in steps {
            let next = match step {
                Resolved::Ident(name) => match self.child(&value, name, scope) {
                    Some(child) => Some(child),
                    None => self.json_member(&value, name, scope)?,
                },
                Resolved::Index(None) => return Ok(Walk::NotFound),
                Resolved::Index(Some(index)) => match self.index(&value, index) {
                    Some(child) => Some(child),
                    None => self.json_member(&value, index, scope)?,
                },
            };
            match next {
                Some(next) => value = next,
                None => return Ok(Walk::Delegate),
            }
        }
        Ok(Walk::Found(value))
    }

    /// A found value is evaluated as a template in the scope it was found
    /// in; one that does not parse is used as it is.
    fn finish(&mut self, binding: Binding, scope: &Scope) -> Result<Resolution> {
        let Some(item) = self.item(&binding) else {
            return Ok(Resolution {
                binding: Some(binding),
                missing: Vec::new(),
            });
        };
        match self.evaluate_item(&binding, item, scope)? {
            Some((text, missing)) => Ok(Resolution {
                binding: Some(Binding::Text(text)),
                missing,
            }),
            None => Ok(Resolution {
                binding: Some(binding),
                missing: Vec::new(),
            }),
        }
    }

    /// Evaluates a value as a template; `None` if it does not parse.
    fn evaluate_item(
        &mut self,
        binding: &Binding,
        item: &str,
        scope: &Scope,
    ) -> Result<Option<(String, Vec<String>)>> {
        if !item.contains("#{") {
            return Ok(Some((item.to_owned(), Vec::new())));
        }
        let template = match binding {
            Binding::Node(node) => self.tree.parsed(*node),
            _ => parse_template(item, true).ok().map(Arc::new),
        };
        let Some(template) = template else {
            return Ok(None);
        };
        let mut sink = Sink::default();
        let mut out = String::new();
        self.eval_tokens(&template.tokens, scope, &mut out, &mut sink)?;
        Ok(Some((out, sink.missing)))
    }

    /// Reads `property` of a value that is a JSON object or array. The value
    /// is evaluated first; a cycle met doing so means "not found".
    fn json_member(
        &mut self,
        binding: &Binding,
        property: &str,
        scope: &Scope,
    ) -> Result<Option<Binding>> {
        let Some(item) = self.item(binding).filter(|i| !i.is_empty()) else {
            return Ok(None);
        };
        if property.is_empty() {
            return Ok(None);
        }
        let evaluated;
        let text = if item.contains("#{") {
            match self.evaluate_item(binding, item, scope) {
                Ok(Some((text, _))) => {
                    evaluated = text;
                    evaluated.as_str()
                }
                Ok(None) => item,
                Err(VarsError::Cycle { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            item
        };
        Ok(json::lookup(text, property).map(Binding::Text))
    }

    fn item<'b>(&self, binding: &'b Binding) -> Option<&'b str>
    where
        't: 'b,
    {
        match binding {
            Binding::Node(node) => self.tree.item(*node),
            Binding::Text(text) => Some(text),
            Binding::Entry { key, .. } => Some(key),
            Binding::Special(_) => None,
        }
    }

    fn child(&self, binding: &Binding, name: &str, scope: &Scope) -> Option<Binding> {
        let is = |expected: &str| name.eq_ignore_ascii_case(expected);
        match binding {
            Binding::Node(node) => self.tree.child(*node, name).map(Binding::Node),
            Binding::Text(_) => None,
            Binding::Entry { key, value } => {
                if is("key") {
                    Some(Binding::Text(key.clone()))
                } else if is("value") {
                    Some(Binding::Text(value.clone()))
                } else {
                    None
                }
            }
            Binding::Special(level) => {
                let Scope::Loop {
                    enumerator,
                    item,
                    index,
                    count,
                    ..
                } = scope
                else {
                    return None;
                };
                let flag = |b: bool| Binding::Text(if b { "True" } else { "False" }.to_owned());
                match *level {
                    LOCALS if name.to_lowercase() == enumerator.to_lowercase() => {
                        Some(item.clone())
                    }
                    LOCALS if is("octopus") => Some(Binding::Special(OCTOPUS)),
                    OCTOPUS if is("template") => Some(Binding::Special(TEMPLATE)),
                    TEMPLATE if is("each") => Some(Binding::Special(EACH)),
                    EACH if is("index") => Some(Binding::Text(index.to_string())),
                    EACH if is("first") => Some(flag(*index == 0)),
                    EACH if is("last") => Some(flag(*index + 1 == *count)),
                    _ => None,
                }
            }
        }
    }

    fn index(&self, binding: &Binding, index: &str) -> Option<Binding> {
        let Binding::Node(node) = binding else {
            return None;
        };
        // `[*]` picks the first indexed entry.
        if index == "*" {
            if let Some(&first) = self.tree.indexes(*node).first() {
                return Some(Binding::Node(first));
            }
        }
        self.tree.index(*node, index).map(Binding::Node)
    }
}

#[cfg(test)]
mod tests {
    use crate::{render, VariableDictionary};

    fn run(template: &str, pairs: &[(&str, &str)]) -> (Option<String>, Vec<String>) {
        let v: VariableDictionary = pairs.iter().copied().collect();
        let r = render(template, &v).expect("renders");
        (r.text, r.unresolved)
    }

    fn text(template: &str, pairs: &[(&str, &str)]) -> String {
        run(template, pairs).0.unwrap_or_else(|| "<null>".into())
    }

    #[test]
    fn calc_tolerates_spaces_and_reports_failures() {
        assert_eq!(text("#{calc 1 + 2 * {B}}", &[("B", "3")]), "7");
        assert_eq!(
            run("#{calc X*2}", &[]),
            (Some("#{X*2}".into()), vec!["#{X*2}".into()])
        );
    }

    #[test]
    fn a_null_filter_inside_a_value_is_text() {
        // As in Octostache: only a null filter in the template itself nulls the result.
        assert_eq!(text("a#{Foo}", &[("Foo", "#{ | null}")]), "a#{ | null}");
    }

    #[test]
    fn loops_shadow_and_see_outer_scopes() {
        let vars = [("L", "x,y"), ("a", "outer"), ("G", "#{a}")];
        // The loop variable shadows a global of the same name; a global's
        // value is evaluated in the global scope.
        assert_eq!(
            text("#{each a in L}#{a}:#{G} #{/each}#{a}", &vars),
            "x:outer y:outer outer"
        );
        let nested = "#{each a in L}#{each b in L}#{Octopus.Template.Each.Index}#{/each}#{Octopus.Template.Each.Last}#{/each}";
        assert_eq!(text(nested, &vars), "01False01True");
    }

    #[test]
    fn json_entries_and_wildcards() {
        let vars = [
            ("J", "{\"a\": {\"x\": 1}, \"b\": [true]}"),
            ("P[one].N", "1"),
            ("P[two].N", "2"),
        ];
        assert_eq!(
            text("#{each e in J}#{e.Key}=#{e.Value};#{/each}", &vars),
            "a={\"x\":1};b=[true];"
        );
        assert_eq!(text("#{J.b[0]} #{J[a][x]}", &vars), "True 1");
        assert_eq!(text("#{P[*].N}", &vars), "1");
        assert_eq!(text("#{each p in P}#{p}#{/each}", &vars), "onetwo");
    }

    #[test]
    fn conditions_with_failing_filters_echo_the_block() {
        let (out, missing) = run("#{if X | Nope}y#{else}n#{/if}", &[("X", "1")]);
        assert_eq!(out.as_deref(), Some("#{if X | Nope}y#{else}n#{/if}"));
        assert_eq!(missing, ["X | Nope"]);
        assert_eq!(text("#{unless X}y#{else}n#{/unless}", &[("X", "1")]), "n");
    }

    #[test]
    fn undefined_symbol_indexer_is_not_looked_up_outside() {
        let vars = [("A[]", "empty index"), ("A[x]", "x")];
        assert_eq!(text("#{A[#{I}]}", &vars), "#{A[#{I}]}");
        assert_eq!(
            text(
                "#{A[]}|#{A[#{I}]}",
                &[("A[]", "e"), ("A[x]", "x"), ("I", "x")]
            ),
            "e|x"
        );
    }
}
