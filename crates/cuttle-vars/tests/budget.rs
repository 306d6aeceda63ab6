//! Filters that multiply their input (a regex replacement that copies the
//! text before each match, an indent per line, escapes) stop at the output
//! budget while they build their result, so memory stays bounded by the
//! budget rather than by what the template asks for.
//!
//! This binary counts every allocation and refuses any beyond 1 GiB, so a
//! regression fails here instead of exhausting the machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use cuttle_vars::{render, render_with, RenderOptions, VariableDictionary, VarsError};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
const CAP: usize = 1 << 30;

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !reserve(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > layout.size() {
                LIVE.fetch_sub(new_size - layout.size(), Ordering::SeqCst);
            }
        } else if new_size < layout.size() {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
        }
        p
    }
}

/// Counts `size` more bytes live, unless that would pass the cap.
fn reserve(size: usize) -> bool {
    let live = LIVE.fetch_add(size, Ordering::SeqCst) + size;
    if live > CAP {
        LIVE.fetch_sub(size, Ordering::SeqCst);
        return false;
    }
    PEAK.fetch_max(live, Ordering::SeqCst);
    true
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Tests of this file run one at a time, so each sees only its own peak.
static SERIAL: Mutex<()> = Mutex::new(());

/// The most memory in use at once while `f` ran, above what was live before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - before)
}

const MIB: usize = 1 << 20;

fn vars(pairs: &[(&str, String)]) -> VariableDictionary {
    pairs.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

fn within(limit: usize) -> RenderOptions {
    RenderOptions {
        max_output_bytes: Some(limit),
        ..RenderOptions::default()
    }
}

/// Renders under a 1 MiB budget; the result must be the size error, and
/// memory in use must have stayed within a few times the budget.
fn refused_within_budget(template: &str, v: &VariableDictionary) {
    let (result, peak) = peak_during(|| render_with(template, v, &within(MIB)));
    assert_eq!(
        result.map(|r| r.text.map(|t| t.len())),
        Err(VarsError::TooLarge { limit: MIB }),
        "{template}"
    );
    assert!(
        peak < 8 * MIB,
        "{template}: {peak} bytes were in use at once for a budget of {MIB}"
    );
}

#[test]
fn fault_template_replace_bomb_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The reported template: every character replaced by all the text before
    // it, about 3.2 GB for an 80 KB value, under the default budget.
    let v = vars(&[("Big", "x".repeat(80_000))]);
    let (result, peak) = peak_during(|| render("#{Big | Replace \".\" \"$`\"}", &v));
    assert!(
        matches!(result, Err(VarsError::TooLarge { .. })),
        "{:?}",
        result.map(|r| r.text.map(|t| t.len()))
    );
    assert!(peak < 512 * MIB, "{peak} bytes were in use at once");

    let v = vars(&[
        ("Big", "x".repeat(20_000)),
        ("Doubled", "#{Big | Replace \"x\" \"$&$&\"}".to_owned()),
    ]);
    for template in [
        "#{Big | Replace \".\" \"$`\"}",
        "#{Big | Replace \".\" \"$'$_\"}",
        // Each replacement doubles the text; together they pass the budget.
        &format!("#{{Big{}}}", " | Replace \".\" \"$&$&\"".repeat(8)),
        // A replacement that is itself a large filter result.
        "#{Big | Replace \".\" #{Doubled}}",
    ] {
        refused_within_budget(template, &v);
    }
}

