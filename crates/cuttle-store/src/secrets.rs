//! Encryption of sensitive values at rest. One 256-bit master key per
//! installation, kept outside the database (a file in the data directory, or
//! `CUTTLE_MASTER_KEY`), so a copy of the database alone reveals nothing.
//! Values are sealed with AES-256-GCM under a fresh random nonce each.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use std::fmt;
use std::path::Path;

/// Marks a sealed value and its format, so a future format can be told apart.
const PREFIX: &str = "cuttle:v1:";
const NONCE_LEN: usize = 12;
/// Sealed at first start and opened at every start: a wrong key is caught
/// before it can seal anything new.
pub const KEY_CHECK_SETTING: &str = "master_key_check";
const KEY_CHECK_PLAINTEXT: &str = "cuttle master key check";

/// Whether `text` is a value sealed by a master key.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(PREFIX)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the master key must be 32 bytes encoded in base64 (44 characters); generate one with `openssl rand -base64 32`")]
    BadKey,
    #[error("a sensitive value could not be decrypted: the master key does not match the one it was encrypted with, or the value was damaged")]
    Undecryptable,
    #[error("the master key file {path} could not be {action}: {reason}")]
    File {
        path: String,
        action: &'static str,
        reason: String,
    },
}

#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Parses a key given as base64 text (the file's content or the
    /// environment variable).
    pub fn from_base64(text: &str) -> Result<MasterKey, SecretError> {
        let bytes = B64.decode(text.trim()).map_err(|_| SecretError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretError::BadKey)?;
        Ok(MasterKey { cipher })
    }

    pub fn generate() -> (MasterKey, String) {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let text = B64.encode(bytes);
        let key = Self::from_base64(&text).expect("32 random bytes are a valid key");
        (key, text)
    }

    /// Reads `path`, or creates it (mode 0600) with a new key when missing.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, SecretError> {
        let file_error = |action: &'static str, e: std::io::Error| SecretError::File {
            path: path.display().to_string(),
            action,
            reason: e.to_string(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let (key, text) = Self::generate();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| file_error("created", e))?;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| file_error("written", e))?;
                Ok(key)
            }
            Err(e) => Err(file_error("read", e)),
        }
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let body = sealed
            .strip_prefix(PREFIX)
            .ok_or(SecretError::Undecryptable)?;
        let bytes = B64.decode(body).map_err(|_| SecretError::Undecryptable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Undecryptable)
    }

    /// The value kept in the database to recognise this key later.
    pub fn key_check(&self) -> String {
        self.seal(KEY_CHECK_PLAINTEXT)
    }

    /// Whether `check` (a stored [`key_check`](Self::key_check)) was sealed by this key.
    pub fn matches(&self, check: &str) -> bool {
        self.open(check).as_deref() == Ok(KEY_CHECK_PLAINTEXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_fresh_nonces() {
        let (key, _) = MasterKey::generate();
        let a = key.seal("hunter2");
        let b = key.seal("hunter2");
        assert_ne!(a, b, "each value gets its own nonce");
        assert!(!a.contains("hunter2"));
        assert_eq!(key.open(&a).as_deref(), Ok("hunter2"));
    }

    #[test]
    fn another_key_or_damage_is_refused() {
        let (key, _) = MasterKey::generate();
        let (other, _) = MasterKey::generate();
        let sealed = key.seal("secret");
        assert_eq!(other.open(&sealed), Err(SecretError::Undecryptable));
        assert!(!other.matches(&key.key_check()));
        assert!(key.matches(&key.key_check()));
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(key.open(&damaged), Err(SecretError::Undecryptable));
        assert_eq!(key.open("plain"), Err(SecretError::Undecryptable));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(
            MasterKey::from_base64("short").err(),
            Some(SecretError::BadKey)
        );
        assert_eq!(
            MasterKey::from_base64(&B64.encode([0u8; 16])).err(),
            Some(SecretError::BadKey)
        );
        assert!(MasterKey::from_base64(&B64.encode([7u8; 32])).is_ok());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(&key.seal("x")).as_deref(), Ok("x"));
    }
}
