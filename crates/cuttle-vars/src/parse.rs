//! The template parser: Octostache's grammar as a backtracking
//! recursive-descent parser over byte offsets (always on char boundaries).
//!
//! Octostache's Sprache grammar tries the alternatives for each token in
//! order (`if`/`unless`, `calc`, `each`, substitution, text) and backtracks:
//! an `#{if X}` that never finds its `#{/if}` is re-read as a substitution of
//! a variable named `if X`. We keep those semantics, with three guards the
//! original lacks:
//!
//! - failed block attempts are memoised by position, so re-reading after a
//!   failure cannot go exponential;
//! - nesting is limited to [`MAX_NESTING`] levels, so deep input cannot
//!   overflow the stack;
//! - the total work is bounded by a budget proportional to the input, so a
//!   pathological template fails with an error instead of running for hours.

use std::collections::{HashMap, HashSet};

use crate::calc::{CalcExpr, CalcOp};
use crate::template::{
    Condition, Conditional, Expr, FilterCall, Repetition, Step, Symbol, Template, Token,
};

/// How deeply blocks, substitutions and indexers may nest in one template.
pub(crate) const MAX_NESTING: usize = 128;

/// Parses a whole template. With `halt_on_error` false, text that cannot be
/// parsed as a token (a stray `#{`, an unmatched `#{/if}`) is kept as text
/// and parsing carries on after it. The error is a human-readable message.
pub(crate) fn parse_template(src: &str, halt_on_error: bool) -> Result<Template, String> {
    let mut parser = Parser::new(src, false);
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        let (mut body, end) = parser.body(pos, Body::Template);
        if let Some(abort) = parser.abort {
            return Err(parser.describe_abort(abort));
        }
        tokens.append(&mut body);
        if end >= src.len() {
            break;
        }
        if halt_on_error {
            return Err(format!(
                "Invalid template: the token at {} could not be parsed",
                parser.location(end)
            ));
        }
        // Text stops only before a `#{` that no token parser accepts: keep
        // those two characters as text and carry on after them.
        push_text(&mut tokens, "#{");
        pos = end + 2;
    }
    Ok(Template { tokens })
}

/// Parses a variable's name into a path. Indexers in names are literal text;
/// `None` when the name is not a complete path.
pub(crate) fn parse_path(name: &str) -> Option<Symbol> {
    let mut parser = Parser::new(name, true);
    let (symbol, end) = parser.symbol(0)?;
    (parser.abort.is_none() && end == name.len()).then_some(symbol)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Top level, `#{else}` branches and `#{each}` bodies.
    Template,
    /// An `#{if}` or `#{elseif}` branch: stops at `#{else}` and `#{elseif `.
    If,
    /// An `#{unless}` branch: stops at `#{else}`.
    Unless,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Conditional,
    Repetition,
    Calculation,
    Substitution,
}

#[derive(Clone, Copy)]
enum Abort {
    TooDeep(usize),
    TooComplex,
}

