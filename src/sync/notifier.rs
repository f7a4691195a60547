//! The notifier: current stream positions, and wake-ups for the syncs of
//! exactly the users a change concerns. A waiting sync holds one
//! registration on its user's `Notify`: no thread, no polling, a few
//! hundred bytes. Kept behind this small interface so that a broker can
//! carry wake-ups between processes later.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicI64, Ordering},
    },
};

use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;

use super::token::SyncToken;

pub struct Notifier {
    events: AtomicI64,
    misc: AtomicI64,
    typing: AtomicI64,
    users: Mutex<HashMap<OwnedUserId, Weak<Notify>>>,
}

impl Notifier {
    /// Starts at the stored positions; typing starts at the boot time in
    /// milliseconds, above anything a previous run handed out.
    pub fn new(events: i64, misc: i64, boot_ms: i64) -> Self {
        Self {
            events: AtomicI64::new(events),
            misc: AtomicI64::new(misc),
            typing: AtomicI64::new(boot_ms),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Every position committed so far.
    pub fn current(&self) -> SyncToken {
        SyncToken {
            events: self.events.load(Ordering::Acquire),
            misc: self.misc.load(Ordering::Acquire),
            typing: self.typing.load(Ordering::Acquire),
        }
    }

    /// The wake-up handle of a user's syncs.
    pub fn listener(&self, user: &UserId) -> Arc<Notify> {
        let mut users = self.users.lock().expect("notifier mutex is never poisoned");
        if let Some(existing) = users.get(user).and_then(Weak::upgrade) {
            return existing;
        }
        // Drop handles nobody waits on any more, so the map stays small.
        if users.len() > 1024 && users.len().is_power_of_two() {
            users.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        users.insert(user.to_owned(), Arc::downgrade(&notify));
        notify
    }

    /// Whether a sync of this user is waiting now (tests and diagnostics).
    pub fn is_waiting(&self, user: &UserId) -> bool {
        let users = self.users.lock().expect("notifier mutex is never poisoned");
        users.get(user).is_some_and(|w| w.strong_count() > 0)
    }

    fn wake<'a>(&self, users: impl IntoIterator<Item = &'a UserId>) {
        let map = self.users.lock().expect("notifier mutex is never poisoned");
        for user in users {
            if let Some(notify) = map.get(user).and_then(Weak::upgrade) {
                notify.notify_waiters();
            }
        }
    }

    /// A room event at `position` was committed; wake `users`.
    pub fn events_committed<'a>(&self, position: i64, users: impl IntoIterator<Item = &'a UserId>) {
        self.events.fetch_max(position, Ordering::AcqRel);
        self.wake(users);
    }

    /// An account data, receipt or presence change at `position` was
    /// committed; wake `users`.
    pub fn misc_committed<'a>(&self, position: i64, users: impl IntoIterator<Item = &'a UserId>) {
        self.misc.fetch_max(position, Ordering::AcqRel);
        self.wake(users);
    }

    /// Typing changed; wake `users`. Returns the new typing position.
    pub fn typing_changed<'a>(&self, users: impl IntoIterator<Item = &'a UserId>) -> i64 {
        let pos = self.typing.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake(users);
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_only_the_named_users() {
        let notifier = Notifier::new(0, 0, 100);
        let alice = ruma::user_id!("@alice:x");
        let bob = ruma::user_id!("@bob:x");
        let a = notifier.listener(alice);
        let b = notifier.listener(bob);
        let a_wait = a.notified();
        let b_wait = b.notified();
        tokio::pin!(a_wait, b_wait);
        a_wait.as_mut().enable();
        b_wait.as_mut().enable();
        notifier.events_committed(3, [alice]);
        tokio::time::timeout(std::time::Duration::from_secs(1), a_wait).await.expect("alice is woken");
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), b_wait).await.is_err(), "bob sleeps on");
        assert_eq!(notifier.current().events, 3);
        assert_eq!(notifier.typing_changed([bob]), 101);
    }
}
