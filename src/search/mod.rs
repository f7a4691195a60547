//! Search (client-server API, "Server Side Search" and "User directory"):
//! full-text search over the room events a user may see, and the user
//! directory. `index.rs` keeps the index current as a listener of the
//! commit pipeline; `query.rs` holds the pure parts (search expression,
//! tokens, word prefixes); storage keeps the index (SQLite FTS5).

pub mod index;
pub mod query;

use std::{
    collections::{BTreeMap, HashMap, btree_map},
    sync::Arc,
};

use ruma::{
    OwnedRoomId, OwnedUserId, UserId,
    events::{StateEventType, room::member::MembershipState},
};
use serde_json::Value;

pub use self::{
    index::SearchIndexer,
    query::{SearchKey, SearchToken},
};
use crate::{
    config::Config,
    pdu::Pdu,
    rooms::{EventFilter, PageRequest, PaginationToken, Rooms, RoomsError},
    storage::{
        Storage, StorageError,
        rooms::Direction,
        search::{DirectoryUser, SearchOrder},
    },
};

/// Hits read from the index for one search, at most: the visible ones
/// among them are counted and paged. A term found in more events than
/// this pages through the best (or newest) of them only.
const MAX_CANDIDATES: usize = 10_000;
/// The most results one page of a search returns.
const MAX_PAGE: usize = 100;
/// Users the directory reads for one search before matching word
/// prefixes.
const DIRECTORY_CANDIDATES: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    InvalidParam(String),
    #[error(transparent)]
    Rooms(#[from] RoomsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;

/// A search of room events (the `room_events` category).
#[derive(Debug, Clone)]
pub struct EventSearch {
    pub term: String,
    /// Which keys to look in; all when empty.
    pub keys: Vec<SearchKey>,
    pub rooms: Option<Vec<OwnedRoomId>>,
    pub not_rooms: Vec<OwnedRoomId>,
    pub filter: EventFilter,
    pub limit: usize,
    pub order: SearchOrder,
    pub before_limit: usize,
    pub after_limit: usize,
    pub include_profile: bool,
    /// Return the state of the rooms of the results.
    pub include_state: bool,
    pub next_batch: Option<String>,
}

/// A profile as a room showed it at an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// The events around a result.
#[derive(Debug, Clone)]
pub struct ResultContext {
    pub before: Vec<Arc<Pdu>>,
    pub after: Vec<Arc<Pdu>>,
    pub start: PaginationToken,
    pub end: PaginationToken,
    /// The senders' profiles at the result, when asked for.
    pub profiles: BTreeMap<OwnedUserId, Profile>,
}

/// One event found.
#[derive(Debug, Clone)]
pub struct Found {
    pub event: Arc<Pdu>,
    pub rank: f64,
    pub context: ResultContext,
}

/// One page of a search.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub results: Vec<Found>,
    /// Every visible result, on this page and the others.
    pub count: usize,
    pub next_batch: Option<String>,
    /// The words to highlight in the results.
    pub highlights: Vec<String>,
    /// The state of each room of the results the user may read, when
    /// asked for.
    pub state: BTreeMap<OwnedRoomId, Vec<Arc<Pdu>>>,
}

/// What the user directory found.
#[derive(Debug, Clone)]
pub struct DirectoryPage {
    pub users: Vec<DirectoryUser>,
    /// More users matched than were returned.
    pub limited: bool,
}

/// The search service.
pub struct Search {
    db: Arc<dyn Storage>,
    rooms: Arc<Rooms>,
    config: Arc<Config>,
}

impl Search {
    pub fn new(db: Arc<dyn Storage>, rooms: Arc<Rooms>, config: Arc<Config>) -> Self {
        Self { db, rooms, config }
    }

