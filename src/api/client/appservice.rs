//! Application service endpoints of the client-server API ("Application
//! service" pinging, `POST /appservice/{appserviceId}/ping`).

use axum::Router;
use ruma::api::client::appservice::request_ping;

use crate::{
    appservice::AppserviceError,
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(ping)
}

/// Calls the appservice's `/_matrix/app/v1/ping` and reports how long it took.
async fn ping(state: AppState, req: Ruma<request_ping::v1::Request>) -> Result<request_ping::v1::Response, ApiError> {
    let caller = req
        .session()
        .appservice_id
        .as_deref()
        .and_then(|id| state.appservice.all().iter().find(|a| a.id() == id))
        .ok_or_else(|| AppserviceError::Forbidden("only an application service may ping".into()))?
        .clone();
    let body = req.body;
    let duration = state.appservice.ping(&caller, &body.appservice_id, body.transaction_id).await?;
    Ok(request_ping::v1::Response::new(duration))
}
