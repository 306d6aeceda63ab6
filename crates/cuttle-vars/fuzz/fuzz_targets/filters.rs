//! Applies one built-in filter to a fuzzed input with fuzzed options.
//!
//! Property: no panic, no hang. Names are mostly drawn from the built-ins
//! (a random string is nearly always just "unknown filter"), and for the
//! filters that do not read the clock, the name's case must not matter.

#![no_main]

use arbitrary::Arbitrary;
use cuttle_vars::filters::apply;
use libfuzzer_sys::fuzz_target;

use cuttle_vars::filters::BUILT_IN as NAMES;

/// These may read the current time, so two calls can legitimately differ.
const CLOCK: &[&str] = &["Format", "AddHours", "AddDays", "NowDate", "NowDateUtc"];

#[derive(Arbitrary, Debug)]
struct Call {
    /// Picks from `NAMES`; its last few values use `other` as the name.
    name: u8,
    other: String,
    input: Option<String>,
    args: Vec<String>,
}

fuzz_target!(|call: Call| {
    // Real templates pass a handful of options; more only dilutes the search.
    let args = &call.args[..call.args.len().min(4)];
    let input = call.input.as_deref();
    let name = match call.name {
        0..=239 => NAMES[usize::from(call.name) % NAMES.len()],
        _ => {
            let _ = apply(&call.other, input, args);
            return;
        }
    };
    let result = apply(name, input, args);
    if !CLOCK.contains(&name) {
        assert_eq!(result, apply(&name.to_ascii_uppercase(), input, args));
    }
});
