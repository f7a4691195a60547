//! Account data (client-server API, "Client Config"): the user's global
//! account data in the response's `account_data`, and each room's in the
//! room's own.

use std::collections::HashMap;

use ruma::serde::Raw;
use serde_json::{Value, json};

use super::raw;
use crate::{rooms::EventFilter, storage::streams::AccountDataRow};

/// The account data that changed in a sync's window, global and by room.
pub struct AccountData {
    global: Vec<Value>,
    rooms: HashMap<String, Vec<Value>>,
}

impl AccountData {
    /// Sorts the rows read for the user: global first in row order, then
    /// each room's.
    pub fn from_rows(rows: Vec<AccountDataRow>) -> Self {
        let mut global = Vec::new();
        let mut rooms: HashMap<String, Vec<Value>> = HashMap::new();
        for row in rows {
            let content: Value = serde_json::from_str(&row.content).unwrap_or(Value::Null);
            let event = json!({"type": row.kind, "content": content});
            if row.room_id.is_empty() {
                global.push(event);
            } else {
                rooms.entry(row.room_id).or_default().push(event);
            }
        }
        Self { global, rooms }
    }

    /// Adds a global account data event the user has not stored, with the
    /// content they start with.
    pub fn add_global_default(&mut self, kind: &str, content: impl FnOnce() -> Value) {
        if !self.global.iter().any(|e| e["type"] == kind) {
            self.global.push(json!({"type": kind, "content": content()}));
        }
    }

    /// Keeps the events whose types the filter's `account_data` (global)
    /// and `room.account_data` (each room's) let through.
    pub fn retain_types(&mut self, global: &EventFilter, room: &EventFilter) {
        self.global.retain(|e| e["type"].as_str().is_some_and(|kind| global.allows_type(kind)));
        for events in self.rooms.values_mut() {
            events.retain(|e| e["type"].as_str().is_some_and(|kind| room.allows_type(kind)));
        }
    }

    /// The content of a global account data event that changed, if it did.
    pub fn global_content(&self, kind: &str) -> Option<&Value> {
        self.global.iter().rev().find(|e| e["type"] == kind).map(|e| &e["content"])
    }

    /// Every room's account data events, by room.
    pub fn take_rooms(&mut self) -> HashMap<String, Vec<Value>> {
        std::mem::take(&mut self.rooms)
    }

    /// The global account data events.
    pub fn take_global<T>(&mut self) -> Vec<Raw<T>> {
        raw_events(std::mem::take(&mut self.global))
    }

    /// A room's account data events; a room the response does not carry
    /// has its account data left out.
    pub fn take_room(&mut self, room: &str) -> Vec<Value> {
        self.rooms.remove(room).unwrap_or_default()
    }
}

/// A room's account data as the response carries it.
pub fn raw_events<T>(events: Vec<Value>) -> Vec<Raw<T>> {
    events.into_iter().map(raw).collect()
}
