//! The sections of a sync response, one provider per part. Each works
//! from explicit inputs (a `Scope`, a room's `RoomView`) and the rows the
//! read plan read for it, and hands back its part for an assembler to
//! place. None reads storage per room or per event, except `memberships`
//! (an invite or knock is new to the client once, and reads its stripped
//! state then); `to_device` acknowledges what the token covered (a write).
//!
//! - `rooms` (with `timeline` and `state`): joined and left rooms'
//!   timelines, the state before them (or, for sliding sync, the state
//!   `required_state` asks for), member summaries, unread counts.
//! - `required_state`: sliding sync's state filter, merged per room.
//! - `ephemeral`: typing and receipts of joined rooms.
//! - `account_data`: global and per room.
//! - `to_device`: the device's to-device messages.
//! - `device_keys`: device list changes, one-time and fallback key counts.
//! - `presence`.
//! - `memberships`: invited and knocked rooms, with their stripped state.

pub mod account_data;
pub mod device_keys;
pub mod ephemeral;
pub mod memberships;
pub mod presence;
pub mod required_state;
pub mod rooms;
pub mod state;
pub mod timeline;
pub mod to_device;

use ruma::serde::Raw;
use serde_json::Value;

pub fn raw<T>(value: Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&value).expect("a JSON value always serialises"))
}
