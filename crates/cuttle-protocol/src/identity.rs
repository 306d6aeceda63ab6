//! A server's or agent's TLS identity: one ECDSA P-256 key and a self-signed
//! certificate, kept as PEM files in `<data dir>/certs/`, and the certificate's
//! thumbprint by which the other side pins it.
//!
//! P-256 rather than Ed25519: both work with rustls and rcgen on ring, but
//! P-256 is what every TLS stack and HSM accepts, which matters once agents
//! and tools outside Cuttle talk to the same endpoints.
//!
//! The certificate's validity dates and names mean nothing here: the peer
//! trusts exactly this certificate (by thumbprint), so it never expires and is
//! replaced only by an explicit rotation (see docs/agent-protocol.md), which
//! uses the same directory's `next.*` and `previous.*` files ([`Slot`]).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

/// When a DER certificate stops being valid, in Unix seconds (`None` if its
/// dates cannot be read).
pub fn certificate_expiry(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The directory under a data directory that holds the identity.
pub const CERTS_DIR: &str = "certs";
/// The private key (PKCS#8 PEM), readable by its owner only.
pub const KEY_FILE: &str = "identity.key";
/// The self-signed certificate (PEM).
pub const CERT_FILE: &str = "identity.crt";

/// Which of a data directory's identities: the one presented, the one made
/// ahead of a rotation so peers can trust it before it is presented, and the
/// one presented before the last rotation (kept to roll back with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `identity.{key,crt}`
    Current,
    /// `next.{key,crt}`
    Next,
    /// `previous.{key,crt}`
    Previous,
    /// `replaced.{key,crt}`: one a node of a cluster set aside to present
    /// the installation's (never a rotation's step, unlike the previous).
    Replaced,
}

impl Slot {
    pub fn key_file(self) -> &'static str {
        match self {
            Slot::Current => KEY_FILE,
            Slot::Next => "next.key",
            Slot::Previous => "previous.key",
            Slot::Replaced => "replaced.key",
        }
    }

    pub fn cert_file(self) -> &'static str {
        match self {
            Slot::Current => CERT_FILE,
            Slot::Next => "next.crt",
            Slot::Previous => "previous.crt",
            Slot::Replaced => "replaced.crt",
        }
    }
}

/// What [`Identity::use_next`] did: the thumbprint that was presented and
/// the one presented from the next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    pub previous: Thumbprint,
    pub current: Thumbprint,
}

/// The SHA-256 of a certificate's DER bytes as 64 uppercase hex digits: the
/// whole of what a peer needs to know to trust a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint(String);

