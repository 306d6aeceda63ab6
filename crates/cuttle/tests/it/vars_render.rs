//! `cuttle vars render` as users run it: the real binary, real files, exact
//! bytes on stdout, exit codes and messages on stderr. No server involved.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cuttle");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], stdin: &str) -> Run {
    let mut command = Command::new(BIN);
    command.args(args);
    run_command(command, stdin)
}

/// Runs `command` with `stdin` as its input and collects what it printed.
fn run_command(mut command: Command, stdin: &str) -> Run {
    let mut child = command
        // Keep the connection settings of a developer's shell out of it.
        .env_remove("CUTTLE_SERVER")
        .env_remove("CUTTLE_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cuttle");
    // A command that fails before reading its input closes the pipe early;
    // that is its business, not a test failure.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("run cuttle");
    Run {
        code: status.code().expect("exit code, not a signal"),
        stdout: String::from_utf8(stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(stderr).expect("UTF-8 stderr"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

fn write_json(dir: &Path, name: &str, json: &Value) -> PathBuf {
    write(dir, name, &json.to_string())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn renders_a_template_file_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(dir.path(), "vars.json", &json!({"Name": "World"}));
    let template = write(dir.path(), "greeting.txt", "Hello #{Name}");
    let r = run(
        &["vars", "render", "--variables", s(&vars), s(&template)],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Byte for byte: no newline added.
    assert_eq!(r.stdout, "Hello World");
    assert_eq!(r.stderr, "");
}

#[test]
fn renders_standard_input_keeping_its_line_endings() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(dir.path(), "vars.json", &json!({"Name": "World"}));
    let r = run(
        &["vars", "render", "--variables", s(&vars)],
        "a #{Name}\r\nb\n\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "a World\r\nb\n\n");
}

#[test]
fn text_without_tokens_passes_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(dir.path(), "vars.json", &json!({}));
    let text = "line one\nno newline at the end, ünïcödé  ";
    let r = run(&["vars", "render", "--variables", s(&vars)], text);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, text, "")
    );
    let r = run(&["vars", "render", "--variables", s(&vars)], "");
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
}

#[test]
fn non_string_values_render_as_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(
        dir.path(),
        "vars.json",
        &json!({"Port": 8080, "Debug": true, "Config": {"Db": {"Host": "db1"}}}),
    );
    let r = run(
        &["vars", "render", "--variables", s(&vars)],
        "#{Port} #{Debug} #{Config.Db.Host}",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "8080 true db1");
}

#[test]
fn unresolved_tokens_stay_as_written_without_strict() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(dir.path(), "vars.json", &json!({"Name": "World"}));
    let r = run(
        &["vars", "render", "--variables", s(&vars)],
        "#{Name} #{Missing}",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "World #{Missing}");
    assert!(
        r.stderr.starts_with("Warning:") && r.stderr.contains("Missing"),
        "a warning naming the token: {:?}",
        r.stderr
    );

    let r = run(
        &["vars", "render", "--quiet", "--variables", s(&vars)],
        "#{Name} #{Missing}",
    );
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "World #{Missing}", "")
    );
}

#[test]
fn strict_fails_naming_every_unresolved_token() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(dir.path(), "vars.json", &json!({"Name": "World"}));
    let template = write(dir.path(), "t.txt", "#{Name} #{Missing} #{Other.Thing}");
    let r = run(
        &[
            "vars",
            "render",
            "--strict",
            "--variables",
            s(&vars),
            s(&template),
        ],
        "",
    );
    assert_eq!(r.code, 1, "stdout {:?} stderr {:?}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "", "nothing printed when strict fails");
    assert!(r.stderr.starts_with("Error:"), "{}", r.stderr);
    for name in ["t.txt", "Missing", "Other.Thing"] {
        assert!(r.stderr.contains(name), "stderr names {name}: {}", r.stderr);
    }

    // Fully resolved: strict changes nothing.
    let ok = write(dir.path(), "ok.txt", "Hi #{Name}");
    let r = run(
        &[
            "vars",
            "render",
            "--strict",
            "--variables",
            s(&vars),
            s(&ok),
        ],
        "",
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "Hi World"));
}

