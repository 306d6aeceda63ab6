//! Bad and hostile input: the evaluator must answer, not panic, overflow the
//! stack, or run away with memory or time.

use std::time::{Duration, Instant};

use cuttle_vars::{
    evaluate_truthy, parse, render, render_with, RenderOptions, VariableDictionary, VarsError,
};

fn vars(pairs: &[(&str, &str)]) -> VariableDictionary {
    pairs.iter().map(|&(n, v)| (n, v)).collect()
}

#[test]
fn unterminated_token_returns_the_template_unchanged() {
    let v = vars(&[("Foo", "Bar")]);
    for template in [
        "#{Foo",
        "a #{Foo} b #{",
        "#{Foo | ToUpper",
        "#{if Foo}x",
        "#{each a in Foo}",
        "#{",
    ] {
        let r = render(template, &v).expect("no evaluation error");
        if template == "#{if Foo}x" {
            // An unclosed `#{if X}` reads as a variable named "if X", as in
            // Octostache: echoed and reported.
            assert_eq!(r.text.as_deref(), Some("#{if Foo}x"));
            assert_eq!(r.unresolved, ["#{if Foo}"]);
            continue;
        }
        assert_eq!(r.text.as_deref(), Some(template), "{template}");
        assert!(
            r.parse_error.is_some(),
            "{template}: a parse error is reported"
        );
        assert!(r.diagnostic().is_some());
    }
    assert!(
        matches!(parse("#{Foo", true), Err(VarsError::Parse(m)) if m.contains("line 1, column 1"))
    );
}

#[test]
fn lenient_parsing_keeps_a_stray_token_start_as_text() {
    let v = vars(&[("Foo", "Bar")]);
    let options = RenderOptions {
        halt_on_error: false,
        ..RenderOptions::default()
    };
    let r = render_with("a #{ b #{Foo} c #{/if} d #{", &v, &options).unwrap();
    assert_eq!(r.text.as_deref(), Some("a #{ b Bar c #{/if} d #{"));
    assert_eq!(r.parse_error, None);
}

#[test]
fn unknown_filter_is_left_as_written_and_reported() {
    let v = vars(&[("Foo", "abc")]);
    let r = render("x #{Foo | ToBazooka} y", &v).unwrap();
    assert_eq!(r.text.as_deref(), Some("x #{Foo | ToBazooka} y"));
    assert_eq!(r.unresolved, ["#{Foo | ToBazooka}"]);
    assert_eq!(
        r.diagnostic().as_deref(),
        Some("The following tokens were unable to be evaluated: '#{Foo | ToBazooka}'")
    );
}

#[test]
fn filter_with_wrong_arguments_is_left_as_written() {
    let v = vars(&[("X", "Octopus Deploy")]);
    let r = render("#{X | Substring abc}", &v).unwrap();
    // The echo is Octostache's canonical form: literal options in quotes.
    assert_eq!(r.text.as_deref(), Some("#{X | Substring \"abc\"}"));
    assert_eq!(r.unresolved, ["#{X | Substring \"abc\"}"]);
    let r = render("#{X | Substring 7}", &v).unwrap();
    assert_eq!(r.text.as_deref(), Some("Octopus"));
}

#[test]
fn several_unresolved_tokens_are_listed_once_each() {
    let r = render("#{A}#{B}#{A}", &VariableDictionary::new()).unwrap();
    assert_eq!(
        r.diagnostic().as_deref(),
        Some("The following tokens were unable to be evaluated: '#{A}', '#{B}'")
    );
}

#[test]
fn reference_cycle_names_the_chain() {
    let v = vars(&[("A", "#{B}"), ("B", "#{C}"), ("C", "#{D}"), ("D", "#{A}")]);
    let err = render("x #{A} y", &v).unwrap_err();
    assert_eq!(
        err,
        VarsError::Cycle {
            name: "A".into(),
            chain: "A -> B -> C -> D -> A".into()
        }
    );
    assert!(err.to_string().contains("(A -> B -> C -> D -> A)"));
    // Self reference, and a cycle met only inside a loop body.
    assert!(matches!(
        render("#{S}", &vars(&[("S", "x#{S}")])),
        Err(VarsError::Cycle { .. })
    ));
    let v = vars(&[("L", "a,b"), ("Item", "#{Item}")]);
    assert!(matches!(
        render("#{each i in L}#{Item}#{/each}", &v),
        Err(VarsError::Cycle { .. })
    ));
    // A truthiness test reports the cycle rather than guessing.
    assert!(evaluate_truthy("#{A}", &vars(&[("A", "#{A}")])).is_err());
}

