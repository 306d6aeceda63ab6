//! The master key inside a backup, sealed with a key derived from a
//! passphrase (argon2id, then AES-256-GCM), so that a copy of the backup
//! alone reveals no sensitive value.

use crate::{Result, ServiceError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const KDF: &str = "argon2id";
const CIPHER: &str = "aes-256-gcm";
/// Binds the ciphertext to its purpose: it opens as nothing else.
const AAD: &[u8] = b"cuttle backup master key v1";
/// Argon2's recommended minimum (19 MiB, two passes): a passphrase is
/// guessed at a few dozen tries per second per core.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
/// A backup asking more than this to derive its key is refused rather than
/// left to exhaust the machine restoring it.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 64;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedKey {
    pub kdf: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub salt: String,
    pub cipher: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// What a passphrase must at least be.
pub fn check_passphrase(passphrase: &str) -> Result<()> {
    if passphrase.chars().count() < 8 {
        return Err(ServiceError::bad_request(
            "The passphrase that seals the master key must have at least 8 characters",
        ));
    }
    Ok(())
}

fn derive(
    passphrase: &str,
    salt: &[u8],
    memory: u32,
    iterations: u32,
    lanes: u32,
) -> Result<[u8; 32]> {
    let params = Params::new(memory, iterations, lanes, Some(32))
        .map_err(|e| ServiceError::bad_request(format!("the backup's key derivation: {e}")))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| ServiceError::Internal(format!("deriving the backup's key: {e}")))?;
    Ok(key)
}

/// Seals the master key (its base64 text) under `passphrase`.
pub fn seal(master_key: &str, passphrase: &str) -> Result<SealedKey> {
    check_passphrase(passphrase)?;
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let key = derive(passphrase, &salt, MEMORY_KIB, ITERATIONS, 1)?;
    let cipher = Aes256Gcm::new_from_slice(&key)
        .map_err(|e| ServiceError::Internal(format!("the backup's cipher: {e}")))?;
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: master_key.trim().as_bytes(),
                aad: AAD,
            },
        )
        .map_err(|e| ServiceError::Internal(format!("sealing the master key: {e}")))?;
    Ok(SealedKey {
        kdf: KDF.into(),
        memory_kib: MEMORY_KIB,
        iterations: ITERATIONS,
        parallelism: 1,
        salt: B64.encode(salt),
        cipher: CIPHER.into(),
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(ciphertext),
    })
}

impl SealedKey {
    /// The master key's base64 text, or a refusal naming the passphrase.
    pub fn open(&self, passphrase: &str) -> Result<String> {
        let damaged = |what: &str| {
            ServiceError::bad_request(format!(
                "The backup's sealed master key is damaged ({what})"
            ))
        };
        if self.kdf != KDF || self.cipher != CIPHER {
            return Err(damaged("unknown key derivation or cipher"));
        }
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism == 0
            || self.parallelism > 16
        {
            return Err(damaged("key derivation parameters out of range"));
        }
        let salt = B64.decode(&self.salt).map_err(|_| damaged("salt"))?;
        let nonce = B64.decode(&self.nonce).map_err(|_| damaged("nonce"))?;
        let ciphertext = B64
            .decode(&self.ciphertext)
            .map_err(|_| damaged("ciphertext"))?;
        if nonce.len() != 12 {
            return Err(damaged("nonce"));
        }
        let key = derive(
            passphrase,
            &salt,
            self.memory_kib,
            self.iterations,
            self.parallelism,
        )?;
        let cipher = Aes256Gcm::new_from_slice(&key)
            .map_err(|e| ServiceError::Internal(format!("the backup's cipher: {e}")))?;
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: AAD,
                },
            )
            .map_err(|_| {
                ServiceError::bad_request(
                    "The passphrase does not open the backup's master key (wrong passphrase, \
                     or the backup was altered)",
                )
            })?;
        String::from_utf8(plain).map_err(|_| damaged("not text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_with_its_passphrase_only() {
        let sealed = seal("a2V5IGtleSBrZXk=", "correct horse").unwrap();
        assert_eq!(sealed.open("correct horse").unwrap(), "a2V5IGtleSBrZXk=");
        let wrong = sealed.open("correct hors3").unwrap_err().to_string();
        assert!(wrong.contains("passphrase does not open"), "{wrong}");
        assert!(!sealed.ciphertext.contains("a2V5"));
    }

    #[test]
    fn short_passphrases_and_absurd_parameters_are_refused() {
        assert!(seal("k", "short").is_err());
        let mut sealed = seal("k", "long enough").unwrap();
        sealed.memory_kib = u32::MAX;
        let e = sealed.open("long enough").unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
    }
}
