//! Slowing down password guessing: after too many failed sign-ins for one
//! username, or from one client address, within a window, further attempts
//! are refused (without hashing anything) until the window ends. Counted
//! in memory per installation: a restart forgets, which only gives a
//! guesser one more window.

use crate::{Result, ServiceError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits; see [`ThrottleConfig::default`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failed sign-ins for one username within `window` before refusing;
    /// 0 sets no limit.
    pub per_user: u32,
    /// Failed sign-ins from one client address within `window`; 0 sets no
    /// limit (behind a reverse proxy every client has the proxy's address).
    pub per_address: u32,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    /// Ten tries for a person who mistypes, thirty for an office behind one
    /// address; a guesser gets no more than a few thousand a day.
    fn default() -> Self {
        ThrottleConfig {
            per_user: 10,
            per_address: 30,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// The most usernames and addresses followed at once; past it, the oldest
/// windows are forgotten first, so the table cannot grow without end.
const MAX_FOLLOWED: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// One installation's failed sign-ins.
pub struct SignInThrottle {
    config: ThrottleConfig,
    windows: Mutex<HashMap<Key, Window>>,
}

/// An IPv4 address counts alone; an IPv6 one by its /64 network, which a
/// single client usually holds whole (and could otherwise walk through).
fn address_key(address: IpAddr) -> Key {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Address(IpAddr::V4(v4)),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                Key::Address(IpAddr::V6(network.into()))
            }
        },
        v4 => Key::Address(v4),
    }
}

fn user_key(username: &str) -> Key {
    // Usernames are unique regardless of case, so guesses are counted so.
    Key::User(username.trim().to_lowercase())
}

impl SignInThrottle {
    pub fn new(config: ThrottleConfig) -> SignInThrottle {
        SignInThrottle {
            config,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Window>> {
        // Counters stay usable even if a holder panicked.
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses an attempt for `username` from `address` that comes after
    /// too many failures, saying which limit and how long to wait.
    pub fn check(&self, username: &str, address: Option<IpAddr>) -> Result<()> {
        let now = Instant::now();
        let windows = self.windows();
        let blocked = |key: &Key, limit: u32| {
            windows.get(key).and_then(|w| {
                let ends = w.started + self.config.window;
                (limit > 0 && w.failures >= limit && now < ends).then(|| ends - now)
            })
        };
        let refusal = blocked(&user_key(username), self.config.per_user)
            .map(|wait| ("for this user", wait))
            .or_else(|| {
                let address = address_key(address?);
                blocked(&address, self.config.per_address).map(|wait| ("from this address", wait))
            });
        match refusal {
            None => Ok(()),
            Some((whose, wait)) => {
                // Whole seconds, rounded up, so a client that waits them is let in.
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(ServiceError::TooManyRequests {
                    message: format!(
                        "Too many failed sign-ins {whose}; try again in {}.",
                        in_words(seconds)
                    ),
                    retry_after: Duration::from_secs(seconds),
                })
            }
        }
    }

    /// Counts a failed attempt against the username and the address.
    pub fn failed(&self, username: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut windows = self.windows();
        let keys = std::iter::once(user_key(username)).chain(address.map(address_key));
        for key in keys {
            if !windows.contains_key(&key) && windows.len() >= MAX_FOLLOWED {
                windows.retain(|_, w| now < w.started + self.config.window);
                if windows.len() >= MAX_FOLLOWED {
                    let oldest = windows
                        .iter()
                        .min_by_key(|(_, w)| w.started)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        windows.remove(&oldest);
                    }
                }
            }
            let window = windows.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now >= window.started + self.config.window {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures = window.failures.saturating_add(1);
        }
    }

    /// A right password clears the username's failures (not the address's:
    /// one account's owner signing in does not vouch for other guesses).
    pub fn succeeded(&self, username: &str) {
        self.windows().remove(&user_key(username));
    }
}

fn in_words(seconds: u64) -> String {
    match seconds {
        0..=1 => "a second".into(),
        2..=119 => format!("{seconds} seconds"),
        _ => format!("{} minutes", seconds.div_ceil(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_user: u32, per_address: u32) -> SignInThrottle {
        SignInThrottle::new(ThrottleConfig {
            per_user,
            per_address,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn refuses_after_the_limit_per_user_and_per_address() {
        let t = throttle(2, 3);
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let there: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            t.check("Alice", Some(here)).unwrap();
            t.failed("Alice", Some(here));
        }
        let Err(ServiceError::TooManyRequests {
            message,
            retry_after,
        }) = t.check("alice", Some(there))
        else {
            panic!("not throttled per user");
        };
        assert!(
            message.contains("for this user") && message.contains("seconds"),
            "{message}"
        );
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60));
        t.check("bob", Some(here)).unwrap();
        t.failed("bob", Some(here));
        let Err(ServiceError::TooManyRequests { message, .. }) = t.check("carol", Some(here))
        else {
            panic!("not throttled per address");
        };
        assert!(message.contains("from this address"), "{message}");
        t.check("carol", Some(there)).unwrap();
        t.check("carol", None).unwrap();
        t.succeeded("ALICE");
        t.check("alice", Some(there)).unwrap();

        // One IPv6 /64 is one address.
        let v6 = throttle(100, 2);
        v6.failed("a", Some("2001:db8::1".parse().unwrap()));
        v6.failed("b", Some("2001:db8::ffff:2".parse().unwrap()));
        assert!(v6.check("c", Some("2001:db8::3".parse().unwrap())).is_err());
        assert!(v6
            .check("c", Some("2001:db8:0:1::3".parse().unwrap()))
            .is_ok());

        let unlimited = throttle(0, 0);
        for _ in 0..100 {
            unlimited.failed("alice", Some(here));
        }
        unlimited.check("alice", Some(here)).unwrap();
    }

    #[test]
    fn forgets_the_oldest_when_full() {
        let t = throttle(1, 1_000_000);
        for i in 0..MAX_FOLLOWED + 10 {
            t.failed(&format!("user{i}"), None);
        }
        assert_eq!(t.windows().len(), MAX_FOLLOWED);
        assert!(t.check(&format!("user{}", MAX_FOLLOWED + 9), None).is_err());
    }
}
