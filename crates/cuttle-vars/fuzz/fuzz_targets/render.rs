//! Renders a fuzzed template against fuzzed variables.
//!
//! Input layout (lossy UTF-8): the template, then optionally a NUL byte and
//! `name=value` lines that become the variables. Keeping it plain text lets
//! seeds be written by hand and crashes be read without a decoder.
//!
//! Property: no panic, no hang; plus invariants that hold whatever the
//! evaluator does with tokens (see the conformance README's semantics).

#![no_main]

use cuttle_vars::{render, VariableDictionary};
use libfuzzer_sys::fuzz_target;

/// Enough variables for nesting, cycles and iteration; more only slows runs.
const MAX_VARIABLES: usize = 32;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (template, rest) = input.split_once('\0').unwrap_or((&input, ""));
    let mut variables = VariableDictionary::new();
    for line in rest.lines().take(MAX_VARIABLES) {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        variables.set(name, value);
    }

    let rendered = render(template, &variables);
    let strict = cuttle_vars::parse(template, true);
    let lenient = cuttle_vars::parse(template, false);

    // Without `#{` there is no token and no escape (`##` is only an escape
    // before `{`), so the text comes back exactly as written.
    if !template.contains("#{") {
        let r = rendered.as_ref().expect("a template without tokens failed");
        assert_eq!(r.text.as_deref(), Some(template));
        assert!(r.unresolved.is_empty() && r.parse_error.is_none());
    }
    if let Ok(r) = &rendered {
        // A template that does not parse comes back unchanged.
        if r.parse_error.is_some() {
            assert_eq!(r.text.as_deref(), Some(template));
            assert!(r.unresolved.is_empty());
        }
        // `render` parses strictly, as `parse(_, true)` does.
        if template.contains("#{") {
            assert_eq!(r.parse_error.is_none(), strict.is_ok());
        }
        // Only the `null` filter yields no value, and it has to be written somewhere.
        if r.text.is_none() {
            assert!(input.to_ascii_lowercase().contains("null"));
        }
    }
    // Lenient parsing only differs where strict parsing gives up.
    if let Ok(strict) = &strict {
        assert_eq!(Some(strict), lenient.as_ref().ok());
    }
});
