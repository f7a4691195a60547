//! Server-side search (client-server API, "Server Side Search":
//! `POST /search`, the `room_events` category).

use axum::Router;
use ruma::{
    OwnedEventId, OwnedMxcUri, UInt,
    api::client::search::search_events::v3::{
        EventContextResult, GroupingKey, OrderBy, Request, Response, ResultCategories, ResultGroup, ResultGroupMap,
        ResultRoomEvents, SearchKeys, SearchResult, UserProfile,
    },
};

use super::{
    events::{client_event, raw_events, to_raw},
    message::event_filter,
};
use crate::{
    http::{ApiError, RouterExt, Ruma},
    search::{EventSearch, Found, SearchKey},
    services::AppState,
    storage::search::SearchOrder,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(search)
}

/// Results per page when the filter names no limit.
const DEFAULT_LIMIT: usize = 10;

async fn search(state: AppState, req: Ruma<Request>) -> Result<Response, ApiError> {
    let user = req.session().user_id.clone();
    let body = req.body;
    let Some(criteria) = body.search_categories.room_events else {
        return Ok(Response::new(ResultCategories::new()));
    };
    let keys = match &criteria.keys {
        None => vec![],
        Some(keys) => keys
            .iter()
            .map(|k| match k {
                SearchKeys::ContentBody => Ok(SearchKey::Body),
                SearchKeys::ContentName => Ok(SearchKey::Name),
                SearchKeys::ContentTopic => Ok(SearchKey::Topic),
                other => Err(ApiError::invalid_param(format!("unknown search key {}", other.as_str()))),
            })
            .collect::<Result<_, _>>()?,
    };
    let order = match criteria.order_by {
        None | Some(OrderBy::Rank) => SearchOrder::Rank,
        Some(OrderBy::Recent) => SearchOrder::Recent,
        Some(other) => return Err(ApiError::invalid_param(format!("unknown order_by {}", other.as_str()))),
    };
    let context = &criteria.event_context;
    let search = EventSearch {
        term: criteria.search_term.clone(),
        keys,
        rooms: criteria.filter.rooms.clone(),
        not_rooms: criteria.filter.not_rooms.clone(),
        filter: event_filter(&criteria.filter),
        limit: criteria.filter.limit.map_or(DEFAULT_LIMIT, |l| usize::try_from(l).unwrap_or(usize::MAX)),
        order,
        before_limit: usize::try_from(context.before_limit).unwrap_or(usize::MAX).min(100),
        after_limit: usize::try_from(context.after_limit).unwrap_or(usize::MAX).min(100),
        include_profile: context.include_profile,
        include_state: criteria.include_state.unwrap_or(false),
        next_batch: body.next_batch,
    };
    let page = state.search.search_events(&user, &search).await?;

    let mut room_events = ResultRoomEvents::new();
    room_events.count = Some(UInt::try_from(page.count as u64).unwrap_or(UInt::MAX));
    room_events.highlights = page.highlights;
    room_events.next_batch = page.next_batch.clone();
    for grouping in &criteria.groupings.group_by {
        match &grouping.key {
            Some(GroupingKey::RoomId) => room_events.groups.insert(ResultGroupMap::RoomId(groups(
                &page.results,
                |f| f.event.room.clone(),
                &page.next_batch,
            ))),
            Some(GroupingKey::Sender) => room_events.groups.insert(ResultGroupMap::Sender(groups(
                &page.results,
                |f| f.event.sender().to_owned(),
                &page.next_batch,
            ))),
            _ => None,
        };
    }
    for (room, events) in &page.state {
        room_events.state.insert(room.clone(), raw_events(&state, events).await?);
    }
    for found in &page.results {
        room_events.results.push(result(&state, found).await?);
    }
    let mut categories = ResultCategories::new();
    categories.room_events = room_events;
    Ok(Response::new(categories))
}

/// The results of a page grouped by `key`, each group ordered by where
/// its first result ranks.
fn groups<K: Ord>(
    results: &[Found],
    key: impl Fn(&Found) -> K,
    next_batch: &Option<String>,
) -> std::collections::BTreeMap<K, ResultGroup> {
    let mut groups = std::collections::BTreeMap::<K, ResultGroup>::new();
    for found in results {
        let order = UInt::try_from(groups.len() as u64 + 1).unwrap_or(UInt::MAX);
        let group = groups.entry(key(found)).or_insert_with(|| {
            let mut group = ResultGroup::new();
            group.order = Some(order);
            group.next_batch = next_batch.clone();
            group
        });
        let id: OwnedEventId = found.event.event_id.clone();
        group.results.push(id);
    }
    groups
}

async fn result(state: &AppState, found: &Found) -> Result<SearchResult, ApiError> {
    let mut result = SearchResult::new();
    result.rank = Some(found.rank);
    result.result = Some(to_raw(client_event(state, &found.event).await?)?);
    let mut context = EventContextResult::new();
    context.events_before = raw_events(state, &found.context.before).await?;
    context.events_after = raw_events(state, &found.context.after).await?;
    context.start = Some(found.context.start.to_string());
    context.end = Some(found.context.end.to_string());
    for (user, profile) in &found.context.profiles {
        let mut shown = UserProfile::new();
        shown.displayname = profile.displayname.clone();
        shown.avatar_url = profile.avatar_url.as_deref().map(OwnedMxcUri::from);
        context.profile_info.insert(user.clone(), shown);
    }
    result.context = context;
    Ok(result)
}