#[test]
fn ten_megabyte_template_renders_in_linear_time() {
    let v = vars(&[("Name", "World"), ("Greeting", "Hello #{Name}")]);
    let unit = "#{Greeting}, ##{escaped} #{if Name}yes#{/if} é\n";
    let template = unit.repeat(10 * 1024 * 1024 / unit.len());
    let started = Instant::now();
    let r = render(&template, &v).unwrap();
    let elapsed = started.elapsed();
    let expected = "Hello World, #{escaped} yes é\n".repeat(template.len() / unit.len());
    assert!(
        r.text.as_deref() == Some(expected.as_str()),
        "output differs"
    );
    assert!(r.unresolved.is_empty());
    // Generous for an unoptimised build on a shared machine.
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let v = vars(&[("a", "true"), ("x", "y")]);
    let n = 100_000;
    let deep_ifs = "#{if a}".repeat(n) + "x" + &"#{/if}".repeat(n);
    let deep_options = "#{x | Append ".repeat(n) + "x" + &"}".repeat(n);
    let deep_indexers = "#{x".to_owned() + &"[#{x".repeat(n) + &"}]".repeat(n) + "}";
    let deep_brackets = "#{x".to_owned() + &"[".repeat(n) + &"]".repeat(n) + "}";
    let deep_calc = "#{calc ".to_owned() + &"(".repeat(n) + "1" + &")".repeat(n) + "}";
    for template in [
        deep_ifs,
        deep_options,
        deep_indexers,
        deep_brackets,
        deep_calc,
    ] {
        let r = render(&template, &v).expect("a parse problem, not an evaluation error");
        assert_eq!(
            r.text.as_deref(),
            Some(template.as_str()),
            "returned unchanged"
        );
        assert!(r.parse_error.is_some_and(|e| e.contains("nest")));
    }
    // Moderate nesting still works.
    let ok = "#{if a}".repeat(50) + "x" + &"#{/if}".repeat(50);
    assert_eq!(render(&ok, &v).unwrap().text.as_deref(), Some("x"));
}

#[test]
fn unterminated_blocks_do_not_make_parsing_quadratic() {
    let v = vars(&[("a", "1")]);
    for unit in [
        "#{if a}",
        "#{each x in a}",
        "#{unless a}#{else}",
        "#{x | F #{if a}}",
    ] {
        let template = unit.repeat(200_000 / unit.len()) + &"text ".repeat(20_000);
        let started = Instant::now();
        let r = render(&template, &v).unwrap();
        assert!(r.text.is_some());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{unit}: took {:?}",
            started.elapsed()
        );
    }
    // A few unterminated blocks among ordinary text still render, Octostache-style.
    let template = "#{if a}x ".repeat(20) + &"#{a} ".repeat(10_000);
    let r = render(&template, &v).unwrap();
    assert_eq!(r.parse_error, None);
    assert_eq!(r.unresolved, ["#{if a}"]);
}

#[test]
fn long_reference_chains_end_with_an_error() {
    let mut v = VariableDictionary::new();
    for i in 0..100_000 {
        v.set(format!("V{i}"), format!("#{{V{}}}", i + 1));
    }
    assert!(matches!(
        render("#{V0}", &v),
        Err(VarsError::TooDeep { .. })
    ));
    // A chain of reasonable length resolves.
    let mut v = VariableDictionary::new();
    for i in 0..50 {
        v.set(format!("V{i}"), format!("#{{V{}}}", i + 1));
    }
    v.set("V50", "end");
    assert_eq!(render("#{V0}", &v).unwrap().text.as_deref(), Some("end"));
}

