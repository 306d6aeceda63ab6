//! `cuttle agent …`: the agent's local set-up. So far only `init`, which gives
//! an agent the TLS identity by which a server will pin it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cuttle_protocol::Identity;

#[derive(clap::Subcommand, Debug)]
pub enum AgentCommand {
    /// Create this agent's key and certificate, and print its thumbprint
    Init {
        /// Where the agent keeps its identity (in certs/) and work files.
        /// Not the server's data directory: each has an identity of its own.
        #[arg(long, env = "CUTTLE_AGENT_DATA_DIR", default_value = "./cuttle-agent")]
        data_dir: PathBuf,
        /// Replace an existing identity. Servers that trusted the old
        /// certificate will refuse this agent until given the new thumbprint.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: AgentCommand) -> anyhow::Result<i32> {
    match cmd {
        AgentCommand::Init { data_dir, force } => init(&data_dir, force, &mut std::io::stdout()),
    }
}

fn init(data_dir: &Path, force: bool, out: &mut dyn Write) -> anyhow::Result<i32> {
    let certs = data_dir.join(cuttle_protocol::identity::CERTS_DIR);
    let previous = Identity::exists(data_dir).then(|| Identity::load(data_dir));
    if let (Some(previous), false) = (&previous, force) {
        let what = match previous {
            Ok(identity) => format!("thumbprint {}", identity.thumbprint()),
            Err(e) => format!("unreadable: {e}"),
        };
        anyhow::bail!(
            "an agent identity already exists in {} ({what}); it was left as it is. \
             Pass --force to replace it; servers that trust it will then refuse this \
             agent until they are given the new thumbprint",
            certs.display()
        );
    }

    let identity = Identity::generate("Cuttle Agent")?;
    identity
        .replace(data_dir)
        .with_context(|| format!("could not save the agent identity in {}", certs.display()))?;
    match previous {
        Some(Ok(old)) => writeln!(
            out,
            "Replaced the agent identity in {} (the old thumbprint was {}).",
            certs.display(),
            old.thumbprint()
        )?,
        Some(Err(_)) => writeln!(
            out,
            "Replaced the unreadable agent identity in {}.",
            certs.display()
        )?,
        None => writeln!(out, "Created an agent identity in {}.", certs.display())?,
    }
    writeln!(out, "Thumbprint: {}", identity.thumbprint())?;
    writeln!(
        out,
        "A Cuttle server accepts this agent only once it is registered with this \
         thumbprint; keep {} private.",
        certs.join(cuttle_protocol::identity::KEY_FILE).display()
    )?;
    Ok(0)
}
