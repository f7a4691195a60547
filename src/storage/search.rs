//! The full-text index of room events and the user directory's reads
//! (client-server API, "Server Side Search" and "User directory"). The
//! index is written by the search listener after an event is committed;
//! what a user may see of the hits is decided above storage.

use async_trait::async_trait;

use super::Result;

/// The searchable text of one event, under the spec's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchEntry {
    /// The event's position in the events stream (its row in the index).
    pub stream_ordering: i64,
    /// `content.body`
    pub body: Option<String>,
    /// `content.name`
    pub name: Option<String>,
    /// `content.topic`
    pub topic: Option<String>,
}

/// The order of search hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first (BM25), newest first among equals.
    Rank,
    /// Newest first.
    Recent,
}

/// One event that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub kind: String,
    /// The room state after the event (which decides who may see it).
    pub state_group: i64,
    /// Higher is better.
    pub rank: f64,
}

/// A user the directory may show, with the profile a room shows of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Where the search index is kept.
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Adds events to the index, in one write. An event already indexed
    /// is indexed again (its text replaced); one already redacted is not
    /// indexed (checked in the same write, so a redaction committed first
    /// is never undone).
    async fn index_events(&self, entries: Vec<SearchEntry>) -> Result<()>;

    /// Removes an event from the index (it was redacted). Nothing happens
    /// when it is not indexed.
    async fn unindex_event(&self, event_id: String) -> Result<()>;

    /// Events of `rooms` whose indexed text matches `matching`, an FTS5
    /// query expression (quoted words, column filters `{body name} : (..)`),
    /// in `order`, at most `limit`. Words match whatever their case and
    /// accents ("cafe" finds "Café").
    async fn search_events(
        &self,
        rooms: Vec<String>,
        matching: String,
        order: SearchOrder,
        limit: usize,
    ) -> Result<Vec<SearchHit>>;

    /// Users joined to a room `searcher` is joined to, or to a room anyone
    /// may join, and (when `every_local_user`) every local account not
    /// deactivated, whose user id or display name contains `term` (ASCII
    /// case ignored); at most `limit`, each once.
    async fn directory_candidates(
        &self,
        searcher: String,
        term: String,
        every_local_user: bool,
        limit: usize,
    ) -> Result<Vec<DirectoryUser>>;
}
