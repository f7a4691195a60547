//! The commit pipeline: the one place where what was committed is
//! announced. Every event that becomes part of a room (a local send, a
//! remote PDU, a room created or joined over federation, an invite to a
//! room of another server) and every stream change (typing, receipts,
//! presence, account data, to-device messages, device lists) is handed,
//! after its commit, to `CommitPipeline::committed`, which gives it to the
//! registered listeners in their fixed order: push evaluation, the
//! notifier (wakes syncs), the federation sender, the search index, the
//! appservice queues, and later metrics and a broker. A feature adds a listener; it never adds a call site.
//!
//! This module sits below the domains: it knows PDUs and storage rows, not
//! rooms or sync. `notifier` holds the wake-ups and current positions,
//! `token` the sync token over the stream positions.

pub mod notifier;
pub mod token;

use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use ruma::{EventId, OwnedServerName, OwnedUserId, RoomId, UserId};
use serde_json::Value;

pub use self::{
    notifier::{LocalNotifier, Notifier},
    token::SyncToken,
};
use crate::{pdu::Pdu, storage::streams::PresenceRow};

/// Something that was committed, as the listeners see it. Borrowed: the
/// pipeline runs on the path that committed it, and a listener that keeps
/// anything clones what it keeps.
#[derive(Debug)]
pub enum Commit<'a> {
    /// An event became part of a room at `position` of the events stream.
    RoomEvent {
        position: i64,
        event: &'a Pdu,
        /// The local users whose syncs it concerns: the members after it,
        /// a membership change's target, the sender.
        wake: &'a [&'a UserId],
        /// The servers it was queued for, in the transaction that stored it.
        destinations: &'a [OwnedServerName],
    },
    /// Older events of a room fetched from another server, stored below
    /// the start of the timeline (at negative positions): part of the
    /// room's history, but news to nobody.
    Backfilled { room_id: &'a RoomId, events: &'a [Pdu] },
    /// A local user's invite to, knock on or declined invite of a room this
    /// server is not in (kept with its stripped state, not in a timeline).
    RemoteInvite { position: i64, user: &'a UserId },
    /// Global (`room` = None) or room account data of `user` changed.
    AccountData { position: i64, user: &'a UserId },
    /// A read receipt (public or private) at `position` of the misc stream.
    Receipt {
        position: i64,
        room_id: &'a RoomId,
        user: &'a UserId,
        receipt_type: &'a str,
        event_id: &'a EventId,
        thread: Option<&'a str>,
        wake: &'a [&'a UserId],
    },
    /// A user started or stopped typing. `position` is the typing stream's
    /// new position, or `None` when a client only renewed its notice.
    /// `expired` marks a notice that timed out here.
    Typing {
        position: Option<i64>,
        room_id: &'a RoomId,
        user: &'a UserId,
        typing: bool,
        expired: bool,
        wake: &'a [&'a UserId],
    },
    /// A presence row was stored (a local user's, or one another server
    /// reported); `audience` shares a room with its user.
    Presence { position: i64, row: &'a PresenceRow, user: &'a UserId, audience: &'a [OwnedUserId] },
    /// To-device messages were queued for local devices (`position`, or
    /// `None` for a retried transaction) and/or are addressed to devices of
    /// other servers (`remote`).
    ToDevice { position: Option<i64>, wake: &'a [&'a UserId], sender: &'a UserId, remote: Option<&'a RemoteToDevice> },
    /// A user's device list changed; `audience` shares a room with them.
    DeviceList { position: i64, user: &'a UserId, audience: &'a [OwnedUserId] },
    /// A device's one-time or fallback keys changed (an upload, a claim);
    /// no stream moves: `/sync` reads the counts each time.
    OneTimeKeys { user: &'a UserId, device: &'a str },
}

/// To-device messages for users of other servers.
#[derive(Debug, Clone)]
pub struct RemoteToDevice {
    pub kind: String,
    /// Unique per sender device and transaction.
    pub message_id: String,
    /// `(user, device or "*", content)`.
    pub messages: Vec<(OwnedUserId, String, Value)>,
}

