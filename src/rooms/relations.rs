//! Relations, threads and bundled aggregations (client-server API,
//! "Forming relationships between events", "Event replacements",
//! "Threading", "Reference relations"): `/relations`, `/threads`, and the
//! `unsigned.m.relations` of events served to clients.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
};

use ruma::{DeviceId, OwnedEventId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use super::{
    Rooms, RoomsError, parse_stored,
    pdu::Pdu,
    timeline::{PageRequest, PaginationToken},
    visibility::VisibilityCheck,
};
use crate::storage::{
    relations::{RelationQuery, RelationSummary},
    rooms::Direction,
};

/// How deep `/relations?recurse=true` follows relations of relations.
pub const RECURSION_DEPTH: u32 = 3;

/// The most events one page of `/relations` or `/threads` returns.
const MAX_PAGE: usize = 100;

/// Which relations of an event to read.
#[derive(Debug, Clone, Default)]
pub struct RelationFilter {
    pub rel_type: Option<String>,
    pub event_type: Option<String>,
    /// Whether relations of relations count too (up to `RECURSION_DEPTH`).
    pub recurse: bool,
}

/// A page of `/relations` or `/threads`: events, and where the next page
/// starts (`None`: no more).
#[derive(Debug)]
pub struct RelationsPage {
    pub chunk: Vec<Arc<Pdu>>,
    pub next_batch: Option<PaginationToken>,
}

/// Which threads `/threads` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadInclude {
    All,
    /// Threads the user started or replied to.
    Participated,
}

impl Rooms {
    /// `/relations/{eventId}[/{relType}[/{eventType}]]`: the events relating
    /// to `parent`, for a user who may see it (404 otherwise, as `/event`).
    pub async fn relations(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        parent: &OwnedEventId,
        filter: RelationFilter,
        page: PageRequest,
    ) -> Result<RelationsPage, RoomsError> {
        let PageRequest { from, to, direction, limit } = page;
        self.event_for_user(user, room_id, parent).await?;
        let mut check = self.visibility(room_id, user).await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let query = RelationQuery {
            room_id: room_id.to_string(),
            parent: parent.to_string(),
            rel_type: filter.rel_type.clone(),
            event_type: filter.event_type.clone(),
            from: from.map(|t| t.0),
            to: to.map(|t| t.0),
            direction,
            limit,
            depth: if filter.recurse { RECURSION_DEPTH } else { 1 },
        };
        let stored = self.db.relations(query).await?;
        let full = stored.len() == limit;
        let mut chunk = Vec::with_capacity(stored.len());
        let mut last = None;
        for stored in stored {
            let pdu = Arc::new(parse_stored(stored)?);
            last = pdu.stream_ordering;
            if check.can_see(&pdu).await? {
                chunk.push(pdu);
            }
        }
        // Tokens name the boundary just after a position, as `/messages`'.
        let next_batch = last.filter(|_| full).map(|p| match direction {
            Direction::Backward => PaginationToken(p - 1),
            Direction::Forward => PaginationToken(p),
        });
        Ok(RelationsPage { chunk, next_batch })
    }

    /// `/threads`: the room's thread roots the user may see, the latest
    /// thread activity first.
    pub async fn threads(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        include: ThreadInclude,
        from: Option<PaginationToken>,
        limit: usize,
    ) -> Result<RelationsPage, RoomsError> {
        let mut check = self.visibility(room_id, user).await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let participant = (include == ThreadInclude::Participated).then(|| user.to_string());
        let roots = self.db.thread_roots(room_id.to_string(), participant, from.map(|t| t.0), limit).await?;
        let full = roots.len() == limit;
        let mut chunk = Vec::with_capacity(roots.len());
        let mut last = None;
        for root in roots {
            last = Some(root.latest_position);
            let pdu = Arc::new(parse_stored(root.root)?);
            if check.can_see(&pdu).await? {
                chunk.push(pdu);
            }
        }
        Ok(RelationsPage { chunk, next_batch: last.filter(|_| full).map(|p| PaginationToken(p - 1)) })
    }

