//! Send-to-device messaging (client-server API, "Send-to-Device
//! messaging").

use axum::Router;
use ruma::api::client::to_device::send_event_to_device;

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
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
    for (user, devices) in body.messages {
        for (device, content) in devices {
            let content: serde_json::Value =
                serde_json::from_str(content.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
            messages.push((user.clone(), device.to_string(), content));
        }
    }
    state.e2ee.send_to_device(&session, body.txn_id.as_str(), &kind, messages).await?;
    Ok(send_event_to_device::v3::Response::new())
}
