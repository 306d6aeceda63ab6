//! The CLI's verbs: clients of a Cuttle server's REST API, the same API every
//! Octopus-compatible tool uses, and local tools that need no server.
//!
//! # Layout
//!
//! - this file: the clap arguments and one entry point per verb, each
//!   returning the process's exit code.
//! - `api`: HTTP, the API key, space names → ids, the server's error bodies.
//! - `watch`: following a server task's log until the task finishes.
//! - `vars`: `vars render`, templates rendered locally (no server).
//! - `preview`: `deploy --preview`, the plan without deploying.
//! - `interruption`: answering manual interventions and guided failures.
//! - `agent`: the agent on its machine (`cuttle agent …`).
//! - `package`: the built-in feed (`cuttle package push|list`).
//! - `backup`: `cuttle backup` and `cuttle restore`.
//! - `certificate`: rotating the server's certificate (`cuttle server
//!   certificate …`), local files only.

pub mod agent;
mod api;
pub mod backup;
pub mod certificate;
mod interruption;
pub mod package;
mod preview;
mod vars;
mod watch;

pub use interruption::InterruptionCommand;
pub use vars::VarsCommand;

use std::io::{IsTerminal as _, Write};

use serde::{Deserialize, Serialize};

use api::{Api, ApiError};

/// Where the server is and who is asking.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// The Cuttle server's URL, e.g. http://127.0.0.1:8080
    #[arg(long, env = "CUTTLE_SERVER", global = true, value_name = "URL")]
    pub server: Option<String>,
    /// An API key (API-…) to authenticate with
    #[arg(
        long,
        env = "CUTTLE_API_KEY",
        global = true,
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// The space to work in: its name or its id (Spaces-1)
    #[arg(long, env = "CUTTLE_SPACE", global = true, default_value = "Default")]
    pub space: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Create a release of a project
    // A release has a --version of its own; never clap's.
    #[command(disable_version_flag = true)]
    Create {
        /// The project's name
        #[arg(long)]
        project: String,
        /// The release's version [default: chosen by the server: 0.0.1 for a
        /// first release, else the project's next version]
        #[arg(long)]
        version: Option<String>,
        /// The channel to create the release in [default: the project's
        /// default channel]
        #[arg(long)]
        channel: Option<String>,
        /// Release notes (Markdown)
        #[arg(long, value_name = "NOTES")]
        release_notes: Option<String>,
    },
}

/// Deploy a release to one or more environments.
#[derive(clap::Args, Debug, Clone)]
pub struct DeployArgs {
    /// The project's name
    #[arg(long)]
    pub project: String,
    /// The version of the release to deploy
    #[arg(long, value_name = "VERSION")]
    pub release: String,
    /// An environment to deploy to (by name); repeat it to deploy to several
    #[arg(long = "environment", value_name = "NAME", required = true)]
    pub environments: Vec<String>,
    /// Follow the deployments until they finish, printing their logs; exit 1
    /// unless every one succeeds
    #[arg(long)]
    pub wait: bool,
    /// When a step fails, pause for someone to retry, ignore or abort it
    /// instead of failing the deployment [default: the environment's setting]
    #[arg(long)]
    pub guided_failure: bool,
    /// A value for a prompted variable, as NAME=VALUE; repeat it for several
    #[arg(long = "variable", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub variables: Vec<(String, String)>,
    /// Print the plan (steps, parallel groups, targets, what is skipped and
    /// why) without deploying
    #[arg(long, conflicts_with = "wait")]
    pub preview: bool,
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected NAME=VALUE, got '{text}'")),
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum TaskCommand {
    /// Follow a server task until it finishes, printing its log as it runs;
    /// exit 1 unless it succeeds
    Watch {
        /// The task's id, e.g. ServerTasks-5
        #[arg(value_name = "TASK_ID")]
        id: String,
    },
}

pub async fn release(conn: &Connection, cmd: ReleaseCommand) -> anyhow::Result<i32> {
    report(run_release(conn, cmd, &mut std::io::stdout()).await)
}

pub async fn deploy(conn: &Connection, args: DeployArgs) -> anyhow::Result<i32> {
    report(run_deploy(conn, args, &mut std::io::stdout(), color()).await)
}

pub async fn task(conn: &Connection, cmd: TaskCommand) -> anyhow::Result<i32> {
    report(run_task(conn, cmd, &mut std::io::stdout(), color()).await)
}

pub async fn interruption(conn: &Connection, cmd: InterruptionCommand) -> anyhow::Result<i32> {
    report(interruption::run(conn, cmd, &mut std::io::stdout()).await)
}

/// Prints a line for whoever watches a service (the server, a running
/// agent). A reader that went away is no reason to stop serving, so a
/// failed write is dropped rather than a panic, as `println!` would.
macro_rules! announce {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*).and_then(|()| out.flush());
    }};
}
pub(crate) use announce;