#[test]
fn a_cycle_is_a_render_error() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(dir.path(), "vars.json", &json!({"A": "#{B}", "B": "#{A}"}));
    let r = run(&["vars", "render", "--variables", s(&vars)], "#{A}");
    assert_eq!(r.code, 1, "stdout {:?} stderr {:?}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("self referencing loop"), "{}", r.stderr);
}

/// An Octopus-style variable list, scoped in several dimensions.
fn scoped_list() -> Value {
    json!([
        {"Name": "Db", "Value": "dev-db"},
        {"Name": "Db", "Value": "prod-db", "Scope": {"Environment": ["Production"]}},
        {"Name": "Db", "Value": "prod-web01-db", "Scope": {"Environment": ["Production"], "Machine": ["web01"]}},
        {"Name": "Port", "Value": "8080"},
        {"Name": "Port", "Value": "80", "Scope": {"Role": ["web"]}},
        {"Name": "Port", "Value": "443", "Scope": {"Role": ["web"], "Environment": ["Production"]}},
        {"Name": "Cache", "Value": "on", "Scope": {"Role": ["cache"]}},
    ])
}

#[test]
fn scope_options_select_the_most_specific_values() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(dir.path(), "vars.json", &scoped_list());
    let template = write(dir.path(), "t.txt", "#{Db}:#{Port}");
    let render = |extra: &[&str]| {
        let mut args = vec!["vars", "render", "--variables", s(&vars), s(&template)];
        args.extend_from_slice(extra);
        run(&args, "")
    };

    let r = render(&[]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "dev-db:8080"),
        "{}",
        r.stderr
    );
    let r = render(&["--environment", "Production"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "prod-db:8080"),
        "{}",
        r.stderr
    );
    let r = render(&["--environment", "production", "--role", "web"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "prod-db:443"),
        "{}",
        r.stderr
    );
    let r = render(&["--environment", "Test", "--role", "db", "--role", "web"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "dev-db:80"),
        "{}",
        r.stderr
    );
    let r = render(&[
        "--environment",
        "Production",
        "--machine",
        "web01",
        "--role",
        "web",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "prod-web01-db:443"),
        "{}",
        r.stderr
    );

    // A value scoped to a role the target lacks does not apply at all.
    let cache = write(dir.path(), "cache.txt", "#{Cache}");
    let r = run(
        &[
            "vars",
            "render",
            "--strict",
            "--variables",
            s(&vars),
            s(&cache),
            "--role",
            "web",
        ],
        "",
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("Cache"), "{}", r.stderr);
}

