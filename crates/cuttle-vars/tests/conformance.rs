//! Runs every Octostache conformance case (a copy of the shared conformance
//! vectors in `tests/data`, kept identical to `../shared/conformance`) against
//! the evaluator and checks the failures against `known-deviations.txt`:
//! an unlisted failure fails the test, and so does a listed case that now
//! passes (the list can only shrink), as does a pass rate under 97%.

use std::collections::{BTreeMap, BTreeSet};

use cuttle_vars::{evaluate_truthy, parse, render_with, RenderOptions, VariableDictionary};
use serde_json::Value;

/// The repository's copy, so the tests run from any clone.
const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/octostache-cases.json"
);
/// The shared original, beside the repository where it is checked out.
const SHARED_CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/octostache-cases.json"
);

#[test]
fn the_copy_matches_the_shared_cases() {
    match std::fs::read(SHARED_CASES) {
        Ok(shared) => assert!(
            std::fs::read(CASES).expect("the repository's copy") == shared,
            "tests/data/octostache-cases.json differs from {SHARED_CASES}: copy it again"
        ),
        Err(_) => {
            println!("skipped: no shared conformance cases beside the repository to compare with")
        }
    }
}
const DEVIATIONS: &str = include_str!("known-deviations.txt");
const MIN_PASS_RATE: f64 = 0.97;

/// Runs one case; `Err` says how it failed.
fn run_case(case: &Value) -> Result<(), String> {
    let template = case["template"].as_str().ok_or("case has no template")?;
    let halt_on_error = case["halt_on_error"].as_bool().unwrap_or(true);
    let mut variables = VariableDictionary::new();
    if let Some(vars) = case["variables"].as_object() {
        for (name, value) in vars {
            variables.set(name.clone(), value.as_str().unwrap_or_default());
        }
    }

    match case["mode"].as_str() {
        Some("parse") => {
            let parses = parse(template, halt_on_error).is_ok();
            return check_bool("parses", parses, &case["expected"]);
        }
        Some("truthy") => {
            let truthy =
                evaluate_truthy(template, &variables).map_err(|e| format!("error: {e}"))?;
            return check_bool("truthy", truthy, &case["expected"]);
        }
        _ => {}
    }

    let options = RenderOptions {
        halt_on_error,
        ..RenderOptions::default()
    };
    let result = render_with(template, &variables, &options);
    if let Some(message) = case["throws"].as_str() {
        return match result {
            Err(e) if e.to_string() == message => Ok(()),
            Err(e) => Err(format!("threw {e:?}, expected {message:?}")),
            Ok(r) => Err(format!("rendered {:?}, expected to throw", r.text)),
        };
    }
    let rendered = result.map_err(|e| format!("error: {e}"))?;

    let actual = rendered
        .text
        .as_deref()
        .map(|text| match case["compare"].as_str() {
            Some("trim") => text.trim().to_owned(),
            Some("ignore-double-quotes") => text.replace('"', ""),
            _ => text.to_owned(),
        });
    let trim = case["compare"].as_str() == Some("trim");
    let expected: Vec<Option<String>> = match case["expected_one_of"].as_array() {
        Some(options) => options
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        None => vec![case["expected"].as_str().map(|s| {
            if trim {
                s.trim().to_owned()
            } else {
                s.to_owned()
            }
        })],
    };
    if !expected.contains(&actual) {
        return Err(format!("rendered {actual:?}, expected {:?}", expected));
    }

    let diagnostic = rendered.diagnostic();
    match &case["error"] {
        Value::String(message) if diagnostic.as_deref() != Some(message.as_str()) => {
            Err(format!("diagnostic {diagnostic:?}, expected {message:?}"))
        }
        Value::Bool(true) if diagnostic.is_none() => Err("no diagnostic, expected one".into()),
        Value::Bool(false) if diagnostic.is_some() => {
            Err(format!("unexpected diagnostic {diagnostic:?}"))
        }
        _ => Ok(()),
    }
}

fn check_bool(what: &str, actual: bool, expected: &Value) -> Result<(), String> {
    match expected.as_bool() {
        Some(e) if e == actual => Ok(()),
        Some(e) => Err(format!("{what} = {actual}, expected {e}")),
        None => Err(format!("expected value {expected} is not a boolean")),
    }
}

fn known_deviations() -> BTreeMap<String, String> {
    DEVIATIONS
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('\t') {
            Some((id, reason)) => (id.trim().to_owned(), reason.trim().to_owned()),
            None => (l.trim().to_owned(), String::new()),
        })
        .collect()
}

#[test]
fn octostache_conformance() {
    let text = std::fs::read_to_string(CASES).unwrap_or_else(|e| panic!("reading {CASES}: {e}"));
    let cases: Vec<Value> = serde_json::from_str(&text).expect("cases are a JSON array");
    assert!(!cases.is_empty(), "no cases loaded");
    let deviations = known_deviations();

    let mut per_area: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap_or("?").to_owned();
        let area = case["area"].as_str().unwrap_or("?").to_owned();
        seen.insert(id.clone());
        // A panic is a failure of that case, not of the whole run.
        let outcome = std::panic::catch_unwind(|| run_case(case))
            .unwrap_or_else(|_| Err("panicked".to_owned()));
        let entry = per_area.entry(area).or_default();
        entry.1 += 1;
        match outcome {
            Ok(()) => entry.0 += 1,
            Err(why) => {
                failed.insert(id, why);
            }
        }
    }

    let passed: usize = per_area.values().map(|(p, _)| p).sum();
    println!("Octostache conformance: {passed}/{} passed", cases.len());
    for (area, (p, t)) in &per_area {
        println!("  {area:<20} {p:>4}/{t:<4}");
    }

    let mut problems = Vec::new();
    for (id, why) in &failed {
        if !deviations.contains_key(id) {
            problems.push(format!("FAILED (not a known deviation) {id}: {why}"));
        }
    }
    for (id, reason) in &deviations {
        if !seen.contains(id) {
            problems.push(format!("known deviation {id} is not a case id"));
        } else if !failed.contains_key(id) {
            problems.push(format!(
                "known deviation {id} now passes ({reason}): remove it from the list"
            ));
        }
    }
    let rate = passed as f64 / cases.len() as f64;
    if rate < MIN_PASS_RATE {
        problems.push(format!(
            "pass rate {:.1}% is under {:.0}%",
            rate * 100.0,
            MIN_PASS_RATE * 100.0
        ));
    }
    for p in &problems {
        println!("{p}");
    }
    assert!(
        problems.is_empty(),
        "{} conformance problems (see output)",
        problems.len()
    );
}