/// Local and synchronous: reports its own errors and returns the exit code.
pub fn vars(cmd: VarsCommand) -> i32 {
    vars::run(cmd)
}

/// A refusal from the server is an outcome to show, not a failure of the
/// CLI: print what the server said and exit 1. Anything else (missing
/// flags, no connection) goes back to the caller.
fn report(result: anyhow::Result<i32>) -> anyhow::Result<i32> {
    match result {
        Err(e) if e.is::<ApiError>() => {
            eprintln!("Error: {e:#}");
            Ok(1)
        }
        other => other,
    }
}

fn color() -> bool {
    // https://no-color.org: any non-empty NO_COLOR turns color off.
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

async fn run_release(
    conn: &Connection,
    cmd: ReleaseCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let ReleaseCommand::Create {
        project,
        version,
        channel,
        release_notes,
    } = cmd;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        project_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        release_version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        release_notes: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Created {
        release_id: String,
        release_version: String,
    }

    let api = Api::new(conn)?;
    let space = api.space_id(&conn.space).await?;
    let request = Request {
        project_name: project,
        release_version: version,
        channel_name: channel,
        release_notes,
    };
    let created: Created = api
        .post(&["api", &space, "releases", "create", "v1"], &request)
        .await?;
    writeln!(
        out,
        "Created release {} ({}) of {}",
        created.release_version, created.release_id, request.project_name
    )?;
    Ok(0)
}

async fn run_deploy(
    conn: &Connection,
    args: DeployArgs,
    out: &mut (dyn Write + Send),
    color: bool,
) -> anyhow::Result<i32> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        project_name: String,
        release_version: String,
        environment_names: Vec<String>,
        /// Absent unless asked for, so each environment's own setting applies.
        #[serde(skip_serializing_if = "Option::is_none")]
        use_guided_failure: Option<bool>,
        variables: std::collections::BTreeMap<String, String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Created {
        deployment_server_tasks: Vec<Queued>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Queued {
        deployment_id: String,
        server_task_id: String,
    }

    let api = Api::new(conn)?;
    let space = api.space_id(&conn.space).await?;
    if args.preview {
        return preview::run(
            &api,
            &space,
            &args.project,
            &args.release,
            &args.environments,
            out,
        )
        .await;
    }
    let request = Request {
        project_name: args.project,
        release_version: args.release,
        environment_names: args.environments,
        use_guided_failure: args.guided_failure.then_some(true),
        variables: args.variables.into_iter().collect(),
    };
    let created: Created = api
        .post(
            &["api", &space, "deployments", "create", "untenanted", "v1"],
            &request,
        )
        .await?;
    for queued in &created.deployment_server_tasks {
        writeln!(
            out,
            "Queued {} as task {}",
            queued.deployment_id, queued.server_task_id
        )?;
    }
    if !args.wait {
        return Ok(0);
    }

    // One task at a time keeps each log in one piece; a task that runs while
    // another is followed loses nothing, its log is printed when its turn comes.
    let mut code = 0;
    for queued in &created.deployment_server_tasks {
        writeln!(out)?;
        let id = queued.server_task_id.as_str();
        code = code.max(
            watch::follow(
                &mut watch::TaskStream::new(&api, id),
                out,
                color,
                watch::Pace::DEFAULT,
            )
            .await?,
        );
    }
    Ok(code)
}

async fn run_task(
    conn: &Connection,
    cmd: TaskCommand,
    out: &mut (dyn Write + Send),
    color: bool,
) -> anyhow::Result<i32> {
    let TaskCommand::Watch { id } = cmd;
    // Task routes are global: no space to resolve.
    let api = Api::new(conn)?;
    watch::follow(
        &mut watch::TaskStream::new(&api, &id),
        out,
        color,
        watch::Pace::DEFAULT,
    )
    .await
}