struct Parser<'a> {
    src: &'a str,
    /// Names of variables: indexers are always literal there.
    literal_indexers: bool,
    depth: usize,
    budget: u64,
    abort: Option<Abort>,
    failed: HashSet<(Kind, usize)>,
    string_indexers: HashMap<usize, Option<(String, usize)>>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, literal_indexers: bool) -> Self {
        Parser {
            src,
            literal_indexers,
            depth: 0,
            budget: 64 * src.len() as u64 + 1_000_000,
            abort: None,
            failed: HashSet::new(),
            string_indexers: HashMap::new(),
        }
    }

    fn describe_abort(&self, abort: Abort) -> String {
        match abort {
            Abort::TooDeep(pos) => format!(
                "Invalid template: tokens nest more than {MAX_NESTING} levels deep (at {})",
                self.location(pos)
            ),
            Abort::TooComplex => "Invalid template: too complex to parse".to_owned(),
        }
    }

    fn location(&self, pos: usize) -> String {
        let before = self.src.get(..pos).unwrap_or(self.src);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {column}")
    }

    // ---- low-level helpers -------------------------------------------------

    fn at(&self, pos: usize) -> Option<char> {
        self.src.get(pos..).and_then(|s| s.chars().next())
    }

    fn starts(&self, pos: usize, lit: &str) -> bool {
        self.src.get(pos..).is_some_and(|s| s.starts_with(lit))
    }

    fn starts_ignore_case(&self, pos: usize, word: &str) -> bool {
        self.src
            .get(pos..pos + word.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(word))
    }

    fn ws(&self, mut pos: usize) -> usize {
        while let Some(c) = self.at(pos).filter(|c| c.is_whitespace()) {
            pos += c.len_utf8();
        }
        pos
    }

    /// `#{` that is not `#{/`.
    fn ldelim(&self, pos: usize) -> bool {
        self.starts(pos, "#{") && !self.starts(pos, "#{/")
    }

    fn tick(&mut self, units: usize) -> bool {
        match self.budget.checked_sub(units as u64) {
            Some(rest) => {
                self.budget = rest;
                true
            }
            None => {
                self.abort.get_or_insert(Abort::TooComplex);
                false
            }
        }
    }

    /// Runs `f` one nesting level deeper, aborting the parse past the limit.
    fn nested<T>(&mut self, pos: usize, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.abort.is_some() {
            return None;
        }
        if self.depth >= MAX_NESTING {
            self.abort.get_or_insert(Abort::TooDeep(pos));
            return None;
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result.filter(|_| self.abort.is_none())
    }

    /// Memoises failures of a self-contained token parser at a position.
    fn memo<T>(
        &mut self,
        kind: Kind,
        pos: usize,
        f: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        if !self.ldelim(pos) || self.failed.contains(&(kind, pos)) {
            return None;
        }
        let result = self.nested(pos, f);
        if result.is_none() {
            self.failed.insert((kind, pos));
        }
        result
    }

    // ---- tokens ------------------------------------------------------------

    fn body(&mut self, mut pos: usize, body: Body) -> (Vec<Token>, usize) {
        let mut tokens = Vec::new();
        while let Some((token, end)) = self.token(pos, body) {
            match token {
                Token::Text(text) => push_text(&mut tokens, &text),
                other => tokens.push(other),
            }
            pos = end;
        }
        (tokens, pos)
    }

    fn token(&mut self, pos: usize, body: Body) -> Option<(Token, usize)> {
        if self.abort.is_some() || pos >= self.src.len() || !self.tick(1) {
            return None;
        }
        let stops_here = match body {
            Body::Template => false,
            Body::If => self.starts(pos, "#{else}") || self.is_elseif(pos),
            Body::Unless => self.starts(pos, "#{else}"),
        };
        if stops_here {
            return None;
        }
        self.block_token(pos).or_else(|| self.text(pos))
    }

    /// The token alternatives that start with `#{`, in Octostache's order.
    fn block_token(&mut self, pos: usize) -> Option<(Token, usize)> {
        if !self.ldelim(pos) {
            return None;
        }
        if let Some(found) = self.conditional(pos) {
            return Some(found);
        }
        if let Some((calc, end)) = self.calculation(pos) {
            return Some((Token::Calculation(calc), end));
        }
        if let Some(found) = self.repetition(pos) {
            return Some(found);
        }
        let (expr, end) = self.substitution(pos)?;
        Some((Token::Substitution(expr), end))
    }

    fn is_elseif(&self, pos: usize) -> bool {
        self.starts(pos, "#{elseif") && self.at(pos + 8).is_some_and(char::is_whitespace)
    }

    fn text(&mut self, pos: usize) -> Option<(Token, usize)> {
        let mut out = String::new();
        let mut p = pos;
        while let Some(rest) = self.src.get(p..).filter(|r| !r.is_empty()) {
            match rest.find('#') {
                None => {
                    out.push_str(rest);
                    p = self.src.len();
                }
                Some(k) if k > 0 => {
                    out.push_str(&rest[..k]);
                    p += k;
                }
                Some(_) => {
                    if rest.len() == 1 {
                        out.push('#');
                        p += 1;
                    } else if rest.starts_with("###{") {
                        // `##` before a token escapes nothing: it is one `#`.
                        out.push('#');
                        p += 2;
                    } else if rest.starts_with("##{") {
                        out.push_str("#{");
                        p += 3;
                    } else {
                        match rest[1..].chars().next() {
                            Some(c) if c != '{' => {
                                out.push('#');
                                out.push(c);
                                p += 1 + c.len_utf8();
                            }
                            _ => break,
                        }
                    }
                }
            }
        }
        if p == pos || !self.tick(p - pos) {
            return None;
        }
        Some((Token::Text(out), p))
    }

    fn substitution(&mut self, pos: usize) -> Option<(Expr, usize)> {
        self.memo(Kind::Substitution, pos, |s| {
            let p = s.ws(pos + 2);
            let (expr, p) = s.expression(p)?;
            let p = s.ws(p);
            (s.at(p) == Some('}')).then_some((expr, p + 1))
        })
    }

    fn conditional(&mut self, pos: usize) -> Option<(Token, usize)> {
        self.memo(Kind::Conditional, pos, |s| {
            let p = s.ws(pos + 2);
            let (is_if, p) = if s.starts_ignore_case(p, "if") {
                (true, p + 2)
            } else if s.starts_ignore_case(p, "unless") {
                (false, p + 6)
            } else {
                return None;
            };
            let after = s.ws(p);
            if after == p {
                return None;
            }
            let (condition, p) = s.condition(after)?;
            let p = s.ws(p);
            if s.at(p) != Some('}') {
                return None;
            }
            let (truthy, mut p) = s.body(p + 1, if is_if { Body::If } else { Body::Unless });
            let mut elseifs = Vec::new();
            while is_if && s.is_elseif(p) {
                let Some((clause, end)) = s.elseif(p) else {
                    break;
                };
                elseifs.push(clause);
                p = end;
            }
            let mut falsy = Vec::new();
            if s.starts(p, "#{else}") {
                let (tokens, end) = s.body(p + 7, Body::Template);
                falsy = tokens;
                p = end;
            }
            let close = if is_if { "#{/if}" } else { "#{/unless}" };
            if !s.starts(p, close) {
                return None;
            }
            // `#{elseif}` desugars to an `#{if}` nested in the false branch.
            for (condition, truthy) in elseifs.into_iter().rev() {
                let nested = Conditional {
                    condition,
                    truthy,
                    falsy,
                };
                falsy = vec![Token::Conditional(Box::new(nested))];
            }
            let (truthy, falsy) = if is_if {
                (truthy, falsy)
            } else {
                (falsy, truthy)
            };
            let conditional = Conditional {
                condition,
                truthy,
                falsy,
            };
            Some((Token::Conditional(Box::new(conditional)), p + close.len()))
        })
    }

    fn elseif(&mut self, pos: usize) -> Option<((Condition, Vec<Token>), usize)> {
        // `#{elseif` and exactly one whitespace character, then the condition.
        let ws = self.at(pos + 8)?;
        let (condition, p) = self.condition(pos + 8 + ws.len_utf8())?;
        let p = self.ws(p);
        if self.at(p) != Some('}') {
            return None;
        }
        let (truthy, p) = self.body(p + 1, Body::If);
        Some(((condition, truthy), p))
    }

    fn condition(&mut self, pos: usize) -> Option<(Condition, usize)> {
        let p = self.ws(pos);
        let left = self.expression(p);
        // symbol-or-chain == symbol-or-chain
        if let Some((left, e)) = &left {
            if let Some((equal, e)) = self.comparison(*e) {
                if let Some((right, e)) = self.expression(e) {
                    let c = Condition::CompareExpr {
                        left: left.clone(),
                        equal,
                        right,
                    };
                    return Some((c, self.ws(e)));
                }
            }
        }
        // "text" == symbol-or-chain
        if let Some((text, e)) = self.quoted(p) {
            if let Some((equal, e)) = self.comparison(e) {
                if let Some((left, e)) = self.expression(e) {
                    let c = Condition::CompareText {
                        left,
                        equal,
                        right: text,
                    };
                    return Some((c, self.ws(e)));
                }
            }
        }
        // symbol-or-chain == "text"
        if let Some((left, e)) = &left {
            if let Some((equal, e)) = self.comparison(*e) {
                if let Some((text, e)) = self.quoted(e) {
                    let c = Condition::CompareText {
                        left: left.clone(),
                        equal,
                        right: text,
                    };
                    return Some((c, e));
                }
            }
        }
        let (left, e) = left?;
        Some((Condition::Truthy(left), self.ws(e)))
    }

    /// `==` or `!=` with whitespace around; returns the position after it.
    fn comparison(&self, pos: usize) -> Option<(bool, usize)> {
        let p = self.ws(pos);
        let equal = if self.starts(p, "==") {
            true
        } else if self.starts(p, "!=") {
            false
        } else {
            return None;
        };
        Some((equal, self.ws(p + 2)))
    }

    /// `"text"` (no `"` or `#` inside) or `\"text\"`, with whitespace around.
    fn quoted(&mut self, pos: usize) -> Option<(String, usize)> {
        let p = self.ws(pos);
        let rest = self.src.get(p..)?;
        let (content, len) = if let Some(inner) = rest.strip_prefix("\\\"") {
            let end = inner.find("\\\"")?;
            (&inner[..end], end + 4)
        } else if let Some(inner) = rest.strip_prefix('"') {
            let end = inner.find(['"', '#'])?;
            if !inner[end..].starts_with('"') {
                return None;
            }
            (&inner[..end], end + 2)
        } else {
            return None;
        };
        if !self.tick(len) {
            return None;
        }
        Some((content.to_owned(), self.ws(p + len)))
    }

    fn repetition(&mut self, pos: usize) -> Option<(Token, usize)> {
        self.memo(Kind::Repetition, pos, |s| {
            let p = s.ws(pos + 2);
            if !s.starts_ignore_case(p, "each") {
                return None;
            }
            let after = s.ws(p + 4);
            if after == p + 4 {
                return None;
            }
            let (enumerator, p) = s.identifier(after, true)?;
            let p = s.ws(p);
            if !s.starts_ignore_case(p, "in") {
                return None;
            }
            let p = s.ws(p + 2);
            let (collection, p) = s.symbol(p)?;
            let p = s.ws(p);
            if s.at(p) != Some('}') {
                return None;
            }
            let (body, p) = s.body(p + 1, Body::Template);
            if !s.starts(p, "#{/each}") {
                return None;
            }
            let repetition = Repetition {
                enumerator,
                collection,
                body,
            };
            Some((Token::Repetition(Box::new(repetition)), p + 8))
        })
    }

    // ---- expressions ---------------------------------------------------------

    /// A filter chain (`Symbol | F opt | G`, symbol optional) or a symbol.
    fn expression(&mut self, pos: usize) -> Option<(Expr, usize)> {
        let symbol = self.symbol(pos);
        let (input, mut p) = match &symbol {
            Some((s, e)) => (s.clone(), self.ws(*e)),
            None => (Symbol::default(), pos),
        };
        let mut filters = Vec::new();
        while self.at(p) == Some('|') {
            let q = self.ws(p + 1);
            let Some((name, q)) = self.identifier(q, false) else {
                break;
            };
            let mut q = self.ws(q);
            let mut options = Vec::new();
            while let Some((option, end)) = self.option(q) {
                options.push(option);
                q = end;
            }
            filters.push(FilterCall { name, options });
            p = q;
        }
        if filters.is_empty() {
            let (input, end) = symbol?;
            return Some((Expr { input, filters }, end));
        }
        Some((Expr { input, filters }, p))
    }

    /// One filter option: a nested token, a bare word or quoted text.
    fn option(&mut self, pos: usize) -> Option<(Token, usize)> {
        if let Some(found) = self.block_token(pos) {
            return Some(found);
        }
        if self.abort.is_some() {
            return None;
        }
        let p = self.ws(pos);
        if let Some((word, e)) = self.identifier(p, false) {
            return Some((Token::Text(word), self.ws(e)));
        }
        let (text, e) = self.quoted(p)?;
        Some((Token::Text(text), e))
    }

    /// A name: letters, digits, `_ - : / ~ ( ) @` and (optionally) inner
    /// whitespace, stopping before whitespace that precedes `|`, `}` or the
    /// keywords `in`, `==`, `!=`. Returned trimmed.
    fn identifier(&mut self, pos: usize, allow_ws: bool) -> Option<(String, usize)> {
        let mut p = pos;
        while let Some(c) = self.at(p) {
            let ident =
                c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | '~' | '(' | ')' | '@');
            if !(ident || allow_ws && c.is_whitespace()) {
                break;
            }
            let next = p + c.len_utf8();
            if c.is_whitespace()
                && (self.starts(next, "|") || self.starts(next, "}") || self.keyword_follows(next))
            {
                break;
            }
            p = next;
        }
        if p == pos || !self.tick(p - pos) {
            return None;
        }
        Some((self.src[pos..p].trim().to_owned(), p))
    }

    /// `in`, `==` or `!=` at `pos`, followed by whitespace (case-sensitive,
    /// as in Octostache).
    fn keyword_follows(&self, pos: usize) -> bool {
        ["in", "==", "!="].iter().any(|kw| {
            self.starts(pos, kw) && self.at(pos + kw.len()).is_some_and(char::is_whitespace)
        })
    }

    pub(crate) fn symbol(&mut self, pos: usize) -> Option<(Symbol, usize)> {
        let (first, mut p) = self.identifier(pos, true)?;
        let mut steps = vec![Step::Ident(first)];
        loop {
            match self.at(p) {
                Some('.') => match self.identifier(p + 1, true) {
                    Some((name, end)) => {
                        steps.push(Step::Ident(name));
                        p = end;
                    }
                    None => break,
                },
                Some('[') => match self.indexer(p) {
                    Some((step, end)) => {
                        steps.push(step);
                        p = end;
                    }
                    None => break,
                },
                _ => break,
            }
        }
        Some((Symbol { steps, pos }, p))
    }

    /// `[#{Symbol}]`, or `[literal text]` which may hold balanced brackets.
    fn indexer(&mut self, pos: usize) -> Option<(Step, usize)> {
        if !self.literal_indexers {
            let p = self.ws(pos + 1);
            if let Some((expr, end)) = self.substitution(p) {
                let end = self.ws(end);
                if expr.filters.is_empty() && self.at(end) == Some(']') {
                    return Some((Step::SymbolIndex(expr.input), end + 1));
                }
            }
        }
        let (text, end) = self.string_indexer(pos)?;
        Some((Step::Index(text), end))
    }

    fn string_indexer(&mut self, pos: usize) -> Option<(String, usize)> {
        if let Some(known) = self.string_indexers.get(&pos) {
            return known.clone();
        }
        let result = self.nested(pos, |s| {
            // Leading whitespace is skipped; trailing whitespace is kept.
            let mut p = s.ws(pos + 1);
            let mut text = String::new();
            loop {
                match s.at(p)? {
                    ']' => return Some((text, p + 1)),
                    '[' => {
                        let (inner, end) = s.string_indexer(p)?;
                        text.push('[');
                        text.push_str(&inner);
                        text.push(']');
                        p = end;
                    }
                    _ => {
                        let rest = s.src.get(p..)?;
                        let run = rest.find(['[', ']']).unwrap_or(rest.len());
                        if !s.tick(run) {
                            return None;
                        }
                        text.push_str(&rest[..run]);
                        p += run;
                    }
                }
            }
        });
        self.string_indexers.insert(pos, result.clone());
        result
    }

    // ---- calc ----------------------------------------------------------------

    fn calculation(&mut self, pos: usize) -> Option<(CalcExpr, usize)> {
        self.memo(Kind::Calculation, pos, |s| {
            let p = s.ws(pos + 2);
            if !s.starts_ignore_case(p, "calc") {
                return None;
            }
            let after = s.ws(p + 4);
            if after == p + 4 {
                return None;
            }
            let (expr, p) = s.calc_sum(after)?;
            let p = s.ws(p);
            (s.at(p) == Some('}')).then_some((expr, p + 1))
        })
    }

    fn calc_sum(&mut self, pos: usize) -> Option<(CalcExpr, usize)> {
        self.calc_chain(
            pos,
            &[('+', CalcOp::Add), ('-', CalcOp::Subtract)],
            Self::calc_term,
        )
    }

    fn calc_term(&mut self, pos: usize) -> Option<(CalcExpr, usize)> {
        self.calc_chain(
            pos,
            &[('*', CalcOp::Multiply), ('/', CalcOp::Divide)],
            Self::calc_factor,
        )
    }

    /// Left-associative `operand (op operand)*`; an operator not followed by
    /// an operand ends the chain before the operator.
    fn calc_chain(
        &mut self,
        pos: usize,
        ops: &[(char, CalcOp)],
        operand: fn(&mut Self, usize) -> Option<(CalcExpr, usize)>,
    ) -> Option<(CalcExpr, usize)> {
        let (mut expr, mut p) = operand(self, pos)?;
        loop {
            let q = self.ws(p);
            let Some(&(_, op)) = ops.iter().find(|(c, _)| self.at(q) == Some(*c)) else {
                break;
            };
            let q = self.ws(q + 1);
            let Some((right, end)) = operand(self, q) else {
                break;
            };
            expr = CalcExpr::Operation(Box::new(expr), op, Box::new(right));
            p = end;
        }
        Some((expr, p))
    }

    fn calc_factor(&mut self, pos: usize) -> Option<(CalcExpr, usize)> {
        if self.at(pos) == Some('(') {
            return self.nested(pos, |s| {
                let (expr, p) = s.calc_sum(pos + 1)?;
                (s.at(p) == Some(')')).then_some((expr, p + 1))
            });
        }
        if let Some(found) = self.calc_number(pos) {
            return Some(found);
        }
        if self.at(pos) == Some('{') {
            // `{Var}` lets a name be followed by `-` or `/`, which would
            // otherwise be read as part of the name.
            let p = self.ws(pos + 1);
            let (symbol, p) = self.symbol(p)?;
            let p = self.ws(p);
            return (self.at(p) == Some('}')).then_some((CalcExpr::Variable(symbol), p + 1));
        }
        let p = self.ws(pos);
        let (symbol, p) = self.symbol(p)?;
        Some((CalcExpr::Variable(symbol), self.ws(p)))
    }

    fn calc_number(&self, pos: usize) -> Option<(CalcExpr, usize)> {
        let rest = self.src.get(pos..)?;
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let int = digits(rest);
        let mut len = int;
        if rest[len..].starts_with('.') {
            let frac = digits(&rest[len + 1..]);
            if frac == 0 {
                return None;
            }
            len += 1 + frac;
        }
        if len == 0 {
            return None;
        }
        let value = rest[..len].parse::<f64>().ok()?;
        Some((CalcExpr::Constant(value), pos + len))
    }
}

