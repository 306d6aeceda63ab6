//! `cuttle.toml`: the server's settings in one file, beneath flags and the
//! environment, checked by `cuttle server --check-config` and at start.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};
use support::{TestServer, BIN};

/// `cuttle server ARGS` with only the environment given, none of the caller's `CUTTLE_*`.
fn server(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os()
        .filter(|(n, _)| n.to_string_lossy().starts_with("CUTTLE_"))
        .collect::<Vec<_>>()
    {
        cmd.env_remove(name);
    }
    cmd.arg("server")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run cuttle server")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, body: &str) -> String {
    let path = dir.join("cuttle.toml");
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

/// Runs `--check-config` on `body` as the data directory's cuttle.toml; the
/// output, or the error if refused.
fn check(body: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), body);
    let data = dir.path().display().to_string();
    let mut all = vec!["--data-dir", &data, "--check-config"];
    all.extend_from_slice(args);
    let out = server(&all, env);
    let (stdout, stderr) = text(&out);
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

/// The line `--check-config` prints for `key`.
fn setting<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{report}"))
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let report = check(
        "max_concurrent_tasks = 3\nscript_timeout = 100\nshutdown_timeout = 7\nlog_format = \"json\"\n",
        &["--max-concurrent-tasks", "9"],
        &[
            ("CUTTLE_MAX_CONCURRENT_TASKS", "5"),
            ("CUTTLE_SCRIPT_TIMEOUT", "200"),
        ],
    )
    .expect("a valid configuration");
    assert_eq!(
        setting(&report, "max_concurrent_tasks"),
        "max_concurrent_tasks = 9  [flag]"
    );
    assert_eq!(
        setting(&report, "script_timeout"),
        "script_timeout = 200  [environment]"
    );
    assert_eq!(
        setting(&report, "shutdown_timeout"),
        "shutdown_timeout = 7  [file]"
    );
    assert_eq!(setting(&report, "log_format"), "log_format = json  [file]");
    assert_eq!(
        setting(&report, "http_body_timeout"),
        "http_body_timeout = 60  [default]"
    );
    assert!(report.contains("The configuration is valid."), "{report}");
}

#[test]
fn switches_and_secrets_come_from_the_file_and_secrets_are_never_printed() {
    let key = "API-CONFIGFILEADMINKEY000000000000000001";
    let report = check(
        &format!(
            "builtin_worker_unisolated = true\ncount_metrics = false\n\
             admin_api_key = \"{key}\"\nadmin_password = \"file-password-1\"\n\
             database_url = \"postgres://cuttle:db-secret@127.0.0.1/cuttle\"\n"
        ),
        &[],
        &[("CUTTLE_ADMIN_PASSWORD", "env-password-1")],
    )
    .expect("a valid configuration");
    assert_eq!(
        setting(&report, "builtin_worker_unisolated"),
        "builtin_worker_unisolated = true  [file]"
    );
    assert_eq!(
        setting(&report, "count_metrics"),
        "count_metrics = false  [file]"
    );
    assert_eq!(
        setting(&report, "admin_api_key"),
        "admin_api_key = (hidden)  [file]"
    );
    assert_eq!(
        setting(&report, "admin_password"),
        "admin_password = (hidden)  [environment]"
    );
    assert_eq!(
        setting(&report, "database_url"),
        "database_url = (hidden)  [file]"
    );
    for secret in [key, "file-password-1", "env-password-1", "db-secret"] {
        assert!(!report.contains(secret), "{secret} printed:\n{report}");
    }
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let err = check("listen = \"127.0.0.1:0\"\ncolour = \"blue\"\n", &[], &[]).unwrap_err();
    assert!(err.contains("unknown key 'colour'"), "{err}");
    assert!(err.contains("cuttle.toml"), "the file is named: {err}");
    // The flag's spelling is recognised, and the file's is suggested.
    let err = check("data-dir = \"/tmp/x\"\n", &[], &[]).unwrap_err();
    assert!(
        err.contains("unknown key 'data-dir'; did you mean 'data_dir'?"),
        "{err}"
    );
    // What only says how to read the configuration is not a setting.
    let err = check("check_config = true\n", &[], &[]).unwrap_err();
    assert!(err.contains("unknown key 'check_config'"), "{err}");
}

