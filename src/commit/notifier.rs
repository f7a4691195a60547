//! The notifier: current stream positions, and wake-ups for the syncs of
//! exactly the users a change concerns. A waiting sync holds one
//! registration on its user's `Notify`: no thread, no polling, a few
//! hundred bytes. Syncs see it through the small `Notifier` interface; the
//! commit pipeline feeds it as its first listener. A broker-backed
//! implementation (several processes) replaces `LocalNotifier` behind the
//! same interface.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicI64, Ordering},
    },
};

use futures_util::future::BoxFuture;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::Notify;

use super::{Commit, CommitListener, Stream, token::SyncToken};

/// What syncs need of the notifier: the positions committed so far, and a
/// handle that is woken when something concerning a user is committed.
pub trait Notifier: Send + Sync {
    /// Every position committed so far.
    fn current(&self) -> SyncToken;
    /// The wake-up handle of a user's syncs.
    fn listener(&self, user: &UserId) -> Arc<Notify>;
    /// The wake-up handle of those who peek into a room without being
    /// in it (the legacy `/events?room_id=`): woken by every event that
    /// becomes part of the room.
    fn room_listener(&self, room: &RoomId) -> Arc<Notify>;
    /// Whether a sync of this user is waiting now (tests and diagnostics).
    fn is_waiting(&self, user: &UserId) -> bool;
    /// Whether someone peeking into this room is waiting now (tests and
    /// diagnostics).
    fn is_room_waiting(&self, room: &RoomId) -> bool;
    /// Wakes every waiting sync (at shutdown, so held syncs answer at once
    /// instead of holding the stop up until their timeouts).
    fn wake_all(&self);
}

/// The notifier of one process: positions in atomics, one weak `Notify`
/// per user.
pub struct LocalNotifier {
    events: AtomicI64,
    misc: AtomicI64,
    typing: AtomicI64,
    users: Mutex<HashMap<OwnedUserId, Weak<Notify>>>,
    rooms: Mutex<HashMap<OwnedRoomId, Weak<Notify>>>,
}

impl LocalNotifier {
    /// Starts at the stored positions; typing starts at `typing`, the
    /// typing stream's start (see `streams::Typing`).
    pub fn new(events: i64, misc: i64, typing: i64) -> Self {
        Self {
            events: AtomicI64::new(events),
            misc: AtomicI64::new(misc),
            typing: AtomicI64::new(typing),
            users: Mutex::new(HashMap::new()),
            rooms: Mutex::new(HashMap::new()),
        }
    }
}

impl Notifier for LocalNotifier {
    fn current(&self) -> SyncToken {
        SyncToken {
            events: self.events.load(Ordering::Acquire),
            misc: self.misc.load(Ordering::Acquire),
            typing: self.typing.load(Ordering::Acquire),
        }
    }

    fn listener(&self, user: &UserId) -> Arc<Notify> {
        handle(&self.users, user)
    }

    fn room_listener(&self, room: &RoomId) -> Arc<Notify> {
        handle(&self.rooms, room)
    }

    fn is_waiting(&self, user: &UserId) -> bool {
        let users = self.users.lock().expect("notifier mutex is never poisoned");
        users.get(user).is_some_and(|w| w.strong_count() > 0)
    }

    fn is_room_waiting(&self, room: &RoomId) -> bool {
        let rooms = self.rooms.lock().expect("notifier mutex is never poisoned");
        rooms.get(room).is_some_and(|w| w.strong_count() > 0)
    }

    fn wake_all(&self) {
        let rooms = self.rooms.lock().expect("notifier mutex is never poisoned");
        rooms.values().filter_map(Weak::upgrade).for_each(|notify| notify.notify_waiters());
        drop(rooms);
        let users = self.users.lock().expect("notifier mutex is never poisoned");
        users.values().filter_map(Weak::upgrade).for_each(|notify| notify.notify_waiters());
    }
}

