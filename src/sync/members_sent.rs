//! Which membership events each device has from lazy-loading `/sync`s
//! (client-server API, "Lazy-loading room members": unless the filter
//! sets `include_redundant_members`, the server may leave out membership
//! events it already sent to the client). In memory and bounded: a
//! forgotten entry only makes a membership event sent twice, never one
//! left out.
//!
//! What a response sent counts only once the device syncs from that
//! response's `next_batch` (so it received it): a response lost on the
//! way (a long poll the client gave up on) leaves nothing out later. An
//! initial sync starts the device's record afresh (the client starts
//! with nothing), as does a device whose record was evicted.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
};

use quick_cache::sync::Cache;
use ruma::{DeviceId, EventId, OwnedDeviceId, OwnedUserId, RoomId, UserId};

/// Devices whose record is kept.
const DEVICES: usize = 20_000;
/// Membership events remembered, over all devices (16 bytes each, and the
/// cache's own overhead).
const ENTRIES: usize = 400_000;

/// The membership events each device has, as hashes: an entry is the hash
/// of (device record, room, member) to the hash of the event id. The
/// hasher's keys are random per process, so no one can make two entries
/// collide on purpose.
pub struct MembersSent {
    devices: Cache<(OwnedUserId, OwnedDeviceId), Arc<Mutex<DeviceState>>>,
    entries: Cache<u64, u64>,
    hasher: RandomState,
}

/// A device's record.
struct DeviceState {
    /// A random number, new at each initial sync, part of every entry's
    /// key (so older entries no longer count).
    record: u64,
    /// What the last response sent, and the hash of its `next_batch`:
    /// entries once the device syncs from it.
    unconfirmed: Option<(u64, Vec<(u64, u64)>)>,
}

impl Default for MembersSent {
    fn default() -> Self {
        Self { devices: Cache::new(DEVICES), entries: Cache::new(ENTRIES), hasher: RandomState::new() }
    }
}

impl MembersSent {
    /// The device's record for one sync from `since` (`None`: an initial
    /// sync, which starts afresh). What the response that gave `since`
    /// sent is confirmed; what another response sent is not.
    pub fn device(&self, user: &UserId, device: &DeviceId, since: Option<&str>) -> DeviceMembers<'_> {
        let key = (user.to_owned(), device.to_owned());
        let state = match self.devices.get(&key) {
            Some(state) if since.is_some() => state,
            _ => {
                let state = Arc::new(Mutex::new(DeviceState { record: rand::random(), unconfirmed: None }));
                self.devices.insert(key, state.clone());
                state
            }
        };
        let record = {
            let mut device = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((token, entries)) = device.unconfirmed.take()
                && since.is_some_and(|since| self.hasher.hash_one(since) == token)
            {
                for (key, event) in entries {
                    self.entries.insert(key, event);
                }
            }
            device.record
        };
        DeviceMembers { sent: self, state, record, sending: Mutex::new(Vec::new()) }
    }
}

/// One device's record of membership events, for one sync.
pub struct DeviceMembers<'a> {
    sent: &'a MembersSent,
    state: Arc<Mutex<DeviceState>>,
    record: u64,
    /// What this response sends.
    sending: Mutex<Vec<(u64, u64)>>,
}

impl DeviceMembers<'_> {
    fn key(&self, room: &RoomId, member: &str) -> u64 {
        self.sent.hasher.hash_one((self.record, room, member))
    }

    fn event_hash(&self, event: &EventId) -> u64 {
        self.sent.hasher.hash_one(event)
    }

    /// Whether the device has `event` as `member`'s membership in `room`.
    pub fn was_sent(&self, room: &RoomId, member: &str, event: &EventId) -> bool {
        self.sent.entries.get(&self.key(room, member)) == Some(self.event_hash(event))
    }

    /// Notes that this response sends `event` as `member`'s membership.
    pub fn record(&self, room: &RoomId, member: &str, event: &EventId) {
        let entry = (self.key(room, member), self.event_hash(event));
        self.sending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(entry);
    }

    /// The response is going out with `next_batch`: what it sends counts
    /// once the device syncs from there.
    pub fn sent_with(self, next_batch: &str) {
        let sending = self.sending.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sending.is_empty() {
            return;
        }
        let mut device = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        device.unconfirmed = Some((self.sent.hasher.hash_one(next_batch), sending));
    }
}

#[cfg(test)]
mod tests {
    use ruma::{device_id, event_id, room_id, user_id};

    use super::MembersSent;

    #[test]
    fn a_device_has_what_a_response_it_synced_from_sent() {
        let sent = MembersSent::default();
        let (alice, phone, room) = (user_id!("@alice:x.test"), device_id!("PHONE"), room_id!("!r:x.test"));
        let (e1, e2) = (event_id!("$1"), event_id!("$2"));
        let first = sent.device(alice, phone, None);
        first.record(room, "@bob:x.test", e1);
        first.sent_with("s1");

        // A response the device did not sync from does not count.
        let lost = sent.device(alice, phone, Some("s0"));
        assert!(!lost.was_sent(room, "@bob:x.test", e1));
        lost.record(room, "@bob:x.test", e1);
        lost.sent_with("s2");
        let next = sent.device(alice, phone, Some("s2"));
        assert!(next.was_sent(room, "@bob:x.test", e1));
        assert!(!next.was_sent(room, "@bob:x.test", e2), "a newer membership was not sent");
        assert!(!next.was_sent(room, "@carol:x.test", e1));
        assert!(!next.was_sent(room_id!("!other:x.test"), "@bob:x.test", e1));
        next.sent_with("s3");

        let laptop = sent.device(alice, device_id!("LAPTOP"), Some("s3"));
        assert!(!laptop.was_sent(room, "@bob:x.test", e1), "each device has its own record");
        let again = sent.device(alice, phone, None);
        assert!(!again.was_sent(room, "@bob:x.test", e1), "an initial sync starts afresh");
    }
}