impl Thumbprint {
    /// The thumbprint of a DER-encoded certificate.
    pub fn of(certificate_der: &[u8]) -> Self {
        Self(hex::encode_upper(Sha256::digest(certificate_der)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A thumbprint as people paste it: any case, and colons or spaces between
/// byte pairs (as `openssl x509 -fingerprint` prints them) are ignored.
impl FromStr for Thumbprint {
    type Err = ThumbprintError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits: String = text
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(digits))
        } else {
            Err(ThumbprintError(text.to_owned()))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a certificate thumbprint: expected 64 hexadecimal digits (a SHA-256)")]
pub struct ThumbprintError(String);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no identity in {dir}: {missing} does not exist")]
    Missing { dir: PathBuf, missing: PathBuf },
    #[error("an identity already exists in {dir}")]
    AlreadyExists { dir: PathBuf },
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path} can be read by other users (mode {mode:o}); \
         make it readable by its owner only: chmod 600 {path}"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("could not generate a key and certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A key and its self-signed certificate, checked to belong together.
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    certified: Arc<CertifiedKey>,
    thumbprint: Thumbprint,
}

impl fmt::Debug for Identity {
    // Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new key and certificate, in memory only. `common_name` is for people
    /// reading the certificate (e.g. "Cuttle Server"); nothing checks it.
    pub fn generate(common_name: &str) -> Result<Self, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.self_signed(&key)?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        // What we just made parses; a failure here is a bug, reported as one.
        Self::from_pem(
            cert_pem,
            key_pem,
            Path::new("(generated)"),
            Path::new("(generated)"),
        )
    }

    /// The identity stored under `data_dir` (in `data_dir/certs/`).
    pub fn load(data_dir: &Path) -> Result<Self, IdentityError> {
        Self::load_slot(data_dir, Slot::Current)
    }

    /// The identity in `slot` under `data_dir`.
    pub fn load_slot(data_dir: &Path, slot: Slot) -> Result<Self, IdentityError> {
        let dir = data_dir.join(CERTS_DIR);
        let (key_path, cert_path) = (dir.join(slot.key_file()), dir.join(slot.cert_file()));
        for path in [&key_path, &cert_path] {
            // Only a definite "not there" is Missing; a directory we may not
            // look into falls through to the read, which names the real error.
            if matches!(path.try_exists(), Ok(false)) {
                return Err(IdentityError::Missing {
                    dir,
                    missing: path.clone(),
                });
            }
        }
        check_private(&key_path)?;
        let key_pem = read(&key_path)?;
        let cert_pem = read(&cert_path)?;
        Self::from_pem(cert_pem, key_pem, &cert_path, &key_path)
    }

    /// The identity under `data_dir`, or a new one saved there when there is
    /// none. Half an identity (one file of the two) is an error, never
    /// silently replaced: peers may trust the certificate that is missing.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        if Self::exists(data_dir) {
            return Self::load(data_dir);
        }
        let identity = Self::generate("Cuttle Server")?;
        identity.save(data_dir)?;
        Ok(identity)
    }

    /// Whether either file of an identity is under `data_dir`. When that
    /// cannot be told (no permission to look), it says yes: better to refuse
    /// to create one than to overwrite one.
    pub fn exists(data_dir: &Path) -> bool {
        Self::exists_slot(data_dir, Slot::Current)
    }

    /// Whether either file of the identity in `slot` is under `data_dir`,
    /// saying yes when that cannot be told, as [`Identity::exists`] does.
    pub fn exists_slot(data_dir: &Path, slot: Slot) -> bool {
        let dir = data_dir.join(CERTS_DIR);
        [slot.key_file(), slot.cert_file()]
            .iter()
            .any(|name| dir.join(name).try_exists().unwrap_or(true))
    }

    /// Writes the identity under `data_dir`; refuses if one is there already.
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        self.save_slot(data_dir, Slot::Current)
    }

    /// Writes the identity into `slot`; refuses if one is there already.
    pub fn save_slot(&self, data_dir: &Path, slot: Slot) -> Result<(), IdentityError> {
        if Self::exists_slot(data_dir, slot) {
            return Err(IdentityError::AlreadyExists {
                dir: data_dir.join(CERTS_DIR),
            });
        }
        self.write(data_dir, slot)
    }

    /// Writes the identity under `data_dir`, replacing any that is there.
    /// Peers that pinned the old certificate no longer trust this side.
    pub fn replace(&self, data_dir: &Path) -> Result<(), IdentityError> {
        self.write(data_dir, Slot::Current)
    }

    /// Writes the identity into `slot`, replacing any that is there.
    pub fn replace_slot(&self, data_dir: &Path, slot: Slot) -> Result<(), IdentityError> {
        self.write(data_dir, slot)
    }

    /// Makes the next identity the current one and keeps the current one as
    /// the previous (replacing any earlier previous). Only files change: a
    /// process that loaded the identity keeps presenting the old one until
    /// it starts again.
    ///
    /// The current files are copied to `previous.*` and the next ones then
    /// renamed over them, rather than the current ones renamed away, so that
    /// `identity.*` never goes missing: a server started in between would
    /// otherwise create a fresh identity that no agent trusts. Between the
    /// two renames the certificate is new and the key old, which loading
    /// refuses (never pairs); running this again finishes the switch.
    pub fn use_next(data_dir: &Path) -> Result<Switched, IdentityError> {
        if let Some(finished) = Self::finish_interrupted_switch(data_dir)? {
            return Ok(finished);
        }
        let next = Self::load_slot(data_dir, Slot::Next)?;
        let current = Self::load_slot(data_dir, Slot::Current)?;
        current.write(data_dir, Slot::Previous)?;
        let dir = data_dir.join(CERTS_DIR);
        // Key last, as in `write`.
        for (from, to) in [
            (Slot::Next.cert_file(), CERT_FILE),
            (Slot::Next.key_file(), KEY_FILE),
        ] {
            rename(&dir.join(from), &dir.join(to))?;
        }
        Ok(Switched {
            previous: current.thumbprint,
            current: next.thumbprint,
        })
    }

    /// Makes the previous identity the current one again and keeps the one
    /// it replaces as the previous, so that rolling back is itself undone
    /// by running this again. (Were the replaced one dropped, a node of a
    /// cluster could not tell a roll-back from a stale certificate.)
    pub fn roll_back(data_dir: &Path) -> Result<Switched, IdentityError> {
        let previous = Self::load_slot(data_dir, Slot::Previous)?;
        let current = Self::load_slot(data_dir, Slot::Current)?;
        previous.write(data_dir, Slot::Current)?;
        current.write(data_dir, Slot::Previous)?;
        Ok(Switched {
            previous: current.thumbprint,
            current: previous.thumbprint,
        })
    }

    /// A switch stopped between its two renames leaves `next.key` alone,
    /// beside the next certificate already in place as `identity.crt`:
    /// when they belong together, the key's rename is all that is left.
    fn finish_interrupted_switch(data_dir: &Path) -> Result<Option<Switched>, IdentityError> {
        let dir = data_dir.join(CERTS_DIR);
        let next_key = dir.join(Slot::Next.key_file());
        let alone = matches!(dir.join(Slot::Next.cert_file()).try_exists(), Ok(false))
            && matches!(next_key.try_exists(), Ok(true));
        if !alone {
            return Ok(None);
        }
        check_private(&next_key)?;
        let cert_path = dir.join(CERT_FILE);
        let Ok(paired) = Self::from_pem(read(&cert_path)?, read(&next_key)?, &cert_path, &next_key)
        else {
            return Ok(None);
        };
        let previous = Self::load_slot(data_dir, Slot::Previous)?;
        rename(&next_key, &dir.join(KEY_FILE))?;
        Ok(Some(Switched {
            previous: previous.thumbprint,
            current: paired.thumbprint,
        }))
    }

    /// When the certificate stops being valid, in Unix seconds (`None` if
    /// its dates cannot be read). Peers pin the certificate and ignore its
    /// dates, but tools that inspect it do not.
    pub fn expires_at(&self) -> Option<i64> {
        certificate_expiry(self.certificate_der())
    }

    pub fn thumbprint(&self) -> &Thumbprint {
        &self.thumbprint
    }

    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        // CertifiedKey::new is always given exactly one certificate.
        &self.certified.cert[0]
    }

    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key in PEM, for storing the identity where every node of
    /// a cluster reads it (sealed); never for logs.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// An identity kept elsewhere than in files (`origin` names where, for
    /// errors), checked as a loaded one is.
    pub fn from_pem_text(
        cert_pem: String,
        key_pem: String,
        origin: &Path,
    ) -> Result<Self, IdentityError> {
        Self::from_pem(cert_pem, key_pem, origin, origin)
    }

    /// The certificate and signing key in the form rustls configurations take.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    fn from_pem(
        cert_pem: String,
        key_pem: String,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, IdentityError> {
        let corrupt = |path: &Path, reason: String| IdentityError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| corrupt(cert_path, format!("no PEM certificate in it ({e})")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| corrupt(key_path, format!("no PEM private key in it ({e})")))?;
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| corrupt(key_path, format!("not a usable private key ({e})")))?;
        let thumbprint = Thumbprint::of(&cert);
        let certified = CertifiedKey::new(vec![cert], signing);
        // Also parses the certificate: a garbled one fails here, not at the
        // first handshake.
        certified.keys_match().map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => IdentityError::KeyMismatch {
                key: key_path.to_owned(),
                cert: cert_path.to_owned(),
            },
            other => corrupt(cert_path, format!("not a usable certificate ({other})")),
        })?;
        Ok(Self {
            cert_pem,
            key_pem,
            certified: Arc::new(certified),
            thumbprint,
        })
    }

    /// Each file goes to a temporary name and is renamed into place, so a
    /// crash never leaves a truncated key. The key is renamed last: a
    /// certificate without its key is refused at load rather than paired with
    /// a stale key.
    fn write(&self, data_dir: &Path, slot: Slot) -> Result<(), IdentityError> {
        let dir = data_dir.join(CERTS_DIR);
        create_private_dir(&dir)?;
        for (name, contents) in [
            (slot.cert_file(), &self.cert_pem),
            (slot.key_file(), &self.key_pem),
        ] {
            let temp = dir.join(format!(".{name}.tmp"));
            write_private(&temp, contents.as_bytes())?;
            rename(&temp, &dir.join(name))?;
        }
        Ok(())
    }
}

