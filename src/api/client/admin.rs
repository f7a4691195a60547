//! Server administration (client-server API, "Server administration"):
//! `GET /admin/whois/{userId}`, a user's devices and their last use.

use axum::Router;
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::admin::get_user_info::v3::{self as whois_v3, ConnectionInfo, DeviceInfo, SessionInfo},
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(whois)
}

/// Each device is one session with one connection: Plexus records a
/// device's last address and time (at login), not each connection, nor
/// user agents (`user_agent` is null, as Synapse sends for an unknown one).
async fn whois(state: AppState, req: Ruma<whois_v3::Request>) -> Result<whois_v3::Response, ApiError> {
    let session = req.session().clone();
    let devices = state.users.whois(&session, &req.body.user_id).await?;
    let mut response = whois_v3::Response::new();
    response.user_id = Some(req.body.user_id);
    for device in devices {
        let mut connection = ConnectionInfo::new();
        connection.ip = device.last_seen_ip;
        connection.last_seen =
            device.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
        let mut session = SessionInfo::new();
        session.connections.push(connection);
        let mut info = DeviceInfo::new();
        info.sessions.push(session);
        response.devices.insert(device.device_id.to_string(), info);
    }
    Ok(response)
}
