//! Typing notifications: held in memory only (they are ephemeral), with
//! each typing notice expiring after the timeout the client gave.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{
    commit::{Commit, CommitPipeline},
    rooms::{Rooms, RoomsError},
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
    commits: Arc<CommitPipeline>,
    rooms: Arc<Rooms>,
    state: Arc<TypingState>,
}

#[derive(Default)]
struct TypingState {
    rooms: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
    /// The typing stream's last position.
    position: AtomicI64,
}

impl TypingState {
    /// Records a change of who types in `room`; returns its position.
    fn changed(&self, entry: &mut RoomTyping) -> i64 {
        let position = self.position.fetch_add(1, Ordering::AcqRel) + 1;
        entry.changed_at = position;
        position
    }
}

impl Typing {
    /// The typing stream is not stored: it starts at `start` (the boot time
    /// in milliseconds), above any position a previous run handed out.
    pub fn new(commits: Arc<CommitPipeline>, rooms: Arc<Rooms>, start: i64) -> Self {
        let state = TypingState { rooms: Mutex::default(), position: AtomicI64::new(start) };
        Self { commits, rooms, state: Arc::new(state) }
    }

    /// Starts (`Some(timeout)`) or stops typing in a room.
    pub async fn set(&self, room: &RoomId, user: &OwnedUserId, timeout: Option<Duration>) -> Result<(), RoomsError> {
        self.rooms.require_joined(room, user).await?;
        let members = self.rooms.joined_members(room).await?;
        let expiry = timeout.map(|t| Instant::now() + t.min(MAX_TIMEOUT));
        let position = {
            let mut rooms = self.state.rooms.lock().expect("typing mutex is never poisoned");
            let entry = rooms.entry(room.to_owned()).or_default();
            let changed = match expiry {
                Some(until) => entry.users.insert(user.clone(), until).is_none(),
                None => entry.users.remove(user).is_some(),
            };
            // Refreshing an existing typing notice only moves its expiry.
            (changed || expiry.is_none()).then(|| self.state.changed(entry))
        };
        let wake: Vec<&UserId> = members.iter().map(|u| u.as_ref()).collect();
        let typing = expiry.is_some();
        let commit = Commit::Typing { position, room_id: room, user, typing, expired: false, wake: &wake };
        self.commits.committed(commit).await;
        self.schedule_expiry(room, user, expiry, members);
        Ok(())
    }

    fn schedule_expiry(&self, room: &RoomId, user: &OwnedUserId, expiry: Option<Instant>, members: Vec<OwnedUserId>) {
        let Some(until) = expiry else { return };
        let (state, commits, room, user) = (self.state.clone(), self.commits.clone(), room.to_owned(), user.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            let position = {
                let mut rooms = state.rooms.lock().expect("typing mutex is never poisoned");
                match rooms.get_mut(&room) {
                    Some(entry) if entry.users.get(&user) == Some(&until) => {
                        entry.users.remove(&user);
                        Some(state.changed(entry))
                    }
                    _ => None,
                }
            };
            if position.is_some() {
                let wake: Vec<&UserId> = members.iter().map(|u| u.as_ref()).collect();
                let commit =
                    Commit::Typing { position, room_id: &room, user: &user, typing: false, expired: true, wake: &wake };
                commits.committed(commit).await;
            }
        });
    }

    /// Who is typing in the room, if that changed after typing position `since`.
    pub fn changed_since(&self, room: &OwnedRoomId, since: i64) -> Option<Vec<OwnedUserId>> {
        let rooms = self.state.rooms.lock().expect("typing mutex is never poisoned");
        let entry = rooms.get(room)?;
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