#[test]
fn a_variable_set_matches_names_to_the_ids_its_scopes_use() {
    let dir = tempfile::tempdir().unwrap();
    let set = json!({
        "Id": "variableset-Projects-1",
        "OwnerId": "Projects-1",
        "Version": 3,
        "Variables": [
            {"Id": "1", "Name": "Db", "Value": "dev-db", "Scope": {}, "IsSensitive": false, "Type": "String"},
            {"Id": "2", "Name": "Db", "Value": "prod-db", "Scope": {"Environment": ["Environments-2"]},
             "IsSensitive": false, "Type": "String"},
        ],
        "ScopeValues": {
            "Environments": [{"Id": "Environments-1", "Name": "Dev"}, {"Id": "Environments-2", "Name": "Production"}],
            "Machines": [], "Roles": [], "Actions": [], "Channels": [], "TenantTags": [], "Processes": []
        }
    });
    let vars = write_json(dir.path(), "set.json", &set);
    for env in ["Production", "Environments-2"] {
        let r = run(
            &[
                "vars",
                "render",
                "--variables",
                s(&vars),
                "--environment",
                env,
            ],
            "#{Db}",
        );
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, "prod-db"),
            "{env}: {}",
            r.stderr
        );
    }
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_json(dir.path(), "vars.json", &json!({"Name": "World"}));
    let cases: Vec<(&str, Vec<String>, &[&str])> = vec![
        (
            "missing variables file",
            vec![
                "--variables".into(),
                s(&dir.path().join("absent.json")).into(),
            ],
            &["absent.json", "could not read"],
        ),
        (
            "invalid JSON",
            vec![
                "--variables".into(),
                s(&write(dir.path(), "broken.json", "{\"Name\": ")).into(),
            ],
            &["broken.json", "not valid JSON"],
        ),
        (
            "wrong shape",
            vec![
                "--variables".into(),
                s(&write(dir.path(), "number.json", "42")).into(),
            ],
            &["number.json", "found a number"],
        ),
        (
            "list item not an object",
            vec![
                "--variables".into(),
                s(&write(dir.path(), "items.json", "[\"Name\"]")).into(),
            ],
            &["items.json", "variable 0"],
        ),
        (
            "unsupported scope",
            vec![
                "--variables".into(),
                s(&write_json(
                    dir.path(),
                    "tenant.json",
                    &json!([{"Name": "A", "Value": "x", "Scope": {"Tenant": ["Tenants-1"]}}]),
                ))
                .into(),
            ],
            &["tenant.json", "Tenant"],
        ),
        (
            "scope options on a plain object",
            vec![
                "--variables".into(),
                s(&good).into(),
                "--environment".into(),
                "Production".into(),
            ],
            &["vars.json", "plain object"],
        ),
        (
            "missing template file",
            vec![
                "--variables".into(),
                s(&good).into(),
                s(&dir.path().join("no-template.txt")).into(),
            ],
            &["no-template.txt", "could not read the template"],
        ),
    ];
    for (what, extra, expected) in cases {
        let mut args = vec!["vars", "render"];
        args.extend(extra.iter().map(String::as_str));
        let r = run(&args, "#{Name}");
        assert_eq!(r.code, 2, "{what}: stderr {:?}", r.stderr);
        assert_eq!(r.stdout, "", "{what}");
        assert!(r.stderr.starts_with("Error:"), "{what}: {}", r.stderr);
        for needle in expected {
            assert!(
                r.stderr.contains(needle),
                "{what}: stderr should mention {needle:?}: {}",
                r.stderr
            );
        }
    }

    let not_utf8 = dir.path().join("latin1.txt");
    std::fs::write(&not_utf8, b"caf\xe9").unwrap();
    let r = run(
        &["vars", "render", "--variables", s(&good), s(&not_utf8)],
        "",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("latin1.txt") && r.stderr.contains("UTF-8"),
        "{}",
        r.stderr
    );
}

#[test]
fn variables_are_required() {
    let r = run(&["vars", "render"], "");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--variables"), "{}", r.stderr);
}

/// As [`run`], with the child's address space capped at 1 GiB, so a
/// template that asks for more memory fails here instead of taking the
/// machine's.
fn run_capped(args: &[&str], stdin: &str) -> Run {
    let mut capped = vec!["-c", "ulimit -v 1048576 && exec \"$0\" \"$@\"", BIN];
    capped.extend_from_slice(args);
    let mut command = Command::new("sh");
    command.args(&capped);
    run_command(command, stdin)
}

#[test]
fn fault_a_filter_that_multiplies_its_input_ends_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write_json(
        dir.path(),
        "vars.json",
        &json!({"Big": "x".repeat(80_000), "Inner": "#{Big | Replace \".\" \"$`\"}"}),
    );
    for template in [
        // About 3.2 GB asked for by one filter.
        "#{Big | Replace \".\" \"$`\"}",
        // Replacements of replacements.
        "#{Big | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\" | Replace \".\" \"$&$&\"}",
        "#{Inner | Replace \".\" \"$`\"}",
    ] {
        let r = run_capped(&["vars", "render", "--variables", s(&vars)], template);
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (1, ""),
            "{template}: {}",
            r.stderr
        );
        assert!(
            // The size or the work limit, named.
            (r.stderr.contains("larger than") || r.stderr.contains("steps"))
                && r.stderr.contains("probably expands")
                && !r.stderr.contains("memory allocation"),
            "{template}: {}",
            r.stderr
        );
    }
}