fn push_text(tokens: &mut Vec<Token>, text: &str) {
    if let Some(Token::Text(last)) = tokens.last_mut() {
        last.push_str(text);
    } else {
        tokens.push(Token::Text(text.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(src: &str) -> String {
        parse_template(src, true)
            .map(|t| t.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical("#{ Foo }"), "#{Foo}");
        assert_eq!(canonical("#{Foo|ToUpper}"), "#{Foo | ToUpper}");
        assert_eq!(canonical("#{ | AddHours 2}"), "#{ | AddHours \"2\"}");
        assert_eq!(canonical("#{A[#{B}].C}"), "#{A[#{B}].C}");
        assert_eq!(
            canonical("#{P[containers[0].c].R}"),
            "#{P[containers[0].c].R}"
        );
        assert_eq!(canonical("##{x} ###{y}"), "##{x} ##{y}");
        assert_eq!(canonical("#{calc 3*(2+2)}"), "#{3*2+2}");
    }

    #[test]
    fn failures() {
        assert!(parse_template("#{Foo", true).is_err());
        assert!(parse_template("#{Fo[o}", true).is_err());
        assert!(parse_template("#{each a in Action}", true).is_err());
        assert!(parse_template("#{}", true).is_err());
        assert!(parse_template("x#{/if}", true).is_err());
        assert!(parse_template("x#{/if}", false).is_ok());
    }

    #[test]
    fn unterminated_if_is_a_variable_named_if() {
        assert_eq!(canonical("#{if X}abc"), "#{if X}abc");
        let t = parse_template("#{if X}abc", true).unwrap();
        assert!(matches!(&t.tokens[0], Token::Substitution(e) if e.input.to_string() == "if X"));
    }

    #[test]
    fn paths() {
        let p = parse_path("Octopus.Action[Package A].Name").unwrap();
        assert_eq!(p.steps.len(), 4);
        assert!(parse_path("").is_none());
        assert!(parse_path("a+b").is_none());
        assert_eq!(parse_path("A[#{x}]").unwrap().to_string(), "A[#{x}]");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = "#{if a}".repeat(10_000) + &"#{/if}".repeat(10_000);
        assert!(parse_template(&src, true).unwrap_err().contains("nest"));
        let src = "[".repeat(10_000);
        assert!(parse_path(&format!("a{src}")).is_none());
    }
}
