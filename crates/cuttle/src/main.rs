//! `cuttle`: the server, and the command-line client of its API, in one
//! binary. This file only parses arguments and wires the libraries together.

mod cli;
mod config_file;
mod data_dir_lock;
mod host;
mod server;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "cuttle",
    version,
    propagate_version = true,
    about = "Cuttle: deployment automation server and CLI"
)]
struct Cli {
    #[command(flatten)]
    conn: cli::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: REST API and task runner.
    Server(Box<server::ServerArgs>),
    /// Serve many isolated instances, each at NAME.DOMAIN, with a control
    /// plane to create and manage them; or manage them (`host instance`).
    Host(Box<host::HostArgs>),
    /// Work with releases.
    #[command(subcommand)]
    Release(cli::ReleaseCommand),
    /// Deploy a release to one or more environments.
    Deploy(cli::DeployArgs),
    /// Work with server tasks.
    #[command(subcommand)]
    Task(cli::TaskCommand),
    /// Answer manual interventions and guided failures.
    #[command(subcommand)]
    Interruption(cli::InterruptionCommand),
    /// Work with variables and templates locally.
    #[command(subcommand)]
    Vars(cli::VarsCommand),
    /// Set up and run an agent (a Tentacle) on this machine.
    #[command(subcommand)]
    Agent(cli::agent::AgentCommand),
    /// Push and list packages in the built-in feed.
    #[command(subcommand)]
    Package(cli::package::PackageCommand),
    /// Back up a running installation: through its server (--server,
    /// --api-key) or from its data directory (--data-dir).
    Backup(cli::backup::BackupArgs),
    /// Build a new installation from a backup, on SQLite or PostgreSQL.
    Restore(cli::backup::RestoreArgs),
}

impl Command {
    /// Whether this runs until stopped, serving others (the server, a
    /// running agent), rather than printing an answer for a reader.
    fn is_service(&self) -> bool {
        match self {
            Command::Server(s) => s.runs_the_server(),
            Command::Host(h) => h.runs_the_host(),
            Command::Agent(a) => a.is_run(),
            _ => false,
        }
    }
}

/// Sets what writing to a pipe nobody reads any more does. Rust ignores
/// SIGPIPE, so such a write fails and `println!` panics: wrong for a verb
/// whose reader went away (`cuttle package list | head -1`), which should
/// end quietly as Unix filters do, by the signal (status 141 in a shell).
/// A service keeps ignoring it: a script or client that closes its end of
/// a pipe must not take the server or an agent down.
fn end_quietly_when_the_reader_goes(quietly: bool) {
    let action = if quietly {
        libc::SIG_DFL
    } else {
        libc::SIG_IGN
    };
    // SAFETY: called at the start of main, before any other thread exists,
    // and SIG_DFL and SIG_IGN are not handlers that could run Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, action);
    }
}

/// The command line, and for the server the environment and `cuttle.toml`
/// beneath it. `cuttle server --check-config` is answered here: it needs
/// what each layer gave, which only the parse knows.
/// `None` when the command was answered here.
fn parse() -> anyhow::Result<Option<Cli>> {
    let matches = Cli::command().get_matches();
    let args = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let Command::Server(server) = &args.command else {
        return Ok(Some(args));
    };
    if !server.runs_the_server() {
        return Ok(Some(args));
    }
    let sub = matches
        .subcommand_matches("server")
        .context("the server's arguments are missing")?;
    let layer = config_file::layer(sub, server.config.as_deref(), &server.data_dir)?;
    // The file's settings are parsed as if typed after the command line's,
    // by the same parsers, so a value means the same wherever it is set.
    let (mut args, matches) = if layer.args.is_empty() {
        (args, matches)
    } else {
        let argv = std::env::args_os().chain(layer.args.iter().cloned());
        let matches = Cli::command()
            .try_get_matches_from(argv)
            .unwrap_or_else(|e| e.exit());
        let args = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        (args, matches)
    };
    let Command::Server(server) = &mut args.command else {
        return Ok(Some(args));
    };
    let from_env = server.fill_secrets(&layer.secrets);
    if server.check_config {
        let sub = matches
            .subcommand_matches("server")
            .context("the server's arguments are missing")?;
        server::check_config(
            server,
            config_file::describe(sub, &layer, &from_env),
            &layer,
        )?;
        return Ok(None);
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    // Before parsing, so that `--help | head -1` ends quietly too.
    end_quietly_when_the_reader_goes(true);
    let args = match parse() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.command.is_service() {
        end_quietly_when_the_reader_goes(false);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Server(s) => server::run(*s).await.map(|()| 0),
            Command::Host(h) => host::run(*h).await,
            Command::Release(cmd) => cli::release(&args.conn, cmd).await,
            Command::Deploy(d) => cli::deploy(&args.conn, d).await,
            Command::Task(cmd) => cli::task(&args.conn, cmd).await,
            Command::Interruption(cmd) => cli::interruption(&args.conn, cmd).await,
            Command::Vars(cmd) => Ok(cli::vars(cmd)),
            Command::Agent(cmd) => cli::agent::run(&args.conn, cmd).await,
            Command::Package(cmd) => cli::package::run(&args.conn, cmd).await,
            Command::Backup(b) => cli::backup::backup(&args.conn, b).await,
            Command::Restore(r) => cli::backup::restore(r).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