/// The one crypto provider the protocol uses: ring, stated explicitly so that
/// no process-wide default (or aws-lc-rs) is ever picked up by accident.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<String, IdentityError> {
    let bytes = std::fs::read(path).map_err(|source| IdentityError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| IdentityError::Corrupt {
        path: path.to_owned(),
        reason: "not a PEM text file".into(),
    })
}

/// Replaces `to` with `from` in one step (same directory, same file system).
fn rename(from: &Path, to: &Path) -> Result<(), IdentityError> {
    std::fs::rename(from, to).map_err(|source| IdentityError::Io {
        action: "rename into place",
        path: to.to_owned(),
        source,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| IdentityError::Io {
        action: "create the directory",
        path: dir.to_owned(),
        source,
    })
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    let io = |action| {
        move |source| IdentityError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    // A leftover from a crashed write may have any mode; start afresh.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove")(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // Created 0600, never chmod-ed later: the key is not readable by others
    // for even an instant.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io("create"))?;
    file.write_all(contents).map_err(io("write"))?;
    file.sync_all().map_err(io("write"))
}

/// Like ssh with its keys: a key that others can read may already be theirs,
/// so it is refused rather than used.
fn check_private(path: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|source| IdentityError::Io {
            action: "read the permissions of",
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reloads_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!Identity::exists(dir.path()));
        let created = Identity::load_or_create(dir.path()).unwrap();
        let thumbprint = created.thumbprint().as_str();
        assert_eq!(thumbprint.len(), 64);
        assert!(thumbprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        assert_eq!(
            *created.thumbprint(),
            Thumbprint::of(created.certificate_der())
        );

        let loaded = Identity::load(dir.path()).unwrap();
        assert_eq!(loaded.thumbprint(), created.thumbprint());
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(again.thumbprint(), created.thumbprint());
    }

    #[cfg(unix)]
    #[test]
    fn the_key_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let certs = dir.path().join(CERTS_DIR);
        assert_eq!(mode(certs.join(KEY_FILE)), 0o600);
        assert_eq!(mode(certs.clone()), 0o700);

        std::fs::set_permissions(certs.join(KEY_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let err = Identity::load(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            IdentityError::InsecurePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn corrupt_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let certs = dir.path().join(CERTS_DIR);

        std::fs::write(certs.join(CERT_FILE), "not a certificate").unwrap();
        let err = Identity::load(dir.path()).unwrap_err();
        assert!(matches!(&err, IdentityError::Corrupt { path, .. } if path.ends_with(CERT_FILE)));
        assert!(err.to_string().contains("identity.crt is corrupt"), "{err}");

        // A well-formed PEM around garbage.
        std::fs::write(
            certs.join(CERT_FILE),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = Identity::load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, IdentityError::Corrupt { path, .. } if path.ends_with(CERT_FILE)),
            "{err}"
        );
    }

    #[test]
    fn a_key_from_another_identity_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        Identity::load_or_create(a.path()).unwrap();
        Identity::load_or_create(b.path()).unwrap();
        let certs = |d: &tempfile::TempDir| d.path().join(CERTS_DIR);
        std::fs::copy(certs(&b).join(CERT_FILE), certs(&a).join(CERT_FILE)).unwrap();
        let err = Identity::load(a.path()).unwrap_err();
        assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn half_an_identity_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CERTS_DIR).join(CERT_FILE)).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(&err, IdentityError::Missing { missing, .. } if missing.ends_with(CERT_FILE)),
            "{err}"
        );
        assert!(dir.path().join(CERTS_DIR).join(KEY_FILE).exists());
    }

    #[test]
    fn save_refuses_to_overwrite_and_replace_does() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let second = Identity::generate("Cuttle Agent").unwrap();
        assert!(matches!(
            second.save(dir.path()),
            Err(IdentityError::AlreadyExists { .. })
        ));
        assert_eq!(
            Identity::load(dir.path()).unwrap().thumbprint(),
            first.thumbprint()
        );
        second.replace(dir.path()).unwrap();
        assert_eq!(
            Identity::load(dir.path()).unwrap().thumbprint(),
            second.thumbprint()
        );
    }

    #[test]
    fn thumbprints_parse_as_people_paste_them() {
        let upper = "AB".repeat(32);
        let pasted = vec!["ab"; 32].join(":");
        assert_eq!(pasted.parse::<Thumbprint>().unwrap().as_str(), upper);
        assert!("AB".repeat(20).parse::<Thumbprint>().is_err()); // a SHA-1
        assert!("ZZ".repeat(32).parse::<Thumbprint>().is_err());
    }

    #[test]
    fn use_next_switches_and_keeps_the_previous() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let next = Identity::generate("Cuttle Server").unwrap();
        next.save_slot(dir.path(), Slot::Next).unwrap();
        assert!(matches!(
            Identity::generate("x")
                .unwrap()
                .save_slot(dir.path(), Slot::Next),
            Err(IdentityError::AlreadyExists { .. })
        ));
        // Saving the next leaves the current alone.
        assert_eq!(
            Identity::load(dir.path()).unwrap().thumbprint(),
            first.thumbprint()
        );

        let switched = Identity::use_next(dir.path()).unwrap();
        assert_eq!(&switched.previous, first.thumbprint());
        assert_eq!(&switched.current, next.thumbprint());
        let load = |slot| Identity::load_slot(dir.path(), slot);
        assert_eq!(load(Slot::Current).unwrap().thumbprint(), next.thumbprint());
        assert_eq!(
            load(Slot::Previous).unwrap().thumbprint(),
            first.thumbprint()
        );
        assert!(!Identity::exists_slot(dir.path(), Slot::Next));
        let certs = dir.path().join(CERTS_DIR);
        for key in [KEY_FILE, Slot::Previous.key_file()] {
            let mode = std::fs::metadata(certs.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }

        // Nothing to switch to any more.
        assert!(matches!(
            Identity::use_next(dir.path()),
            Err(IdentityError::Missing { .. })
        ));
    }

    #[test]
    fn an_interrupted_switch_is_refused_at_load_and_finished_by_running_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let next = Identity::generate("Cuttle Server").unwrap();
        next.save_slot(dir.path(), Slot::Next).unwrap();
        // As `use_next` leaves things when stopped between its renames.
        first.replace_slot(dir.path(), Slot::Previous).unwrap();
        let certs = dir.path().join(CERTS_DIR);
        std::fs::rename(certs.join(Slot::Next.cert_file()), certs.join(CERT_FILE)).unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::KeyMismatch { .. })
        ));

        let switched = Identity::use_next(dir.path()).unwrap();
        assert_eq!(&switched.previous, first.thumbprint());
        assert_eq!(&switched.current, next.thumbprint());
        assert_eq!(
            Identity::load(dir.path()).unwrap().thumbprint(),
            next.thumbprint()
        );
        assert!(!Identity::exists_slot(dir.path(), Slot::Next));
    }
}
