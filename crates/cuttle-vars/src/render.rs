//! Rendering entry points: parse, evaluate, report.

use crate::eval::{self, Limits};
use crate::parse::parse_template;
use crate::template::Template;
use crate::truthy::is_truthy;
use crate::{VariableDictionary, VarsError};

/// Deepest nesting of blocks, filter options and variable references while
/// evaluating. Octostache has no limit but real variable sets stay far below.
const MAX_EVAL_DEPTH: usize = 200;
const MIN_OUTPUT_LIMIT: usize = 64 << 20;

/// The result of rendering a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// `None` when the template evaluated to no value at all (the `null` filter).
    pub text: Option<String>,
    /// Tokens that could not be evaluated and were left in the output as
    /// written (canonical form), distinct, in order of first occurrence.
    pub unresolved: Vec<String>,
    /// Why the template did not parse; `text` is then the template unchanged.
    pub parse_error: Option<String>,
}

impl Rendered {
    /// The diagnostic Octostache reports next to the output, if any: the
    /// parse error, or `The following tokens were unable to be evaluated:
    /// '#{A}', '#{B}'`.
    pub fn diagnostic(&self) -> Option<String> {
        if let Some(e) = &self.parse_error {
            return Some(e.clone());
        }
        if self.unresolved.is_empty() {
            return None;
        }
        let list: Vec<String> = self.unresolved.iter().map(|t| format!("'{t}'")).collect();
        Some(format!(
            "The following tokens were unable to be evaluated: {}",
            list.join(", ")
        ))
    }
}

/// How to render.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Strict parsing (the default): a template with any unparseable token is
    /// returned unchanged. Lenient: unparseable `#{` is kept as text and the
    /// rest is still evaluated.
    pub halt_on_error: bool,
    /// Largest output, or value on the way, in bytes. Default: the larger of
    /// 64 MiB and four times the template.
    pub max_output_bytes: Option<usize>,
    /// Budget of evaluation steps. Default: 1,000,000 plus 16 per byte of
    /// template and of variable values, which evaluation that does not
    /// expand exponentially does not reach.
    pub max_steps: Option<u64>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            halt_on_error: true,
            max_output_bytes: None,
            max_steps: None,
        }
    }
}

/// Renders `template` against `variables` with strict parsing.
///
/// A template that does not parse is not an error: like Octostache, it comes
/// back unchanged in `Ok`, with [`Rendered::parse_error`] set. `Err` means
/// evaluation itself failed: a reference cycle, or a size, work or depth
/// limit was hit.
pub fn render(template: &str, variables: &VariableDictionary) -> Result<Rendered, VarsError> {
    render_with(template, variables, &RenderOptions::default())
}

/// [`render`] with options.
pub fn render_with(
    template: &str,
    variables: &VariableDictionary,
    options: &RenderOptions,
) -> Result<Rendered, VarsError> {
    PreparedTemplate::new(template, options).render(variables)
}

/// A template parsed once, to render against many dictionaries: a deployment
/// renders the same file for every machine, and parsing is most of the work.
#[derive(Clone, Debug)]
pub struct PreparedTemplate {
    source: String,
    /// `None` when the text has no `#{` and renders to itself.
    parsed: Option<Result<Template, String>>,
    options: RenderOptions,
}

impl PreparedTemplate {
    pub fn new(template: &str, options: &RenderOptions) -> Self {
        let parsed = template
            .contains("#{")
            .then(|| parse_template(template, options.halt_on_error));
        PreparedTemplate {
            source: template.to_owned(),
            parsed,
            options: options.clone(),
        }
    }

    /// Renders as [`render_with`] would have.
    pub fn render(&self, variables: &VariableDictionary) -> Result<Rendered, VarsError> {
        let unchanged = |parse_error: Option<&String>| Rendered {
            text: Some(self.source.clone()),
            unresolved: Vec::new(),
            parse_error: parse_error.cloned(),
        };
        let parsed = match &self.parsed {
            None => return Ok(unchanged(None)),
            Some(Err(e)) => return Ok(unchanged(Some(e))),
            Some(Ok(parsed)) => parsed,
        };
        let tree = variables.tree();
        let input_bytes = (self.source.len() + tree.value_bytes()) as u64;
        let limits = Limits {
            max_output: self
                .options
                .max_output_bytes
                .unwrap_or(MIN_OUTPUT_LIMIT.max(self.source.len().saturating_mul(4))),
            max_steps: self
                .options
                .max_steps
                .unwrap_or(1_000_000 + 16 * input_bytes),
            max_depth: MAX_EVAL_DEPTH,
        };
        let outcome = eval::evaluate(parsed, &tree, limits)?;
        Ok(Rendered {
            text: (!outcome.null).then_some(outcome.text),
            unresolved: outcome.missing,
            parse_error: None,
        })
    }
}

/// Parses a template without evaluating it (`Err(VarsError::Parse)` with a
/// message naming the position when it does not parse).
pub fn parse(template: &str, halt_on_error: bool) -> Result<Template, VarsError> {
    parse_template(template, halt_on_error).map_err(VarsError::Parse)
}

/// Evaluates `expression_template` (such as `#{if Octopus.Action[A].Status
/// == "Success"}true#{/if}` or `#{RunThis}`) and tests the result: true only
/// when it rendered without unresolved tokens or parse errors, has a value
/// and that value is truthy ([`is_truthy`]).
pub fn evaluate_truthy(
    expression_template: &str,
    variables: &VariableDictionary,
) -> Result<bool, VarsError> {
    let rendered = render(expression_template, variables)?;
    Ok(rendered.diagnostic().is_none() && rendered.text.as_deref().is_some_and(is_truthy))
}
