//! Backfill (server-server API, "Backfilling and retrieving missing
//! events"): older events fetched from another server, stored below
//! stream position 0 so pagination runs on into them; and the same walk
//! back through the DAG when another server asks this one.

use std::collections::HashSet;

use ruma::{OwnedEventId, RoomId, events::StateEventType};

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

    /// Events of the room reached by walking prev_events back from
    /// `latest` (themselves included when `include_start`), not past any
    /// of `earliest`, at most `limit`, nearest first.
    async fn walk_back(
        &self,
        room_id: &RoomId,
        latest: &[OwnedEventId],
        earliest: &[OwnedEventId],
        limit: usize,
        include_start: bool,
    ) -> Result<Vec<OwnedEventId>, RoomsError> {
        let stop: HashSet<&OwnedEventId> = earliest.iter().collect();
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        let mut out = Vec::new();
        let mut frontier: Vec<OwnedEventId> = if include_start {
            latest.to_vec()
        } else {
            let start = self.get_pdus(latest.iter()).await?;
            start.values().flat_map(|p| p.fields.prev_events.clone()).collect()
        };
        while !frontier.is_empty() && out.len() < limit {
            let events = self.get_pdus(frontier.iter()).await?;
            let mut next = Vec::new();
            for id in &frontier {
                if stop.contains(id) || !seen.insert(id.clone()) {
                    continue;
                }
                let Some(pdu) = events.get(id) else { continue };
                if pdu.room != room_id {
                    continue;
                }
                out.push(id.clone());
                if out.len() >= limit {
                    break;
                }
                next.extend(pdu.fields.prev_events.iter().cloned());
            }
            frontier = next;
        }
        Ok(out)
    }

    /// The events another server is missing between `earliest` and
    /// `latest` (server-server API, `get_missing_events`): at most
    /// `limit`, of depth `min_depth` or more, oldest first.
    pub async fn missing_events_between(
        &self,
        room_id: &RoomId,
        latest: &[OwnedEventId],
        earliest: &[OwnedEventId],
        limit: usize,
        min_depth: u64,
    ) -> Result<Vec<OwnedEventId>, RoomsError> {
        let ids = self.walk_back(room_id, latest, earliest, limit, false).await?;
        let mut pdus: Vec<_> = self.get_pdus(ids.iter()).await?.into_values().collect();
        pdus.retain(|p| u64::from(p.fields.depth) >= min_depth);
        pdus.sort_by_key(|p| u64::from(p.fields.depth));
        Ok(pdus.iter().map(|p| p.event_id.clone()).collect())
    }

    /// The history before (and including) `from` that another server asks
    /// for (server-server API, `backfill`): at most `limit` events.
    pub async fn history_before(
        &self,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<OwnedEventId>, RoomsError> {
        self.walk_back(room_id, from, &[], limit, true).await
    }

    /// The auth chain of events: every event reachable through their
    /// auth events, the events themselves excluded.
    pub async fn auth_chain(&self, event_ids: &[OwnedEventId]) -> Result<Vec<OwnedEventId>, RoomsError> {
        let chain = self.db.auth_chain(event_ids.iter().map(|id| id.to_string()).collect()).await?;
        Ok(chain.into_iter().filter_map(|id| OwnedEventId::try_from(id).ok()).collect())
    }
}
