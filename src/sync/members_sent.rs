//! Which membership events each device was sent by lazy-loading `/sync`s
//! (client-server API, "Lazy-loading room members": unless the filter
//! sets `include_redundant_members`, the server may leave out membership
//! events it already sent to the client). In memory and bounded: a
//! forgotten entry only makes a membership event sent twice, never one
//! left out. An initial sync starts the device's record afresh (the
//! client starts with nothing), as does a device whose record was
//! evicted.

use std::hash::{BuildHasher, Hash, RandomState};

use quick_cache::sync::Cache;
use ruma::{DeviceId, EventId, OwnedDeviceId, OwnedUserId, RoomId, UserId};

/// Devices whose record is kept.
const DEVICES: usize = 20_000;
/// Membership events remembered, over all devices (16 bytes each, and the
/// cache's own overhead).
const ENTRIES: usize = 400_000;

/// The membership events sent to each device, as hashes: an entry is the
/// hash of (device record, room, member) to the hash of the event id.
/// The hasher's keys are random per process, so no one can make two
/// entries collide on purpose.
pub struct MembersSent {
    /// A device's current record: a random number, new at each initial
    /// sync, part of every entry's key (so older entries no longer count).
    records: Cache<(OwnedUserId, OwnedDeviceId), u64>,
    entries: Cache<u64, u64>,
    hasher: RandomState,
}

impl Default for MembersSent {
    fn default() -> Self {
        Self { records: Cache::new(DEVICES), entries: Cache::new(ENTRIES), hasher: RandomState::new() }
    }
}

impl MembersSent {
    /// The device's record, started afresh when `initial` (or unknown).
    pub fn device(&self, user: &UserId, device: &DeviceId, initial: bool) -> DeviceMembers<'_> {
        let key = (user.to_owned(), device.to_owned());
        let record = match self.records.get(&key) {
            Some(record) if !initial => record,
            _ => {
                let record = rand::random();
                self.records.insert(key, record);
                record
            }
        };
        DeviceMembers { sent: self, record }
    }
}

/// One device's record of membership events sent, for one sync.
#[derive(Clone, Copy)]
pub struct DeviceMembers<'a> {
    sent: &'a MembersSent,
    record: u64,
}

impl DeviceMembers<'_> {
    fn key(&self, room: &RoomId, member: &str) -> u64 {
        self.sent.hasher.hash_one((self.record, room, member))
    }

    fn event_hash(&self, event: &EventId) -> u64 {
        let mut h = self.sent.hasher.build_hasher();
        event.hash(&mut h);
        std::hash::Hasher::finish(&h)
    }

    /// Whether `event` is the membership of `member` in `room` this device
    /// was last sent.
    pub fn was_sent(&self, room: &RoomId, member: &str, event: &EventId) -> bool {
        self.sent.entries.get(&self.key(room, member)) == Some(self.event_hash(event))
    }

    /// Notes that the device was sent `event` as `member`'s membership.
    pub fn record(&self, room: &RoomId, member: &str, event: &EventId) {
        self.sent.entries.insert(self.key(room, member), self.event_hash(event));
    }
}

#[cfg(test)]
mod tests {
    use ruma::{device_id, event_id, room_id, user_id};

    use super::MembersSent;

    #[test]
    fn a_device_remembers_what_it_was_sent_until_it_starts_afresh() {
        let sent = MembersSent::default();
        let (alice, room) = (user_id!("@alice:x.test"), room_id!("!r:x.test"));
        let (e1, e2) = (event_id!("$1"), event_id!("$2"));
        let phone = sent.device(alice, device_id!("PHONE"), true);
        phone.record(room, "@bob:x.test", e1);
        let phone = sent.device(alice, device_id!("PHONE"), false);
        assert!(phone.was_sent(room, "@bob:x.test", e1));
        assert!(!phone.was_sent(room, "@bob:x.test", e2), "a newer membership was not sent");
        assert!(!phone.was_sent(room, "@carol:x.test", e1));
        assert!(!phone.was_sent(room_id!("!other:x.test"), "@bob:x.test", e1));
        let laptop = sent.device(alice, device_id!("LAPTOP"), false);
        assert!(!laptop.was_sent(room, "@bob:x.test", e1), "each device has its own record");
        let phone = sent.device(alice, device_id!("PHONE"), true);
        assert!(!phone.was_sent(room, "@bob:x.test", e1), "an initial sync starts afresh");
    }
}
