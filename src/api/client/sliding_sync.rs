//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`
//! (MSC4186, simplified sliding sync): the long-poll transport of the
//! sliding sync assembler (`sync::sliding_sync`).

use axum::Router;
use ruma::api::client::sync::sync_events::v5;

use super::sync::presence_name;
use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
    sync::{self, SlidingSyncRequest},
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(sliding_sync)
}

/// The parsed request is consumed into the transport-independent one
/// (boxed), so a held request keeps only that and its wait.
fn sliding_sync(
    state: AppState,
    req: Ruma<v5::Request>,
) -> impl Future<Output = Result<v5::Response, ApiError>> + Send {
    let (user_id, device_id) = (req.session().user_id.clone(), req.session().device_id.clone());
    let body = req.body;
    let txn_id = body.txn_id.clone();
    let request = Box::new(SlidingSyncRequest {
        user_id,
        device_id,
        conn_id: body.conn_id.clone().unwrap_or_default(),
        pos: body.pos.clone(),
        // MSC4186: without a timeout the response comes at once.
        timeout: body.timeout.unwrap_or_default(),
        set_presence: presence_name(&body.set_presence),
        body,
    });
    async move {
        let mut response = sync::sliding_sync(&state.sync, &request).await?;
        response.txn_id = txn_id;
        Ok(response)
    }
}
