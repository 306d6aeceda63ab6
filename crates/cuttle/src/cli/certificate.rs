//! `cuttle server certificate …`: rotating the certificate the server
//! presents to agents. Local file operations on the server's data directory,
//! no API: the identity is the server's own, and changing it needs no
//! running server (see "Rotating the server's certificate" in
//! docs/agent-protocol.md for the whole procedure).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use cuttle_protocol::identity::{Slot, CERTS_DIR};
use cuttle_protocol::Identity;

#[derive(clap::Subcommand, Debug)]
pub enum CertificateCommand {
    /// Create the server's next certificate and print its thumbprint
    ///
    /// Written to certs/next.{key,crt} in the data directory; the server may
    /// be running. It keeps presenting its current certificate; from its
    /// next start it publishes the next one as NextThumbprint (GET
    /// /api/agents/server-thumbprint), for agents to trust in advance with
    /// `cuttle agent trust --add-next`.
    New {
        /// The server's data directory
        #[arg(long, env = "CUTTLE_DATA_DIR", default_value = "./cuttle-data")]
        data_dir: PathBuf,
        /// Replace a next certificate that is already there. Agents that were
        /// told to trust it will have to be told the new one
        #[arg(long)]
        force: bool,
    },
    /// Make the next certificate the current one (stop the server first)
    ///
    /// The current certificate is kept as certs/previous.{key,crt}. The
    /// server reads its certificate only at start: from its next start it
    /// presents the new one, and agents that do not trust the new thumbprint
    /// refuse it.
    UseNext {
        /// The server's data directory
        #[arg(long, env = "CUTTLE_DATA_DIR", default_value = "./cuttle-data")]
        data_dir: PathBuf,
    },
    /// Go back to the previous certificate (stop the server first)
    ///
    /// Swaps certs/previous.{key,crt} and the current certificate, so running
    /// it again returns to the one it replaced. With several nodes, run it on
    /// one: that node publishes the certificate it went back to when it
    /// starts, and the others present it from their next start.
    RollBack {
        /// The server's data directory
        #[arg(long, env = "CUTTLE_DATA_DIR", default_value = "./cuttle-data")]
        data_dir: PathBuf,
    },
}

pub fn run(cmd: CertificateCommand) -> anyhow::Result<()> {
    let out = &mut std::io::stdout();
    match cmd {
        CertificateCommand::New { data_dir, force } => new(&data_dir, force, out),
        CertificateCommand::UseNext { data_dir } => use_next(&data_dir, out),
        CertificateCommand::RollBack { data_dir } => roll_back(&data_dir, out),
    }
}

/// The current identity, which both commands need: making a next identity
/// for a directory that has no server identity is a mistyped --data-dir.
fn current(data_dir: &Path) -> anyhow::Result<Identity> {
    if !Identity::exists(data_dir) {
        bail!(
            "there is no server certificate in {}; is --data-dir the server's data \
             directory? (the server creates its certificate at its first start)",
            data_dir.join(CERTS_DIR).display()
        );
    }
    Identity::load(data_dir).context("could not load the server's current certificate")
}

fn new(data_dir: &Path, force: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let current = current(data_dir)?;
    let certs = data_dir.join(CERTS_DIR);
    if Identity::exists_slot(data_dir, Slot::Next) && !force {
        let what = match Identity::load_slot(data_dir, Slot::Next) {
            Ok(next) => format!("thumbprint {}", next.thumbprint()),
            Err(e) => format!("unreadable: {e}"),
        };
        bail!(
            "a next server certificate already exists in {} ({what}); it was left as it \
             is. Pass --force to replace it; agents already told to trust it will then \
             have to be told the new one",
            certs.display()
        );
    }
    let next = Identity::generate("Cuttle Server")?;
    next.replace_slot(data_dir, Slot::Next)
        .with_context(|| format!("could not save the next certificate in {}", certs.display()))?;
    writeln!(
        out,
        "Created the next server certificate in {}.",
        certs.join(Slot::Next.cert_file()).display()
    )?;
    writeln!(out, "Next thumbprint:    {}", next.thumbprint())?;
    writeln!(out, "Current thumbprint: {}", current.thumbprint())?;
    writeln!(
        out,
        "The server keeps presenting the current certificate. Restart it to publish the \
         next one (GET /api/agents/server-thumbprint, NextThumbprint), then have each \
         agent trust it: cuttle agent trust --add-next"
    )?;
    Ok(())
}

