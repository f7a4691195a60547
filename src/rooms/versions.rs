//! Which room versions this server can create and follow, as advertised in
//! the `m.room_versions` capability.

use std::collections::BTreeMap;

use ruma::{
    RoomVersionId,
    api::client::discovery::get_capabilities::v3::{RoomVersionStability, RoomVersionsCapability},
};

/// Room versions that work end to end on this server: every stable
/// version (1 and 2 with their own event id and reference formats, see
/// `event_format`; 1 with its own state resolution, `state_res_v1`). Only
/// versions listed here are advertised, so clients never pick one that
/// would fail.
pub const SUPPORTED: &[RoomVersionId] = &[
    RoomVersionId::V1,
    RoomVersionId::V2,
    RoomVersionId::V3,
    RoomVersionId::V4,
    RoomVersionId::V5,
    RoomVersionId::V6,
    RoomVersionId::V7,
    RoomVersionId::V8,
    RoomVersionId::V9,
    RoomVersionId::V10,
    RoomVersionId::V11,
    RoomVersionId::V12,
];

/// A state group chain longer than this starts a fresh full snapshot, so
/// resolving a group never walks more than this many deltas.
pub const MAX_DELTA_CHAIN: i64 = 64;

/// Whether new rooms of this version can be created here.
pub fn is_supported(version: &RoomVersionId) -> bool {
    SUPPORTED.contains(version)
}

/// The `m.room_versions` capability: every supported version, and the
/// one new rooms get when the client asks for none (`rooms.default_room_version`).
pub fn capability(default: &RoomVersionId) -> RoomVersionsCapability {
    let available: BTreeMap<_, _> = SUPPORTED.iter().map(|v| (v.clone(), RoomVersionStability::Stable)).collect();
    RoomVersionsCapability::new(default.clone(), available)
}

/// Room versions whose rooms on other servers can be joined and followed:
/// the same as those this server creates.
pub const FOLLOWED: &[RoomVersionId] = SUPPORTED;

/// Whether rooms of this version created elsewhere can be followed.
pub fn can_follow(version: &RoomVersionId) -> bool {
    FOLLOWED.contains(version)
}
