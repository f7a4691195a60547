//! Reporting content (client-server API, "Reporting content"): users
//! report events, rooms and users to the server's admins. A report of an
//! event is refused unless the reporter is joined to its room and may see
//! it; a report of a room or a user is answered the same way whether or
//! not it exists (the spec lets servers conceal that), and is stored only
//! when it does. Admins list and resolve reports through `ReportStore`.

use std::sync::Arc;

use ruma::{EventId, OwnedUserId, RoomId, UserId, events::room::member::MembershipState};

use crate::{
    config::Config,
    rooms::{Rooms, RoomsError},
    storage::{
        Storage, StorageError, now_ms,
        reports::{ReportRow, ReportTarget},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    /// Spec: the same 404 whether the event does not exist, the reporter
    /// is not joined to its room, or may not see it.
    #[error("the event was not found or you are not joined to its room")]
    EventNotFound,
    #[error(transparent)]
    Rooms(#[from] RoomsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = ReportsError> = std::result::Result<T, E>;

/// The reporting service.
pub struct Reports {
    db: Arc<dyn Storage>,
    rooms: Arc<Rooms>,
    config: Arc<Config>,
}

impl Reports {
    pub fn new(db: Arc<dyn Storage>, rooms: Arc<Rooms>, config: Arc<Config>) -> Self {
        Self { db, rooms, config }
    }

    /// `POST /rooms/{roomId}/report/{eventId}`.
    pub async fn report_event(
        &self,
        reporter: &OwnedUserId,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<String>,
    ) -> Result<i64> {
        if self.rooms.membership(room_id, reporter).await? != Some(MembershipState::Join) {
            return Err(ReportsError::EventNotFound);
        }
        let event = match self.rooms.event_for_user(reporter, room_id, &event_id.to_owned()).await {
            Ok(event) => event,
            Err(RoomsError::NotFound(_) | RoomsError::Forbidden(_)) => return Err(ReportsError::EventNotFound),
            Err(e) => return Err(e.into()),
        };
        let target = ReportTarget::Event {
            room_id: room_id.to_string(),
            event_id: event_id.to_string(),
            sender: event.sender().to_string(),
        };
        self.store(reporter, target, reason.unwrap_or_default()).await
    }

    /// `POST /rooms/{roomId}/report`: the report's id, or `None` when the
    /// room is unknown here (the reporter is not told).
    pub async fn report_room(&self, reporter: &OwnedUserId, room_id: &RoomId, reason: String) -> Result<Option<i64>> {
        if !self.rooms.knows_room(room_id).await? {
            tracing::debug!(%room_id, "report of an unknown room dropped");
            return Ok(None);
        }
        let target = ReportTarget::Room { room_id: room_id.to_string() };
        Ok(Some(self.store(reporter, target, reason).await?))
    }

    /// `POST /users/{userId}/report`: the report's id, or `None` when the
    /// user is of this server and does not exist (the reporter is not
    /// told). Users of other servers cannot be checked, and are kept.
    pub async fn report_user(&self, reporter: &OwnedUserId, user_id: &UserId, reason: String) -> Result<Option<i64>> {
        if user_id.server_name() == self.config.server.server_name
            && self.db.get_user(user_id.to_owned()).await?.is_none()
        {
            tracing::debug!(%user_id, "report of an unknown user dropped");
            return Ok(None);
        }
        let target = ReportTarget::User { user_id: user_id.to_string() };
        Ok(Some(self.store(reporter, target, reason).await?))
    }

    async fn store(&self, reporter: &OwnedUserId, target: ReportTarget, reason: String) -> Result<i64> {
        let report = ReportRow { reporter: reporter.to_string(), target, reason, ts: now_ms() };
        let id = self.db.add_report(report).await?;
        tracing::info!(report = id, %reporter, "report received");
        Ok(id)
    }
}
