//! `GET /sync` (client-server API, "Syncing"): the long-poll transport of
//! the shared sync function.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use axum::{
    Router,
    response::{IntoResponse, Response},
};
use http::header;
use ruma::{
    api::client::{
        filter::FilterDefinition,
        sync::sync_events::{self, v3 as sync_v3},
    },
    presence::PresenceState,
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
    sync::{self, SyncRequest},
    users::Session,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_responding(sync_events)
}

/// Resolves an inline filter or a stored filter id.
pub async fn resolve_filter(
    state: &AppState,
    session: &Session,
    filter: Option<&sync_v3::Filter>,
) -> Result<Arc<FilterDefinition>, ApiError> {
    match filter {
        Some(sync_v3::Filter::FilterDefinition(def)) => Ok(Arc::new(def.clone())),
        // Spec: a `filter` starting with `{` is a filter definition. Ruma
        // takes one that it could not parse as a filter for an id: it is
        // parsed here again, and refused as what it is if it is no filter
        // (as Synapse does), never looked up.
        Some(sync_v3::Filter::FilterId(id)) if id.trim_start().starts_with('{') => {
            match serde_json::from_str::<FilterDefinition>(id) {
                Ok(def) => Ok(Arc::new(def)),
                Err(e) if e.is_syntax() || e.is_eof() => {
                    Err(ApiError::not_json(format!("the filter is not JSON: {e}")))
                }
                Err(e) => Err(ApiError::bad_json(format!("invalid filter: {e}"))),
            }
        }
        Some(sync_v3::Filter::FilterId(id)) => Ok(state.streams.sync_filter(&session.user_id, id).await?),
        _ => Ok(no_filter()),
    }
}

/// The empty filter, shared by every sync that gives none.
fn no_filter() -> Arc<FilterDefinition> {
    static EMPTY: LazyLock<Arc<FilterDefinition>> = LazyLock::new(|| Arc::new(FilterDefinition::default()));
    EMPTY.clone()
}

/// `set_presence` as the sync layer takes it.
pub fn presence_name(p: &PresenceState) -> Option<String> {
    Some(p.as_str().to_owned())
}

/// Builds the transport-independent request from the `/sync` parameters.
pub async fn sync_request(
    state: &AppState,
    session: &Session,
    body: &sync_v3::Request,
    timeout: Duration,
) -> Result<SyncRequest, ApiError> {
    Ok(SyncRequest {
        user_id: session.user_id.clone(),
        device_id: session.device_id.clone(),
        since: body.since.clone(),
        filter: resolve_filter(state, session, body.filter.as_ref()).await?,
        full_state: body.full_state,
        set_presence: presence_name(&body.set_presence),
        timeout,
    })
}

/// The response's JSON, with the keys ruma's type leaves out when empty
/// (`sync::response_json`).
pub fn response_body(response: &sync_v3::Response) -> Result<Vec<u8>, ApiError> {
    sync::response_json(response).map_err(ApiError::internal_with)
}

/// A held long-poll sync should cost little memory: the parsed request is
/// consumed by a boxed future that is freed once the transport-independent
/// request is built, so the future that waits holds only that (boxed).
fn sync_events(
    state: AppState,
    req: Ruma<sync_events::v3::Request>,
) -> impl Future<Output = Result<Response, ApiError>> + Send {
    let prepare = Box::pin(prepare_sync(state.clone(), req));
    async move {
        let request = prepare.await?;
        let response = sync::sync(&state.sync, &request).await?;
        let body = response_body(&response)?;
        Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}

async fn prepare_sync(state: AppState, req: Ruma<sync_events::v3::Request>) -> Result<Box<SyncRequest>, ApiError> {
    let timeout = req.body.timeout.unwrap_or_default();
    Ok(Box::new(sync_request(&state, req.session(), &req.body, timeout).await?))
}