    /// One page of the room events `user` may see that match `search`.
    pub async fn search_events(&self, user: &OwnedUserId, search: &EventSearch) -> Result<SearchPage> {
        let token = match &search.next_batch {
            Some(t) => Some(
                SearchToken::parse(t, search.order)
                    .ok_or_else(|| SearchError::InvalidParam("invalid next_batch".into()))?,
            ),
            None => None,
        };
        let highlights = query::words(&search.term);
        let empty = SearchPage {
            results: vec![],
            count: 0,
            next_batch: None,
            highlights: highlights.clone(),
            state: BTreeMap::new(),
        };
        let Some(matching) = query::match_expression(&search.term, &search.keys) else { return Ok(empty) };
        let rooms = self.searchable_rooms(user, search).await?;
        if rooms.is_empty() {
            return Ok(empty);
        }
        let room_ids: Vec<String> = rooms.iter().map(ToString::to_string).collect();
        let hits = self.db.search_events(room_ids, matching, search.order, MAX_CANDIDATES).await?;
        // Who may see what: one visibility check per room, each caching
        // per state group (the messages between two state changes share
        // one), so thousands of hits cost a few state reads.
        let room_index: HashMap<&str, usize> = rooms.iter().enumerate().map(|(i, r)| (r.as_str(), i)).collect();
        let mut checks: Vec<Option<crate::rooms::visibility::VisibilityCheck<'_>>> =
            rooms.iter().map(|_| None).collect();
        let mut visible = Vec::new();
        for hit in hits {
            if !allows(&search.filter, &hit.kind, &hit.sender) {
                continue;
            }
            let Some(&i) = room_index.get(hit.room_id.as_str()) else { continue };
            let check = match &mut checks[i] {
                Some(check) => check,
                slot => slot.insert(self.rooms.visibility_for(&rooms[i], user).await?),
            };
            if check.can_see_at(Some(hit.state_group), Some(hit.stream_ordering)).await? {
                visible.push(hit);
            }
        }
        let count = visible.len();
        let limit = search.limit.clamp(1, MAX_PAGE);
        let (skip, page): (usize, Vec<_>) = match token {
            Some(SearchToken::Offset(n)) => (n, visible.into_iter().skip(n).collect()),
            Some(SearchToken::Before(p)) => (0, visible.into_iter().filter(|h| h.stream_ordering < p).collect()),
            None => (0, visible),
        };
        let more = page.len() > limit;
        let page: Vec<_> = page.into_iter().take(limit).collect();
        let next_batch = match (more, search.order, page.last()) {
            (true, SearchOrder::Rank, _) => Some(SearchToken::Offset(skip + limit).to_string()),
            (true, SearchOrder::Recent, Some(last)) => Some(SearchToken::Before(last.stream_ordering).to_string()),
            _ => None,
        };
        let mut results = Vec::with_capacity(page.len());
        for hit in page {
            let event_id = ruma::OwnedEventId::try_from(hit.event_id.as_str())
                .map_err(|e| StorageError::Corrupt(format!("stored event id: {e}")))?;
            let Some(event) = self.rooms.get_pdu(&event_id).await? else { continue };
            let context = self.context(user, &event, search).await?;
            results.push(Found { event, rank: hit.rank, context });
        }
        let mut state = BTreeMap::new();
        if search.include_state {
            for found in &results {
                if !state.contains_key(&found.event.room) {
                    let readable = self.rooms.readable_state(user, &found.event.room).await?;
                    state.insert(found.event.room.clone(), self.rooms.state_events(&readable).await?);
                }
            }
        }
        Ok(SearchPage { results, count, next_batch, highlights, state })
    }

    /// The rooms whose history the user may have seen (joined, or left or
    /// banned: what they saw before stays theirs), narrowed by the filter.
    async fn searchable_rooms(&self, user: &UserId, search: &EventSearch) -> Result<Vec<OwnedRoomId>> {
        let mut rooms = Vec::new();
        for membership in [MembershipState::Join, MembershipState::Leave, MembershipState::Ban] {
            for room in self.db.rooms_with_membership(user.to_string(), membership).await? {
                if let Ok(room) = OwnedRoomId::try_from(room) {
                    rooms.push(room);
                }
            }
        }
        rooms.retain(|r| search.rooms.as_ref().is_none_or(|only| only.contains(r)) && !search.not_rooms.contains(r));
        rooms.sort_unstable();
        rooms.dedup();
        Ok(rooms)
    }

