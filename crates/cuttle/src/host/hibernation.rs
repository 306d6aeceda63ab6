//! Hibernation: an instance with no request, no connected agent and no
//! task running or due for `--idle-after` is closed (its database pool,
//! runner and loops), leaving an [`Asleep`] record; the next request,
//! polling agent or due job (a scheduled task or health check) opens it
//! again. Whoever comes first wakes it, once; the others wait for that.

use super::instances::{Asleep, Host, HostError, Served, Slot};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Why an instance could not be reached: what its slot is instead.
pub enum Unreachable {
    Suspended,
    Busy,
    Failed,
    Unknown,
}

impl Host {
    /// The instance `name`, woken if it sleeps (waiting for a wake under
    /// way rather than starting another).
    pub async fn wake(&self, name: &str) -> Result<Arc<Served>, Unreachable> {
        loop {
            let asleep = match self.slot(name) {
                Some(Slot::Serving(served)) => return Ok(served),
                Some(Slot::Asleep(asleep)) => asleep,
                Some(Slot::Suspended) => return Err(Unreachable::Suspended),
                Some(Slot::Busy) => return Err(Unreachable::Busy),
                Some(Slot::Failed(_)) => return Err(Unreachable::Failed),
                None => return Err(Unreachable::Unknown),
            };
            let mut gone = asleep.gate.lock().await;
            if *gone {
                // Woken, put back or replaced while this waited: look again.
                continue;
            }
            let started = std::time::Instant::now();
            let opened = match self.registry_record(name).await {
                Ok(record) => self.open_instance(&record, Some(&asleep)).await,
                Err(e) => Err(e),
            };
            *gone = true;
            return match opened {
                Ok(served) => {
                    self.set_slot(name, Slot::Serving(served.clone()));
                    tracing::info!(instance = %name, took_ms = started.elapsed().as_millis() as u64, "instance woken");
                    Ok(served)
                }
                Err(HostError::NotFound(_)) => {
                    self.take_slot(name);
                    Err(Unreachable::Unknown)
                }
                Err(e) => {
                    tracing::error!(instance = %name, error = %e, "could not wake an instance");
                    self.set_slot(name, Slot::Failed(e.to_string()));
                    Err(Unreachable::Failed)
                }
            };
        }
    }

    /// Puts `name` to sleep if it is still `served` and still idle, and no
    /// lifecycle operation is under way on it. `wake_at`: when it has work
    /// to do by itself.
    async fn sleep(&self, name: &str, served: Arc<Served>, wake_at: Option<i64>) {
        let Ok(_changing) = self.begin_change(name) else {
            return;
        };
        let last_active = served.last_active();
        let asleep = Arc::new(Asleep {
            last_active,
            wake_at,
            jobs: served.instance.config.job_times.clone(),
            metrics: served.instance.config.kept_metrics.clone(),
            gate: Default::default(),
        });
        // Held until it is closed: a request meanwhile waits, then wakes it.
        let mut gone = asleep.gate.clone().lock_owned().await;
        match self.slot(name) {
            Some(Slot::Serving(now)) if Arc::ptr_eq(&now, &served) => {
                self.set_slot(name, Slot::Asleep(asleep.clone()))
            }
            _ => return,
        }
        // A request that took the instance just before it was swapped out
        // has counted itself by now (it counts, then checks the slot).
        if served.in_flight() > 0
            || served.last_active() != last_active
            || served.instance.is_busy()
        {
            self.set_slot(name, Slot::Serving(served));
            *gone = true;
            return;
        }
        // Its hosted worker's registration is in its database: wiped while
        // that is still open. A step after the wake is lent a fresh one.
        self.end_hosted_worker_lease(name).await;
        super::polling::refresh(self, name, &served.instance).await;
        self.close_instance(name, served).await;
        drop(gone);
        tracing::info!(instance = %name, "instance asleep");
    }

    /// One round: idle instances are put to sleep, asleep ones whose work
    /// is due are woken.
    async fn hibernate_round(self: &Arc<Self>) {
        let now = now_millis();
        let idle_ms = i64::try_from(self.config.idle_after.as_millis()).unwrap_or(i64::MAX);
        for (name, slot) in self.slots() {
            match slot {
                Slot::Serving(served) => {
                    let idle = served.in_flight() == 0
                        && now.saturating_sub(served.idle_since()) >= idle_ms
                        && !served.instance.is_busy();
                    if !idle {
                        continue;
                    }
                    let due = match served.instance.next_due().await {
                        Ok(due) => due,
                        Err(e) => {
                            tracing::warn!(instance = %name, error = %e, "could not tell whether an instance has work due");
                            continue;
                        }
                    };
                    // Work due soon: cheaper to stay awake for it.
                    if due.is_some_and(|at| at <= now.saturating_add(idle_ms)) {
                        continue;
                    }
                    let host = self.clone();
                    tokio::spawn(async move { host.sleep(&name, served, due).await });
                }
                Slot::Asleep(asleep) if asleep.wake_at.is_some_and(|at| at <= now) => {
                    let host = self.clone();
                    tokio::spawn(async move {
                        if let Ok(served) = host.wake(&name).await {
                            tracing::info!(instance = %name, "woken for work due");
                            drop(served);
                        }
                    });
                }
                _ => {}
            }
        }
    }
}

/// Runs hibernation rounds for as long as the host lives.
pub fn follow(host: Weak<Host>, idle_after: Duration) {
    // Often enough that an instance sleeps soon after its idle time, and
    // a due job waits at most a second.
    let every = (idle_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(host) = host.upgrade() else { return };
            host.hibernate_round().await;
        }
    });
}

fn now_millis() -> i64 {
    cuttle_model::Timestamp::now().millis()
}