#[test]
fn fault_filters_that_grow_text_stop_at_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = vars(&[
        ("Lines", "\n".repeat(20_000)),
        ("Wide", "y".repeat(20_000)),
        // Every character of it is escaped by each escape below.
        ("Amps", "&\"\n :=".repeat(150_000)),
        ("List", vec!["a"; 100].join(",")),
    ]);
    let chunks = format!(" \"{}\"", "z".repeat(60_000));
    for template in [
        // Every line feed gets the whole indent.
        "#{Lines | Indent #{Wide}}",
        "#{Lines | Indent \"\" #{Wide}}",
        // Escapes multiply each character.
        "#{Amps | HtmlEscape}",
        "#{Amps | XmlEscape}",
        "#{Amps | JsonEscape}",
        "#{Amps | UriDataEscape}",
        "#{Amps | YamlDoubleQuoteEscape}",
        "#{Amps | PropertiesKeyEscape}",
        "#{Amps | ToBase64 | ToBase64 | ToBase64 | ToBase64}",
        // Options that together pass the budget.
        &format!("#{{Wide | Append{}}}", chunks.repeat(20)),
        &format!("#{{Wide | Prepend{}}}", chunks.repeat(20)),
        &format!("#{{Wide | Truncate 1 \"{}\"}}", "z".repeat(MIB)),
        // Loops and conditionals write through the same budget.
        "#{each i in List}#{Wide}#{/each}",
        "#{each i in List}#{if Wide}#{Wide}#{/if}#{/each}",
    ] {
        refused_within_budget(template, &v);
    }
    // Markdown's parser holds a tree of its whole input, many times its
    // size: input whose parse could pass the budget is refused up front.
    refused_within_budget("#{Amps | Markdown}", &v);
    let v = vars(&[("Lines", "a\n".repeat(6_000))]);
    let (r, peak) = peak_during(|| render_with("#{Lines | Markdown}", &v, &within(MIB)));
    assert_eq!(r.unwrap().text.map(|t| t.len()), Some(12_008));
    assert!(peak < 4 * MIB, "{peak} bytes were in use at once");
}

#[test]
fn fault_replacements_pay_their_matches_from_the_step_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Each replacement doubles the text, well within a large output budget,
    // but the matches to get there pass the budget of work.
    let v = vars(&[("Big", "x".repeat(20_000))]);
    let template = format!("#{{Big{}}}", " | Replace \".\" \"$&$&\"".repeat(6));
    let options = RenderOptions {
        max_output_bytes: Some(256 * MIB),
        max_steps: Some(200_000),
        ..RenderOptions::default()
    };
    let (result, peak) = peak_during(|| render_with(&template, &v, &options));
    assert_eq!(
        result.map(|r| r.text.map(|t| t.len())),
        Err(VarsError::TooComplex { limit: 200_000 })
    );
    assert!(peak < 16 * MIB, "{peak} bytes were in use at once");
    // Fewer replacements fit.
    let template = format!("#{{Big{}}}", " | Replace \".\" \"$&$&\"".repeat(3));
    let r = render_with(&template, &v, &options).unwrap();
    assert_eq!(r.text.map(|t| t.len()), Some(160_000));
}

#[test]
fn filters_within_the_budget_still_render() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = vars(&[("Small", "ab".into()), ("Lines", "a\nb".into())]);
    for (template, expected) in [
        ("#{Small | Replace \".\" \"$`|\"}", "|a|"),
        ("#{Lines | Indent 2}", "  a\n  b"),
        ("#{Small | Append \"c\" \"d\" | HtmlEscape}", "abcd"),
        ("#{Small | ToBase64}", "YWI="),
    ] {
        let r = render_with(template, &v, &within(16)).unwrap();
        assert_eq!(r.text.as_deref(), Some(expected), "{template}");
    }
    // Exactly at the budget is allowed; one byte more is not.
    let v = vars(&[("X", "x".repeat(8))]);
    let r = render_with("#{X | Replace \"x\" \"yy\"}", &v, &within(16)).unwrap();
    assert_eq!(r.text.as_deref(), Some("y".repeat(16).as_str()));
    assert_eq!(
        render_with(
            "#{X | Replace \"x\" \"yy\" | Append \"z\"}",
            &v,
            &within(16)
        ),
        Err(VarsError::TooLarge { limit: 16 })
    );
}
