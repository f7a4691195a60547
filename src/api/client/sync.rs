//! `GET /sync` (client-server API, "Syncing"): the long-poll transport of
//! the shared sync function.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use axum::Router;
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
    router.ruma(sync_events)
}

/// Resolves an inline filter or a stored filter id.
pub async fn resolve_filter(
    state: &AppState,
    session: &Session,
    filter: Option<&sync_v3::Filter>,
) -> Result<Arc<FilterDefinition>, ApiError> {
    match filter {
        Some(sync_v3::Filter::FilterDefinition(def)) => Ok(Arc::new(def.clone())),
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

/// A held long-poll sync should cost little memory: the parsed request is
/// consumed by a boxed future that is freed once the transport-independent
/// request is built, so the future that waits holds only that (boxed).
fn sync_events(
    state: AppState,
    req: Ruma<sync_events::v3::Request>,
) -> impl Future<Output = Result<sync_v3::Response, ApiError>> + Send {
    let prepare = Box::pin(prepare_sync(state.clone(), req));
    async move {
        let request = prepare.await?;
        Ok(sync::sync(&state.sync, &request).await?)
    }
}

async fn prepare_sync(state: AppState, req: Ruma<sync_events::v3::Request>) -> Result<Box<SyncRequest>, ApiError> {
    let timeout = req.body.timeout.unwrap_or_default();
    Ok(Box::new(sync_request(&state, req.session(), &req.body, timeout).await?))
}
