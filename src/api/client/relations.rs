//! Relationships between events and threads (client-server API,
//! "Forming relationships between events": `/relations`; "Threading":
//! `/threads`). Bundled aggregations are added where events are formatted
//! (`events.rs`).

use axum::Router;
use ruma::{
    OwnedEventId, OwnedRoomId, UInt,
    api::{
        Direction as RumaDirection,
        client::{
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            threads::get_threads::{self, v1::IncludeThreads},
        },
    },
    events::AnyMessageLikeEvent,
    serde::Raw,
};

use super::{
    events::timeline_events,
    message::{direction, parse_token},
};
use crate::{
    http::{ApiError, RouterExt, Ruma},
    rooms::{PageRequest, RECURSION_DEPTH, RelationFilter, ThreadInclude},
    services::AppState,
};

/// Relations per page when the client sets no limit.
const DEFAULT_LIMIT: usize = 50;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let threads = Router::new().ruma(threads).layer(axum::middleware::map_request(default_thread_include));
    router.ruma(relations).ruma(relations_of_type).ruma(relations_of_type_and_event_type).merge(threads)
}

/// ruma's `get_threads` leaves `include` out of a query when it is the
/// default but requires it when parsing one; the spec makes it optional
/// (default `all`), so a query without it gets the default added.
async fn default_thread_include(mut req: axum::extract::Request) -> axum::extract::Request {
    let query = req.uri().query().unwrap_or("");
    if form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "include") {
        return req;
    }
    let path = req.uri().path();
    let with_default =
        if query.is_empty() { format!("{path}?include=all") } else { format!("{path}?{query}&include=all") };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(path_and_query) = with_default.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The parameters the three `/relations` endpoints share.
struct RelationsRequest<'a> {
    room_id: &'a OwnedRoomId,
    event_id: &'a OwnedEventId,
    filter: RelationFilter,
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: RumaDirection,
    limit: Option<UInt>,
}

/// A page of relations: the chunk and the token of the next page.
async fn read_relations(
    state: &AppState,
    user: &ruma::OwnedUserId,
    req: RelationsRequest<'_>,
) -> Result<(Vec<Raw<AnyMessageLikeEvent>>, Option<String>), ApiError> {
    let from = parse_token(req.from, "from")?;
    let to = parse_token(req.to, "to")?;
    let limit = req.limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(DEFAULT_LIMIT);
    let page = PageRequest { from, to, direction: direction(req.dir), limit };
    let page = state.rooms.relations(user, req.room_id, req.event_id, req.filter, page).await?;
    let chunk = timeline_events(state, user, &page.chunk).await?;
    Ok((chunk, page.next_batch.map(|t| t.to_string())))
}

async fn relations(
    state: AppState,
    req: Ruma<get_relating_events::v1::Request>,
) -> Result<get_relating_events::v1::Response, ApiError> {
    let user = req.session().user_id.clone();
    let b = &req.body;
    let request = RelationsRequest {
        room_id: &b.room_id,
        event_id: &b.event_id,
        filter: RelationFilter { recurse: b.recurse, ..RelationFilter::default() },
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        dir: b.dir,
        limit: b.limit,
    };
    let recurse = request.filter.recurse;
    let (chunk, next_batch) = read_relations(&state, &user, request).await?;
    let mut response = get_relating_events::v1::Response::new(chunk);
    response.next_batch = next_batch;
    response.recursion_depth = recurse.then(|| UInt::from(RECURSION_DEPTH));
    Ok(response)
}

async fn relations_of_type(
    state: AppState,
    req: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type::v1::Response, ApiError> {
    let user = req.session().user_id.clone();
    let b = &req.body;
    let request = RelationsRequest {
        room_id: &b.room_id,
        event_id: &b.event_id,
        filter: RelationFilter { rel_type: Some(b.rel_type.to_string()), event_type: None, recurse: b.recurse },
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        dir: b.dir,
        limit: b.limit,
    };
    let recurse = request.filter.recurse;
    let (chunk, next_batch) = read_relations(&state, &user, request).await?;
    let mut response = get_relating_events_with_rel_type::v1::Response::new(chunk);
    response.next_batch = next_batch;
    response.recursion_depth = recurse.then(|| UInt::from(RECURSION_DEPTH));
    Ok(response)
}

async fn relations_of_type_and_event_type(
    state: AppState,
    req: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response, ApiError> {
    let user = req.session().user_id.clone();
    let b = &req.body;
    let request = RelationsRequest {
        room_id: &b.room_id,
        event_id: &b.event_id,
        filter: RelationFilter {
            rel_type: Some(b.rel_type.to_string()),
            event_type: Some(b.event_type.to_string()),
            recurse: b.recurse,
        },
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        dir: b.dir,
        limit: b.limit,
    };
    let recurse = request.filter.recurse;
    let (chunk, next_batch) = read_relations(&state, &user, request).await?;
    let mut response = get_relating_events_with_rel_type_and_event_type::v1::Response::new(chunk);
    response.next_batch = next_batch;
    response.recursion_depth = recurse.then(|| UInt::from(RECURSION_DEPTH));
    Ok(response)
}

async fn threads(state: AppState, req: Ruma<get_threads::v1::Request>) -> Result<get_threads::v1::Response, ApiError> {
    let user = req.session().user_id.clone();
    let b = &req.body;
    let include = match b.include {
        IncludeThreads::Participated => ThreadInclude::Participated,
        _ => ThreadInclude::All,
    };
    let from = parse_token(b.from.as_deref(), "from")?;
    let limit = b.limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(DEFAULT_LIMIT);
    let page = state.rooms.threads(&user, &b.room_id, include, from, limit).await?;
    let mut response = get_threads::v1::Response::new(timeline_events(&state, &user, &page.chunk).await?);
    response.next_batch = page.next_batch.map(|t| t.to_string());
    Ok(response)
}
