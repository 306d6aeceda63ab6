//! `cuttle.toml`: every setting of `cuttle server` in one file, beneath the
//! command line and the environment (flag > environment > file > default).
//!
//! The file's keys are the server's flags without their dashes, in snake
//! case (`--max-concurrent-tasks` is `max_concurrent_tasks`), plus the three
//! secrets that are never flags (`master_key`, `admin_password`,
//! `admin_api_key`). Rather than a second parser that could drift from the
//! flags, a file value is checked by the flag's own clap parser and handed to
//! clap as if it had been typed, but only where neither a flag nor the
//! environment gave that setting.

use anyhow::{bail, Context as _};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args as _};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The file's name, looked for in the data directory when `--config` is not given.
pub const FILE_NAME: &str = "cuttle.toml";

/// Settings only the environment or the file give: they are secrets, and a
/// flag would show them in every process list.
pub const SECRETS: [(&str, &str); 3] = [
    ("master_key", "CUTTLE_MASTER_KEY"),
    ("admin_password", "CUTTLE_ADMIN_PASSWORD"),
    ("admin_api_key", "CUTTLE_ADMIN_API_KEY"),
];

/// Flags that say how to read the configuration, not what it is.
const NOT_IN_FILE: [&str; 2] = ["config", "check_config"];

/// What a configuration file adds beneath the command line and environment.
#[derive(Debug, Default)]
pub struct Layer {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// Arguments to parse after the command line's, for the settings that
    /// neither a flag nor the environment gave.
    pub args: Vec<OsString>,
    /// The ids of the settings these arguments give.
    pub keys: Vec<String>,
    /// Secrets from the file, where the environment has none.
    pub secrets: Vec<(&'static str, String)>,
}

/// Where one setting's value came from, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    File,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Environment => "environment",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// The `server` command as clap knows it, without the global connection
/// flags: the arguments a file may set.
fn server_command() -> clap::Command {
    crate::server::ServerArgs::augment_args(clap::Command::new("server"))
}

/// Reads the configuration file, if there is one, and works out what it adds
/// to `matches` (the `server` subcommand's, from the command line and the
/// environment). `explicit` is `--config`: that file must exist. Otherwise
/// `cuttle.toml` in `data_dir` is read when present.
pub fn layer(
    matches: &ArgMatches,
    explicit: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<Layer> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = data_dir.join(FILE_NAME);
            if !p.exists() {
                return Ok(Layer::default());
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read the configuration file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let at = path.display();
    let cmd = server_command();
    let mut layer = Layer {
        path: Some(path.clone()),
        ..Layer::default()
    };
    for (key, value) in &table {
        if let Some((name, variable)) = SECRETS.iter().find(|(name, _)| name == key) {
            let Some(secret) = value.as_str() else {
                bail!("{at}: '{key}' must be a string");
            };
            if std::env::var_os(variable).is_none() && !secret.trim().is_empty() {
                layer.secrets.push((name, secret.to_owned()));
            }
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == key.as_str() && a.get_long().is_some())
            .filter(|a| !NOT_IN_FILE.contains(&a.get_id().as_str()));
        let Some(arg) = arg else {
            let snake = key.replace('-', "_");
            if snake != *key && cmd.get_arguments().any(|a| a.get_id() == snake.as_str()) {
                bail!("{at}: unknown key '{key}'; did you mean '{snake}'?");
            }
            bail!(
                "{at}: unknown key '{key}'; the keys are the server's flags in snake case \
                 (listen, data_dir, max_concurrent_tasks, …) and {}",
                SECRETS.map(|(name, _)| name).join(", ")
            );
        };
        let long = arg.get_long().unwrap_or_default();
        let given = matches!(
            matches.value_source(key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            // A switch: present or not.
            let Some(on) = value.as_bool() else {
                bail!("{at}: '{key}' must be true or false");
            };
            if on && !given {
                layer.args.push(format!("--{long}").into());
                layer.keys.push(key.clone());
            }
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => bail!("{at}: '{key}' must be a string, a whole number or true/false"),
        };
        // The flag's own parser, so the file accepts exactly what the flag
        // does; alone, without the flag's environment variable or the other
        // flags it requires.
        clap::Command::new("cuttle.toml")
            .no_binary_name(true)
            .arg(
                clap::Arg::new("value")
                    .action(ArgAction::Set)
                    .allow_hyphen_values(true)
                    .value_parser(arg.get_value_parser().clone()),
            )
            .try_get_matches_from([text.as_str()])
            .map_err(|e| {
                let why: Vec<String> = e
                    .to_string()
                    .lines()
                    .map(|l| {
                        l.trim()
                            .trim_start_matches("error: ")
                            .replace(" for '[value]'", "")
                    })
                    .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                    .collect();
                anyhow::anyhow!("{at}: '{key}': {}", why.join(" "))
            })?;
        if !given {
            layer.args.push(format!("--{long}={text}").into());
            layer.keys.push(key.clone());
        }
    }
    Ok(layer)
}

/// Each setting of `cuttle server`, its value as given (secrets hidden) and
/// where it came from, for `--check-config`. `matches` are the final ones,
/// the file's arguments included.
pub fn describe(matches: &ArgMatches, layer: &Layer, secrets_from_env: &[&str]) -> Vec<String> {
    let cmd = server_command();
    let mut lines = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.get_long().is_none() || NOT_IN_FILE.contains(&id) {
            continue;
        }
        let source = if layer.keys.iter().any(|k| k == id) {
            Source::File
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Environment,
                _ => Source::Default,
            }
        };
        let value = match matches.get_raw(id) {
            Some(raw) => {
                let shown: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
                if arg.is_hide_env_values_set() {
                    "(hidden)".to_owned()
                } else {
                    shown.join(",")
                }
            }
            None => "(none)".to_owned(),
        };
        lines.push(format!("{id} = {value}  [{}]", source.as_str()));
    }
    for (name, variable) in SECRETS {
        let source = if secrets_from_env.contains(&name) {
            Some(Source::Environment)
        } else if layer.secrets.iter().any(|(n, _)| *n == name) {
            Some(Source::File)
        } else {
            None
        };
        lines.push(match source {
            Some(s) => format!("{name} = (hidden)  [{}]", s.as_str()),
            None => format!("{name} = (none; {variable} unset)  [default]"),
        });
    }
    lines
}
