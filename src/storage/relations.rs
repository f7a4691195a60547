//! Relations between events (client-server API, "Forming relationships
//! between events", "Threading"): which event relates to which and how,
//! kept as events are stored, and the reads behind `/relations`,
//! `/threads` and bundled aggregations.

use async_trait::async_trait;

use super::{
    Result,
    rooms::{Direction, StoredEvent},
};

/// One page of the events relating to `parent`.
#[derive(Debug, Clone)]
pub struct RelationQuery {
    pub room_id: String,
    pub parent: String,
    pub rel_type: Option<String>,
    pub event_type: Option<String>,
    /// Where the page starts, as `EventStore::room_events` reads it:
    /// backwards from positions at or before it, forwards from positions
    /// after it (`None`: the newest or the oldest end).
    pub from: Option<i64>,
    /// Where the page stops, the same way round as `room_events`' `to`.
    pub to: Option<i64>,
    pub direction: Direction,
    pub limit: usize,
    /// How deep to follow relations of relations: 1 reads only those of
    /// `parent`; the type filters apply to the events returned, not to
    /// those followed.
    pub depth: u32,
}

/// What the relations of one event add up to, for its bundled
/// aggregations. Redacted relations are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationSummary {
    pub parent: String,
    /// The latest `m.replace` by the parent's sender, of the parent's type,
    /// with `m.new_content` (spec: "Event replacements", newest
    /// `origin_server_ts`, ties broken by the greater event id).
    pub latest_edit: Option<String>,
    pub thread: Option<ThreadSummary>,
    /// The `m.reference` relations, oldest first.
    pub references: Vec<String>,
}

/// The replies of one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSummary {
    pub count: i64,
    pub latest_event: String,
    /// Whether the user the summary was read for sent a reply.
    pub participated: bool,
}

/// A thread root with the position of the thread's latest reply.
#[derive(Debug, Clone)]
pub struct ThreadRoot {
    pub root: StoredEvent,
    pub latest_position: i64,
}

/// Relations are written by `EventStore`'s appends (timeline events and
/// backfilled ones, never outliers), in the same write as their event, so
/// a reader that sees an event sees its relation.
#[async_trait]
pub trait RelationStore: Send + Sync {
    /// Events relating to `query.parent` (neither redacted nor outliers),
    /// in stream order in `query.direction`.
    async fn relations(&self, query: RelationQuery) -> Result<Vec<StoredEvent>>;

    /// The summaries of those of `parents` that have relations, read in one
    /// go; `user` decides `ThreadSummary::participated`.
    async fn relation_summaries(&self, parents: Vec<String>, user: String) -> Result<Vec<RelationSummary>>;

    /// A room's thread roots, the latest activity first, whose latest
    /// reply is at or before position `before`; with `participant`, only the
    /// threads that user started or replied to.
    async fn thread_roots(
        &self,
        room_id: String,
        participant: Option<String>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ThreadRoot>>;
}
