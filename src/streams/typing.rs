//! Typing notifications: held in memory only (they are ephemeral), with
//! each typing notice expiring after the timeout the client gave.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId};

use crate::{
    rooms::{Rooms, RoomsError},
    sync::notifier::Notifier,
};

/// The longest typing timeout honoured, whatever a client asks for.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct RoomTyping {
    /// Who types, until when.
    users: HashMap<OwnedUserId, Instant>,
    /// Typing position of the last change in this room.
    changed_at: i64,
}

pub struct Typing {
    notifier: Arc<Notifier>,
    rooms: Arc<Rooms>,
    state: Arc<Mutex<HashMap<OwnedRoomId, RoomTyping>>>,
}

impl Typing {
    pub fn new(notifier: Arc<Notifier>, rooms: Arc<Rooms>) -> Self {
        Self { notifier, rooms, state: Arc::default() }
    }

    /// Starts (`Some(timeout)`) or stops typing in a room.
    pub async fn set(&self, room: &RoomId, user: &OwnedUserId, timeout: Option<Duration>) -> Result<(), RoomsError> {
        self.rooms.require_joined(room, user).await?;
        let members = self.rooms.joined_members(room).await?;
        let expiry = timeout.map(|t| Instant::now() + t.min(MAX_TIMEOUT));
        {
            let mut state = self.state.lock().expect("typing mutex is never poisoned");
            let entry = state.entry(room.to_owned()).or_default();
            let changed = match expiry {
                Some(until) => entry.users.insert(user.clone(), until).is_none(),
                None => entry.users.remove(user).is_some(),
            };
            if !changed && expiry.is_some() {
                // Refreshing an existing typing notice only moves its expiry.
                return self.schedule_expiry(room, user, expiry, members);
            }
            entry.changed_at = self.notifier.typing_changed(members.iter().map(|u| u.as_ref()));
        }
        self.schedule_expiry(room, user, expiry, members)
    }

    fn schedule_expiry(
        &self,
        room: &RoomId,
        user: &OwnedUserId,
        expiry: Option<Instant>,
        members: Vec<OwnedUserId>,
    ) -> Result<(), RoomsError> {
        let Some(until) = expiry else { return Ok(()) };
        let (state, notifier, room, user) = (self.state.clone(), self.notifier.clone(), room.to_owned(), user.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            let mut state = state.lock().expect("typing mutex is never poisoned");
            if let Some(entry) = state.get_mut(&room)
                && entry.users.get(&user) == Some(&until)
            {
                entry.users.remove(&user);
                entry.changed_at = notifier.typing_changed(members.iter().map(|u| u.as_ref()));
            }
        });
        Ok(())
    }

    /// Who is typing in the room, if that changed after typing position `since`.
    pub fn changed_since(&self, room: &OwnedRoomId, since: i64) -> Option<Vec<OwnedUserId>> {
        let state = self.state.lock().expect("typing mutex is never poisoned");
        let entry = state.get(room)?;
        if entry.changed_at <= since {
            return None;
        }
        let now = Instant::now();
        let mut users: Vec<OwnedUserId> =
            entry.users.iter().filter(|(_, until)| **until > now).map(|(u, _)| u.clone()).collect();
        users.sort();
        Some(users)
    }
}