fn roll_back(data_dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let certs = data_dir.join(CERTS_DIR);
    current(data_dir)?;
    if !Identity::exists_slot(data_dir, Slot::Previous) {
        bail!(
            "there is no previous server certificate in {} to go back to",
            certs.display()
        );
    }
    let switched = Identity::roll_back(data_dir)
        .with_context(|| format!("could not switch the certificates in {}", certs.display()))?;
    writeln!(
        out,
        "Went back to the previous server certificate in {}.",
        certs.display()
    )?;
    writeln!(
        out,
        "Thumbprint now:   {} (from the server's next start)",
        switched.current
    )?;
    writeln!(
        out,
        "Replaced:         {} (kept as {}; run this again to return to it)",
        switched.previous,
        Slot::Previous.cert_file()
    )?;
    Ok(())
}

fn use_next(data_dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let certs = data_dir.join(CERTS_DIR);
    // An interrupted switch has no next certificate left, only its key;
    // `use_next` finishes that, so only a directory with neither is refused.
    if !Identity::exists_slot(data_dir, Slot::Next) {
        current(data_dir)?;
        bail!(
            "there is no next server certificate in {}; create one with \
             `cuttle server certificate new`",
            certs.display()
        );
    }
    let switched = Identity::use_next(data_dir)
        .with_context(|| format!("could not switch the certificates in {}", certs.display()))?;
    writeln!(
        out,
        "Switched the server certificate in {}.",
        certs.display()
    )?;
    writeln!(
        out,
        "Old thumbprint: {} (kept as {})",
        switched.previous,
        Slot::Previous.cert_file()
    )?;
    writeln!(out, "New thumbprint: {}", switched.current)?;
    writeln!(
        out,
        "The server presents the new certificate from its next start; agents that do not \
         trust {} will refuse it. Once they all work, remove the old thumbprint from each: \
         cuttle agent trust --remove {}",
        switched.current, switched.previous
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn new_refuses_a_directory_without_a_server_and_an_existing_next() {
        let dir = tempfile::tempdir().unwrap();
        let err = new(dir.path(), false, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("no server certificate"), "{err}");

        Identity::load_or_create(dir.path()).unwrap();
        let mut out = Vec::new();
        new(dir.path(), false, &mut out).unwrap();
        let first = Identity::load_slot(dir.path(), Slot::Next).unwrap();
        assert!(
            text(out).contains(first.thumbprint().as_str()),
            "prints the next thumbprint"
        );

        let err = new(dir.path(), false, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("--force")
                && err.to_string().contains(first.thumbprint().as_str()),
            "{err}"
        );
        new(dir.path(), true, &mut Vec::new()).unwrap();
        let second = Identity::load_slot(dir.path(), Slot::Next).unwrap();
        assert_ne!(first.thumbprint(), second.thumbprint());
    }

    #[test]
    fn use_next_needs_a_next_and_prints_both_thumbprints() {
        let dir = tempfile::tempdir().unwrap();
        let old = Identity::load_or_create(dir.path()).unwrap();
        let err = use_next(dir.path(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("certificate new"), "{err}");

        new(dir.path(), false, &mut Vec::new()).unwrap();
        let next = Identity::load_slot(dir.path(), Slot::Next).unwrap();
        let mut out = Vec::new();
        use_next(dir.path(), &mut out).unwrap();
        let out = text(out);
        assert!(out.contains(old.thumbprint().as_str()), "{out}");
        assert!(out.contains(next.thumbprint().as_str()), "{out}");
        assert_eq!(
            Identity::load(dir.path()).unwrap().thumbprint(),
            next.thumbprint()
        );
    }

    #[test]
    fn roll_back_needs_a_previous_and_swaps_it_with_the_current() {
        let dir = tempfile::tempdir().unwrap();
        let err = roll_back(dir.path(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("no server certificate"), "{err}");
        let old = Identity::load_or_create(dir.path()).unwrap();
        let err = roll_back(dir.path(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("no previous"), "{err}");
        assert_eq!(
            Identity::load(dir.path()).unwrap().thumbprint(),
            old.thumbprint(),
            "a refused roll-back changes nothing"
        );

        new(dir.path(), false, &mut Vec::new()).unwrap();
        use_next(dir.path(), &mut Vec::new()).unwrap();
        let rotated = Identity::load(dir.path()).unwrap();
        let mut out = Vec::new();
        roll_back(dir.path(), &mut out).unwrap();
        let out = text(out);
        assert!(out.contains(old.thumbprint().as_str()), "{out}");
        assert!(out.contains(rotated.thumbprint().as_str()), "{out}");
        let current = |slot| {
            Identity::load_slot(dir.path(), slot)
                .unwrap()
                .thumbprint()
                .clone()
        };
        assert_eq!(current(Slot::Current), *old.thumbprint());
        assert_eq!(current(Slot::Previous), *rotated.thumbprint());
        // Again: back to the rotated one.
        roll_back(dir.path(), &mut Vec::new()).unwrap();
        assert_eq!(current(Slot::Current), *rotated.thumbprint());
        assert_eq!(current(Slot::Previous), *old.thumbprint());
    }
}
