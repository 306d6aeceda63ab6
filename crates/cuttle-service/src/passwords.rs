//! Hashing and checking passwords without stalling the server. Argon2 is
//! slow and memory-hard on purpose (tens of milliseconds and 19 MiB per
//! hash), which is what makes guessing expensive, and would make thirty
//! wrong passwords at once hold every async worker and half a gigabyte:
//! so hashes run on the blocking pool, at most a few at once, and the rest
//! wait their turn without holding a thread or memory.
//!
//! A username that does not exist is checked against a stand-in hash of the
//! same cost, so that a wrong guess takes as long whether or not the user
//! exists, and the time of an answer does not tell which users do.

use crate::{Result, ServiceError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A hash in the format and with the parameters [`crate::auth::hash_password`]
/// writes (argon2id, 19 MiB, two passes), of no password anyone knows:
/// checking a password against it costs what checking a real one does, and
/// always fails.
pub(crate) const STAND_IN_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
    c3RhbmQtaW4tc2FsdC0wMQ$\
    3lq6BIxiH+7EDWbKOZ+Nc7Hc9O5EZ0mNk7YnR9Vp3yE";

/// One installation's password hashing.
pub struct Passwords {
    /// One per hash allowed to run at once; waiting for one holds nothing.
    permits: Arc<Semaphore>,
    /// How many password checks have run, the stand-in ones included.
    checks: AtomicU64,
}

impl Passwords {
    /// At most `max_concurrent` hashes at once (at least one).
    pub fn new(max_concurrent: usize) -> Passwords {
        Passwords {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            checks: AtomicU64::new(0),
        }
    }

    /// As many hashes at once as the machine has cores.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Runs `work` on the blocking pool once a permit is free. The permit
    /// goes with the work, so a caller that gives up (a client that hangs
    /// up) still frees it only when the hash is done: the limit holds.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("password hashing has stopped".into()))?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
    }

    /// The argon2 hash of `password`, to store.
    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.run(move || crate::auth::hash_password(&password))
            .await?
    }

    /// Whether `password` matches `hash`; with no hash (an unknown user, or
    /// one without a password) it is checked against the stand-in, which
    /// takes as long and never matches.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let password = password.to_owned();
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (STAND_IN_HASH.to_owned(), false),
        };
        let matched = self
            .run(move || crate::auth::verify_password(&password, &hash))
            .await?;
        Ok(matched && real)
    }

    /// How many password checks have run since start.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHash;
    use argon2::{Argon2, Params};

    #[test]
    fn the_stand_in_costs_what_a_real_hash_does() {
        let stand_in = PasswordHash::new(STAND_IN_HASH).unwrap();
        let real_text = crate::auth::hash_password("a real password").unwrap();
        let real = PasswordHash::new(&real_text).unwrap();
        assert_eq!(stand_in.algorithm, real.algorithm);
        assert_eq!(stand_in.version, real.version);
        let params = |h: &PasswordHash| Params::try_from(h).unwrap();
        assert_eq!(params(&stand_in), params(&real));
        let default = Argon2::default();
        let default = default.params();
        let costs = |p: &Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(costs(&params(&stand_in)), costs(default));
        assert_eq!(
            params(&stand_in).output_len(),
            Some(Params::DEFAULT_OUTPUT_LEN)
        );
        assert_eq!(stand_in.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[tokio::test]
    async fn an_unknown_user_is_checked_against_the_stand_in() {
        let passwords = Passwords::new(1);
        let hash = passwords.hash("s3cret-words").await.unwrap();
        assert!(passwords.verify("s3cret-words", Some(&hash)).await.unwrap());
        assert!(!passwords.verify("wrong", Some(&hash)).await.unwrap());
        assert!(!passwords.verify("s3cret-words", None).await.unwrap());
        assert_eq!(passwords.checks(), 3);
    }
}
