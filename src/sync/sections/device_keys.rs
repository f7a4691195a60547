//! Device lists and key counts (client-server API, "End-to-End
//! Encryption", "Extensions to /sync"): whose device lists changed since
//! the token and who no longer shares a room, and the syncing device's
//! one-time and unused fallback key counts.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ruma::{OneTimeKeyAlgorithm, OwnedUserId, UInt, UserId, api::client::sync::sync_events::DeviceLists};

/// The rows the user read found about other users' devices.
pub struct DeviceListRows {
    /// Users whose device lists changed in the window.
    pub changes: Vec<String>,
    /// Everyone who shares a room with the user now.
    pub users_sharing_rooms: Vec<String>,
    /// Membership changes in the user's rooms in the window: `(user, membership)`.
    pub membership_changes_seen: Vec<(String, String)>,
}

/// Device list changes since the token. New room-mates' devices are news
/// too; former room-mates are `left`.
pub fn device_lists(user: &UserId, rows: DeviceListRows) -> DeviceLists {
    let mut changed: BTreeSet<String> = rows.changes.into_iter().collect();
    let shared: HashSet<String> = rows.users_sharing_rooms.into_iter().collect();
    let mut left = BTreeSet::new();
    for (other, membership) in rows.membership_changes_seen {
        if other == user.as_str() {
            continue;
        }
        if membership == "join" && shared.contains(&other) {
            changed.insert(other);
        } else if membership != "join" && !shared.contains(&other) {
            left.insert(other);
        }
    }
    let mut lists = DeviceLists::new();
    lists.changed = changed.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
    lists.left = left.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
    lists
}

/// The device's unclaimed one-time keys by algorithm; `signed_curve25519`
/// is always there, so clients know to upload more.
pub fn one_time_key_counts(rows: Vec<(String, i64)>) -> BTreeMap<OneTimeKeyAlgorithm, UInt> {
    let mut counts = BTreeMap::new();
    for (algorithm, count) in rows {
        counts.insert(algorithm.as_str().into(), UInt::try_from(count.max(0) as u64).unwrap_or_default());
    }
    counts.entry("signed_curve25519".into()).or_insert_with(|| UInt::from(0u32));
    counts
}

/// The algorithms of the device's unused fallback keys.
pub fn fallback_key_types(rows: Vec<String>) -> Vec<OneTimeKeyAlgorithm> {
    rows.iter().map(|a| a.as_str().into()).collect()
}
