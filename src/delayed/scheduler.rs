//! The scheduler: one task that sleeps until the earliest scheduled send
//! time (woken early whenever a schedule changes), claims what is due and
//! sends it. Rows in storage are the schedule; the task keeps no copy, so
//! after a restart it picks up where the last run stopped.

use std::{sync::Arc, time::Duration};

use super::DelayedEvents;
use crate::storage::now_ms;

/// How long finalised delayed events stay readable (MSC4140 suggests up to
/// seven days).
const FINALISED_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// The longest the task sleeps without looking (and pruning).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// After a storage failure, the wait before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

impl DelayedEvents {
    /// Starts the scheduler. Events claimed by a previous run that stopped
    /// before finishing them are scheduled again first; those past due are
    /// sent at once.
    pub async fn start(self: &Arc<Self>) {
        if let Err(e) = self.db.reschedule_claimed_delayed_events().await {
            tracing::warn!(error = %e, "cannot reschedule the delayed events of the previous run");
        }
        let this = self.clone();
        let stop = self.stop.subscribe();
        let task = tokio::spawn(async move { this.run(stop).await });
        *self.task.lock().expect("the scheduler handle's mutex is never poisoned") = Some(task);
    }

    /// Stops the scheduler, letting a send in progress finish.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().expect("the scheduler handle's mutex is never poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut next_prune = 0;
        while !*stop.borrow() {
            let wait = match self.send_what_is_due(&mut next_prune).await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::warn!(error = %e, "delayed events: cannot read the schedule");
                    RETRY_AFTER_FAILURE
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Sends every due event; how long until the next is due.
    async fn send_what_is_due(&self, next_prune: &mut i64) -> crate::storage::Result<Duration> {
        let due = self.db.claim_due_delayed_events(now_ms()).await?;
        for row in due {
            self.send_due(row).await;
        }
        let now = now_ms();
        if now >= *next_prune {
            self.db.prune_finalised_delayed_events(now - FINALISED_RETENTION_MS).await?;
            *next_prune = now + MAX_SLEEP.as_millis() as i64;
        }
        Ok(match self.db.next_delayed_send_ts().await? {
            Some(ts) => Duration::from_millis(u64::try_from(ts - now_ms()).unwrap_or(0)).min(MAX_SLEEP),
            None => MAX_SLEEP,
        })
    }
}