/// Which stream a commit moved, for the notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Events,
    Misc,
    Typing,
}

impl Commit<'_> {
    /// The stream position the commit made visible, if it made one.
    pub fn position(&self) -> Option<(Stream, i64)> {
        match self {
            Commit::RoomEvent { position, .. } | Commit::RemoteInvite { position, .. } => {
                Some((Stream::Events, *position))
            }
            Commit::AccountData { position, .. }
            | Commit::Receipt { position, .. }
            | Commit::Presence { position, .. }
            | Commit::DeviceList { position, .. } => Some((Stream::Misc, *position)),
            Commit::ToDevice { position, .. } => position.map(|p| (Stream::Misc, p)),
            Commit::Backfilled { .. } | Commit::OneTimeKeys { .. } => None,
            Commit::Typing { position, .. } => position.map(|p| (Stream::Typing, p)),
        }
    }

    /// Calls `f` for every user whose syncs the commit concerns.
    pub fn for_each_concerned(&self, mut f: impl FnMut(&UserId)) {
        match self {
            Commit::RoomEvent { wake, .. }
            | Commit::Receipt { wake, .. }
            | Commit::Typing { wake, .. }
            | Commit::ToDevice { wake, .. } => wake.iter().for_each(|u| f(u)),
            Commit::RemoteInvite { user, .. } | Commit::AccountData { user, .. } => f(user),
            Commit::Backfilled { .. } | Commit::OneTimeKeys { .. } => {}
            Commit::Presence { user, audience, .. } | Commit::DeviceList { user, audience, .. } => {
                audience.iter().for_each(|u| f(u));
                f(user);
            }
        }
    }
}

/// A listener of the commit pipeline. It runs on the path that committed
/// the change, before that path answers its client, so it must be quick:
/// work that may wait on the network is spawned or queued.
pub trait CommitListener: Send + Sync {
    fn committed<'a>(&'a self, commit: &'a Commit<'a>) -> BoxFuture<'a, ()>;
}

/// The ordered listeners every commit goes through.
#[derive(Default)]
pub struct CommitPipeline {
    listeners: OnceLock<Vec<Arc<dyn CommitListener>>>,
}

impl CommitPipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the listeners, in the order they run. Done once, while the
    /// services are wired; a second call is refused.
    pub fn install(&self, listeners: Vec<Arc<dyn CommitListener>>) -> Result<(), &'static str> {
        self.listeners.set(listeners).map_err(|_| "the commit pipeline's listeners are already installed")
    }

    /// Hands a committed change to every listener, in order.
    pub async fn committed(&self, commit: Commit<'_>) {
        let Some(listeners) = self.listeners.get() else { return };
        for listener in listeners {
            listener.committed(&commit).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    struct Record(&'static str, Arc<Mutex<Vec<String>>>);

    impl CommitListener for Record {
        fn committed<'a>(&'a self, commit: &'a Commit<'a>) -> BoxFuture<'a, ()> {
            let mut seen = Vec::new();
            commit.for_each_concerned(|u| seen.push(u.to_string()));
            self.1.lock().unwrap().push(format!("{}:{:?}:{}", self.0, commit.position(), seen.join(",")));
            Box::pin(std::future::ready(()))
        }
    }

    #[tokio::test]
    async fn listeners_run_in_their_order_once_installed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let pipeline = CommitPipeline::new();
        let alice = ruma::user_id!("@alice:x");
        // Nothing is installed yet: nothing runs, nothing fails.
        pipeline.committed(Commit::AccountData { position: 1, user: alice }).await;
        pipeline
            .install(vec![Arc::new(Record("first", log.clone())), Arc::new(Record("second", log.clone()))])
            .unwrap();
        assert!(pipeline.install(Vec::new()).is_err());
        pipeline.committed(Commit::AccountData { position: 2, user: alice }).await;
        assert_eq!(*log.lock().unwrap(), ["first:Some((Misc, 2)):@alice:x", "second:Some((Misc, 2)):@alice:x"]);
    }
}
