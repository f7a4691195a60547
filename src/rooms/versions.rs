//! Which room versions this server can create and follow, as advertised in
//! the `m.room_versions` capability.

use std::collections::BTreeMap;

use ruma::{
    RoomVersionId,
    api::client::discovery::get_capabilities::v3::{RoomVersionStability, RoomVersionsCapability},
};

/// Room versions that work end to end on this server. Only versions listed
/// here are advertised, so clients never pick one that would fail.
pub const SUPPORTED: &[RoomVersionId] = &[];

/// The version new rooms get when the client does not ask for one.
pub const DEFAULT: RoomVersionId = RoomVersionId::V11;

pub fn capability() -> RoomVersionsCapability {
    let available: BTreeMap<_, _> = SUPPORTED
        .iter()
        .map(|v| (v.clone(), RoomVersionStability::Stable))
        .collect();
    RoomVersionsCapability::new(DEFAULT, available)
}
