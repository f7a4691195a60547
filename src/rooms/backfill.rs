//! Backfill (server-server API, "Backfilling"): older events fetched from
//! another server, stored below stream position 0 so pagination runs on
//! into them.

use ruma::{RoomId, events::StateEventType};

use crate::commit::Commit;

use super::{
    Rooms, RoomsError,
    pdu::Pdu,
    remote::{VerifiedPdu, auth_with_events},
};

impl Rooms {
    /// The oldest event of the room's timeline here.
    pub async fn oldest_event(&self, room_id: &RoomId) -> Result<Option<Pdu>, RoomsError> {
        match self.db.oldest_timeline_event(room_id.to_string()).await? {
            Some(stored) => Ok(Some(super::parse_stored(stored)?)),
            None => Ok(None),
        }
    }

    /// Stores history from another server before the start of the local
    /// timeline, each event checked against its auth events (which must be
    /// known); returns how many were added.
    pub async fn store_backfilled(&self, room_id: &RoomId, events: Vec<VerifiedPdu>) -> Result<usize, RoomsError> {
        let Some(oldest) = self.oldest_event(room_id).await? else { return Ok(0) };
        let rules = self.room_version(room_id).await?.rules().ok_or_else(|| RoomsError::Internal("rules".into()))?;
        let state = self.current_state(room_id).await?;
        let create = state.get(&(StateEventType::RoomCreate, String::new())).cloned();
        let mut accepted = Vec::new();
        let mut events_kept = Vec::new();
        for event in events {
            let mut auth = self.get_pdus(event.pdu.fields.auth_events.iter()).await?;
            if let Some(id) = &create
                && let Some(pdu) = self.get_pdu(id).await?
            {
                auth.insert(id.clone(), pdu);
            }
            if auth.len() < event.pdu.fields.auth_events.len() {
                continue;
            }
            if let Err(reason) = auth_with_events(&event.pdu, &rules, &auth) {
                tracing::info!(event_id = %event.pdu.event_id, %reason, "dropped a backfilled event");
                continue;
            }
            let prevs = event.pdu.fields.prev_events.iter().map(|id| id.to_string()).collect();
            accepted.push((event.outlier(false), prevs));
            events_kept.push(event.pdu);
        }
        // History before the oldest event is seen with the state at it.
        let group = oldest.state_group.unwrap_or_default();
        let stored = self.db.store_backfilled(accepted, group).await?;
        if stored > 0 {
            self.commits.committed(Commit::Backfilled { room_id, events: &events_kept }).await;
        }
        Ok(stored)
    }
}