    /// The bundled aggregations (`unsigned.m.relations`) of `pdus` as
    /// `user` sees them, by event id: one read for all of them, and one
    /// more for the edits and latest thread replies it names.
    pub async fn bundled_aggregations(
        &self,
        pdus: &[Arc<Pdu>],
        user: &OwnedUserId,
    ) -> Result<HashMap<OwnedEventId, Value>, RoomsError> {
        // A redacted event has no relations to bundle.
        let parents: Vec<String> =
            pdus.iter().filter(|p| p.redacted_by.is_none()).map(|p| p.event_id.to_string()).collect();
        if parents.is_empty() {
            return Ok(HashMap::new());
        }
        let summaries = self.db.relation_summaries(parents, user.to_string()).await?;
        if summaries.is_empty() {
            return Ok(HashMap::new());
        }
        let referenced: Vec<OwnedEventId> = summaries
            .iter()
            .flat_map(|s| s.latest_edit.iter().chain(s.thread.as_ref().map(|t| &t.latest_event)))
            .filter_map(|id| OwnedEventId::try_from(id.as_str()).ok())
            .collect();
        let events = self.get_pdus(&referenced).await?;
        let by_id: HashMap<&str, &Arc<Pdu>> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
        let mut checks: HashMap<&RoomId, VisibilityCheck<'_>> = HashMap::new();
        let mut out = HashMap::new();
        for summary in summaries {
            let Some(parent) = by_id.get(summary.parent.as_str()) else { continue };
            let check = match checks.entry(&parent.room) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(VisibilityCheck::new(self, &parent.room, user).await?),
            };
            let aggregation = self.aggregation(parent, &summary, &events, check).await?;
            if let Some(aggregation) = aggregation {
                out.insert(parent.event_id.clone(), aggregation);
            }
        }
        Ok(out)
    }

    /// One event's `m.relations`, or `None` when nothing applies.
    async fn aggregation(
        &self,
        parent: &Pdu,
        summary: &RelationSummary,
        events: &HashMap<OwnedEventId, Arc<Pdu>>,
        check: &mut VisibilityCheck<'_>,
    ) -> Result<Option<Value>, RoomsError> {
        let lookup = |id: &str| OwnedEventId::try_from(id).ok().and_then(|id| events.get(&id));
        let mut relations = serde_json::Map::new();
        // Spec: "Event replacements": an edit of an edit is not applied.
        if let Some(edit) = summary.latest_edit.as_deref().and_then(lookup)
            && !is_edit(parent)
            && check.can_see(edit).await?
        {
            relations.insert("m.replace".into(), self.client_event(edit, None).await?);
        }
        // A thread whose latest reply the user may not see (they left
        // before it) is not summed up for them.
        if let Some(thread) = &summary.thread
            && let Some(latest) = lookup(&thread.latest_event)
            && check.can_see(latest).await?
        {
            relations.insert(
                "m.thread".into(),
                json!({
                    "latest_event": self.client_event(latest, None).await?,
                    "count": thread.count,
                    "current_user_participated": thread.participated || parent.sender() == check.user(),
                }),
            );
        }
        if !summary.references.is_empty() {
            let chunk: Vec<Value> = summary.references.iter().map(|id| json!({ "event_id": id })).collect();
            relations.insert("m.reference".into(), json!({ "chunk": chunk }));
        }
        Ok((!relations.is_empty()).then_some(Value::Object(relations)))
    }

    /// Events in the client format with their bundled aggregations (one
    /// batched read for all of them); `viewer`'s own events carry their
    /// transaction id.
    pub async fn client_events(
        &self,
        pdus: &[Arc<Pdu>],
        user: &OwnedUserId,
        viewer: Option<&DeviceId>,
    ) -> Result<Vec<Value>, RoomsError> {
        let aggregations = self.bundled_aggregations(pdus, user).await?;
        let mut out = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            out.push(self.client_event_bundled(pdu, user, viewer, &aggregations).await?);
        }
        Ok(out)
    }

    /// One event in the client format, with its aggregation from
    /// `aggregations` (read by `bundled_aggregations`), if any.
    pub async fn client_event_bundled(
        &self,
        pdu: &Pdu,
        user: &UserId,
        viewer: Option<&DeviceId>,
        aggregations: &HashMap<OwnedEventId, Value>,
    ) -> Result<Value, RoomsError> {
        let mut event = self.client_event(pdu, viewer.map(|device| (user, device))).await?;
        if let Some(aggregation) = aggregations.get(&pdu.event_id)
            && let Some(unsigned) = event.get_mut("unsigned").and_then(Value::as_object_mut)
        {
            unsigned.insert("m.relations".into(), aggregation.clone());
        }
        Ok(event)
    }
}

/// Whether an event is itself an edit (`rel_type` `m.replace`).
fn is_edit(pdu: &Pdu) -> bool {
    pdu.content_value().pointer("/m.relates_to/rel_type").and_then(Value::as_str) == Some("m.replace")
}