/// The live handle of `key` in `map`, made if there is none.
fn handle<K, Q>(map: &Mutex<HashMap<K, Weak<Notify>>>, key: &Q) -> Arc<Notify>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
{
    let mut map = map.lock().expect("notifier mutex is never poisoned");
    if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
        return existing;
    }
    // Drop handles nobody waits on any more, so the map stays small.
    if map.len() > 1024 && map.len().is_power_of_two() {
        map.retain(|_, w| w.strong_count() > 0);
    }
    let notify = Arc::new(Notify::new());
    map.insert(key.to_owned(), Arc::downgrade(&notify));
    notify
}

impl CommitListener for LocalNotifier {
    fn committed<'a>(&'a self, commit: &'a Commit<'a>) -> BoxFuture<'a, ()> {
        if let Some((stream, position)) = commit.position() {
            let counter = match stream {
                Stream::Events => &self.events,
                Stream::Misc => &self.misc,
                Stream::Typing => &self.typing,
            };
            counter.fetch_max(position, Ordering::AcqRel);
            let map = self.users.lock().expect("notifier mutex is never poisoned");
            commit.for_each_concerned(|user| {
                if let Some(notify) = map.get(user).and_then(Weak::upgrade) {
                    notify.notify_waiters();
                }
            });
            drop(map);
            if let Commit::RoomEvent { event, .. } = commit {
                let rooms = self.rooms.lock().expect("notifier mutex is never poisoned");
                if let Some(notify) = rooms.get(&event.room).and_then(Weak::upgrade) {
                    notify.notify_waiters();
                }
            }
        }
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_only_the_named_users() {
        let notifier = LocalNotifier::new(0, 0, 100);
        let alice = ruma::user_id!("@alice:x");
        let bob = ruma::user_id!("@bob:x");
        let a = notifier.listener(alice);
        let b = notifier.listener(bob);
        let a_wait = a.notified();
        let b_wait = b.notified();
        tokio::pin!(a_wait, b_wait);
        a_wait.as_mut().enable();
        b_wait.as_mut().enable();
        let event = crate::pdu::Pdu::from_json(
            "$e".try_into().unwrap(),
            "!r:x".try_into().unwrap(),
            r#"{"type":"m.room.message","sender":"@alice:x","content":{},"depth":1,"origin_server_ts":1,"prev_events":[],"auth_events":[]}"#,
        )
        .unwrap();
        let peeker = notifier.listener(ruma::user_id!("@peeker:x"));
        let room_handle = notifier.room_listener(ruma::room_id!("!r:x"));
        let (peeker_wait, room_wait) = (peeker.notified(), room_handle.notified());
        tokio::pin!(peeker_wait, room_wait);
        peeker_wait.as_mut().enable();
        room_wait.as_mut().enable();
        notifier.committed(&Commit::RoomEvent { position: 3, event: &event, wake: &[alice], destinations: &[] }).await;
        tokio::time::timeout(std::time::Duration::from_secs(1), a_wait).await.expect("alice is woken");
        tokio::time::timeout(std::time::Duration::from_secs(1), room_wait).await.expect("the room's peekers are woken");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), peeker_wait).await.is_err(),
            "a user not named sleeps on"
        );
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), b_wait).await.is_err(), "bob sleeps on");
        assert_eq!(notifier.current().events, 3);
        let room = ruma::room_id!("!r:x");
        let typing = Commit::Typing {
            position: Some(101),
            room_id: room,
            user: bob,
            typing: true,
            expired: false,
            wake: &[bob],
        };
        notifier.committed(&typing).await;
        assert_eq!(notifier.current().typing, 101);
        // A renewed notice moves no position and wakes nobody.
        let renewed =
            Commit::Typing { position: None, room_id: room, user: bob, typing: true, expired: false, wake: &[bob] };
        notifier.committed(&renewed).await;
        assert_eq!(notifier.current().typing, 101);
    }
}
