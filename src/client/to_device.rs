//! Send-to-device messaging (client-server API, "Send-to-Device
//! messaging").

use axum::Router;
use ruma::api::client::to_device::send_event_to_device;

use crate::{
    AppState,
    http::{ApiError, RouterExt, Ruma},
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(send)
}

async fn send(
    state: AppState,
    req: Ruma<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response, ApiError> {
    let session = req.session().clone();
    let body = req.body;
    let kind = body.event_type.to_string();
    let mut messages = Vec::new();
    let mut remote = Vec::new();
    let own = &state.config.server.server_name;
    for (user, devices) in body.messages {
        for (device, content) in devices {
            let content: serde_json::Value =
                serde_json::from_str(content.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
            if !content.is_object() {
                return Err(ApiError::bad_json("to-device content must be an object"));
            }
            if user.server_name() != own {
                remote.push((user.clone(), device.to_string(), content));
                continue;
            }
            messages.push((user.to_string(), device.to_string(), kind.clone(), content.to_string()));
        }
    }
    if !remote.is_empty() && !state.federation.enabled() {
        return Err(ApiError::forbidden("this server does not federate"));
    }
    state.e2ee.send_to_device(&session, body.txn_id.as_str(), messages).await?;
    if !remote.is_empty() {
        // The message id is unique per sender device and transaction.
        let message_id = format!("{}-{}", session.device_id, body.txn_id);
        state.federation.send_to_device_remote(&session.user_id, &kind, &message_id, remote).await;
    }
    Ok(send_event_to_device::v3::Response::new())
}