#[test]
fn exponential_expansion_terminates_with_a_clear_error() {
    for leaf in ["x", ""] {
        let mut v = VariableDictionary::new();
        for i in 0..40 {
            v.set(format!("L{i}"), format!("#{{L{0}}}#{{L{0}}}", i + 1));
        }
        v.set("L40", leaf);
        let started = Instant::now();
        let err = render("#{L0}", &v).unwrap_err();
        assert!(
            matches!(
                err,
                VarsError::TooLarge { .. } | VarsError::TooComplex { .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("expands"));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
    }
    // Loops multiply too.
    let v = vars(&[("L", &"a,".repeat(1000))]);
    let err = render(
        "#{each a in L}#{each b in L}#{each c in L}x#{/each}#{/each}#{/each}",
        &v,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        VarsError::TooComplex { .. } | VarsError::TooLarge { .. }
    ));
}

#[test]
fn names_with_spaces_and_brackets_resolve() {
    let v = vars(&[("My Var[Key one].Some Name", "found")]);
    let r = render("#{My Var[Key one].Some Name}", &v).unwrap();
    assert_eq!(r.text.as_deref(), Some("found"));
    let r = render("#{ my var[key one].some name }", &v).unwrap();
    assert_eq!(r.text.as_deref(), Some("found"));
}

#[test]
fn multibyte_text_around_delimiters() {
    let v = vars(&[("é", "ü"), ("ключ", "значение")]);
    let r = render("é#{é}€##{é}###{é}#€#{ключ}#", &v).unwrap();
    assert_eq!(r.text.as_deref(), Some("éü€#{é}#ü#€значение#"));
    for template in [
        "#{é",
        "#{é[",
        "#{é[ü",
        "#{é | 𝄞 \"ü",
        "#{if é == \"ü",
        "#{calc é€}",
        "é#",
        "#{€}",
    ] {
        let _ = render(template, &v).unwrap();
        let _ = parse(template, false);
    }
}

#[test]
fn hostile_json_values() {
    let deep = "[".repeat(100_000);
    let v = vars(&[("J", &deep), ("K", "{a: {b: [1, 2, {c: \"d\"}]}}")]);
    assert_eq!(
        render("#{J[0]}", &v).unwrap().text.as_deref(),
        Some("#{J[0]}")
    );
    assert_eq!(
        render("#{K.a.b[2].c}", &v).unwrap().text.as_deref(),
        Some("d")
    );
    assert_eq!(
        render("#{K.a.b[9]}|#{K.a.b[-1]}", &v)
            .unwrap()
            .text
            .as_deref(),
        Some("|")
    );
}

#[test]
fn null_filter_yields_no_value() {
    let r = render("a#{ | null}b", &VariableDictionary::new()).unwrap();
    assert_eq!(r.text, None);
}

#[test]
fn run_conditions() {
    let v = vars(&[("Status", "Success"), ("Flag", "False"), ("Name", "prod-1")]);
    assert!(evaluate_truthy("#{if Status == \"Success\"}true#{/if}", &v).unwrap());
    assert!(!evaluate_truthy("#{Flag}", &v).unwrap());
    assert!(!evaluate_truthy("#{Missing}", &v).unwrap());
    assert!(evaluate_truthy("#{Name | StartsWith prod}", &v).unwrap());
    assert!(!evaluate_truthy("#{Name | StartsWith test}", &v).unwrap());
    assert!(!evaluate_truthy("#{if", &v).unwrap());
}

/// Random templates from an alphabet of syntax characters: nothing panics.
#[test]
fn random_input_never_panics() {
    let alphabet: Vec<char> = "#{}[]|.\"\\ ifunlesseachincalcelse/=!+-*()é€0aAxX,:\n"
        .chars()
        .collect();
    let v = vars(&[
        ("a", "#{x}"),
        ("x", "[1,{\"a\":2}]"),
        ("A[x]", "1"),
        ("if a", "q"),
    ]);
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..20_000 {
        let len = (seed % 40) as usize;
        let mut template = String::new();
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            template.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        for halt in [true, false] {
            let options = RenderOptions {
                halt_on_error: halt,
                ..RenderOptions::default()
            };
            let _ = render_with(&template, &v, &options);
            let _ = parse(&template, halt);
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
}