#[test]
fn a_value_of_the_wrong_kind_is_refused_naming_its_key() {
    let err = check("max_concurrent_tasks = \"many\"\n", &[], &[]).unwrap_err();
    assert!(err.contains("'max_concurrent_tasks'"), "{err}");
    assert!(err.contains("invalid value 'many'"), "{err}");
    let err = check("script_timeout = -5\n", &[], &[]).unwrap_err();
    assert!(err.contains("'script_timeout'"), "{err}");
    let err = check("log_format = \"xml\"\n", &[], &[]).unwrap_err();
    assert!(err.contains("'log_format'"), "{err}");
    let err = check("listen = [\"127.0.0.1:1\"]\n", &[], &[]).unwrap_err();
    assert!(
        err.contains("'listen' must be a string, a whole number or true/false"),
        "{err}"
    );
    let err = check("builtin_worker_unisolated = \"yes\"\n", &[], &[]).unwrap_err();
    assert!(
        err.contains("'builtin_worker_unisolated' must be true or false"),
        "{err}"
    );
    let err = check("master_key = 42\n", &[], &[]).unwrap_err();
    assert!(err.contains("'master_key' must be a string"), "{err}");
}

#[test]
fn a_file_that_is_not_toml_is_refused_with_where() {
    let err = check(
        "listen = \"127.0.0.1:0\"\nmax_concurrent_tasks = \n",
        &[],
        &[],
    )
    .unwrap_err();
    assert!(err.contains("is not valid TOML"), "{err}");
    assert!(err.contains("line 2"), "the line is named: {err}");
}

#[test]
fn values_that_could_only_fail_later_are_refused_by_the_check() {
    let err = check("master_key = \"not base64!\"\n", &[], &[]).unwrap_err();
    assert!(err.contains("master key"), "{err}");
    let err = check("admin_api_key = \"short\"\n", &[], &[]).unwrap_err();
    assert!(err.to_lowercase().contains("key"), "{err}");
    let err = check("smtp_url = \"smtp://127.0.0.1:25\"\n", &[], &[]).unwrap_err();
    assert!(err.contains("--smtp-from"), "{err}");
    let err = check("database_url = \"mysql://x\"\n", &[], &[]).unwrap_err();
    assert!(err.contains("database_url"), "{err}");
    let err = check("metrics_listen = \"nowhere\"\n", &[], &[]).unwrap_err();
    assert!(err.contains("metrics_listen"), "{err}");
}

#[test]
fn a_named_file_must_exist_and_may_choose_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml").display().to_string();
    let out = server(&["--config", &missing, "--check-config"], &[]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(&missing), "{stderr}");

    let data = dir.path().join("data").display().to_string();
    let path = dir.path().join("elsewhere.toml");
    std::fs::write(&path, format!("data_dir = \"{data}\"\n")).unwrap();
    let out = server(
        &["--check-config"],
        &[("CUTTLE_CONFIG", path.to_str().unwrap())],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        setting(&stdout, "data_dir"),
        format!("data_dir = {data}  [file]")
    );
}

#[test]
fn the_server_uses_the_file_and_refuses_to_start_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "metrics_listen = \"127.0.0.1:0\"\n");
    let server = TestServer::start(dir.path(), None, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server
        .recent_output()
        .contains("Metrics are served without a key at http://127.0.0.1:")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the file's metrics_listen was not used:\n{}",
            server.recent_output()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(server);

    // Refused before anything is opened: no database is created.
    let fresh = tempfile::tempdir().unwrap();
    write(
        fresh.path(),
        "listen = \"127.0.0.1:0\"\nmax_conncurrent_tasks = 4\n",
    );
    let data = fresh.path().display().to_string();
    let out = server_run(&["--data-dir", &data]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown key 'max_conncurrent_tasks'"),
        "{stderr}"
    );
    assert!(!fresh.path().join("cuttle.db").exists());
}

fn server_run(args: &[&str]) -> Output {
    server(args, &[("CUTTLE_BUILTIN_WORKER_UNISOLATED", "true")])
}