    /// The events before and after a result, with its senders' profiles.
    async fn context(&self, user: &OwnedUserId, event: &Pdu, search: &EventSearch) -> Result<ResultContext> {
        let position = event.stream_ordering.unwrap_or(0);
        let everything = EventFilter::default();
        let page = |from: i64, direction: Direction, limit: usize| PageRequest {
            from: Some(PaginationToken(from)),
            to: None,
            direction,
            limit,
        };
        let (before, start) = if search.before_limit > 0 {
            let page = self
                .rooms
                .messages(user, &event.room, page(position - 1, Direction::Backward, search.before_limit), &everything)
                .await?;
            (page.chunk, page.end.unwrap_or(PaginationToken(0)))
        } else {
            (vec![], PaginationToken(position - 1))
        };
        let (after, end) = if search.after_limit > 0 {
            let page = self
                .rooms
                .messages(user, &event.room, page(position, Direction::Forward, search.after_limit), &everything)
                .await?;
            let end = page.end.unwrap_or(page.start);
            (page.chunk, end)
        } else {
            (vec![], PaginationToken(position))
        };
        let mut profiles = BTreeMap::new();
        if search.include_profile {
            let senders = std::iter::once(event).chain(before.iter().map(|p| &**p)).chain(after.iter().map(|p| &**p));
            for pdu in senders {
                if let btree_map::Entry::Vacant(entry) = profiles.entry(pdu.sender().to_owned()) {
                    entry.insert(self.profile_at(event.state_group, pdu.sender()).await?);
                }
            }
        }
        Ok(ResultContext { before, after, start, end, profiles })
    }

    /// A member's profile in the room state after an event.
    async fn profile_at(&self, group: Option<i64>, user: &UserId) -> Result<Profile> {
        let Some(group) = group else { return Ok(Profile::default()) };
        let state = self.rooms.state_at_group(group).await?;
        let Some(id) = state.get(&(StateEventType::RoomMember, user.to_string())) else {
            return Ok(Profile::default());
        };
        let content = self.rooms.get_pdu(id).await?.map(|p| p.content_value()).unwrap_or(Value::Null);
        let field = |k: &str| content.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Profile { displayname: field("displayname"), avatar_url: field("avatar_url") })
    }

    /// The users `searcher` may find whose display name or user id has
    /// words starting with the words of `term`: those sharing a room with
    /// them and those in rooms anyone may join (every local user too,
    /// when configured), at most `limit`.
    pub async fn search_users(&self, searcher: &UserId, term: &str, limit: usize) -> Result<DirectoryPage> {
        let words = query::words(term);
        // The longest word narrows the candidates most; every word is
        // then matched as a word prefix.
        let Some(longest) = words.iter().max_by_key(|w| w.len()) else {
            return Ok(DirectoryPage { users: vec![], limited: false });
        };
        let every_local_user = self.config.user_directory.search_all_users;
        let candidates = self
            .db
            .directory_candidates(searcher.to_string(), longest.clone(), every_local_user, DIRECTORY_CANDIDATES)
            .await?;
        let mut users: Vec<DirectoryUser> = candidates
            .into_iter()
            .filter(|u| query::matches_word_prefix(&words, &u.user_id, u.displayname.as_deref()))
            .collect();
        users.sort_by(|a, b| {
            let key = |u: &DirectoryUser| u.displayname.clone().unwrap_or_else(|| u.user_id.clone()).to_lowercase();
            key(a).cmp(&key(b)).then_with(|| a.user_id.cmp(&b.user_id))
        });
        let limited = users.len() > limit;
        users.truncate(limit);
        Ok(DirectoryPage { users, limited })
    }
}

/// Whether a room event filter's types and senders let a hit through.
fn allows(filter: &EventFilter, kind: &str, sender: &str) -> bool {
    let glob = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    };
    !filter.not_types.iter().any(|p| glob(p))
        && !filter.not_senders.iter().any(|s| s == sender)
        && filter.types.as_ref().is_none_or(|t| t.iter().any(|p| glob(p)))
        && filter.senders.as_ref().is_none_or(|s| s.iter().any(|s| s == sender))
}
