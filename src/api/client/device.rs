//! Device management (client-server API, "Device Management").

use axum::Router;
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::device::{self, delete_device, delete_devices, get_device, get_devices, update_device},
};

use crate::{
    http::{ApiError, RouterExt, Ruma},
    services::AppState,
    storage::users::DeviceRecord,
    users::Session,
};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(list).ruma(get).ruma(update).ruma(delete_one).ruma(delete_many)
}

fn to_ruma(d: DeviceRecord) -> device::Device {
    let mut device = device::Device::new(d.device_id);
    device.display_name = d.display_name;
    device.last_seen_ip = d.last_seen_ip;
    device.last_seen_ts = d.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
    device
}

/// Whether the request comes from an appservice registered with
/// `io.element.msc4190`: it manages its users' devices without logins
/// (`PUT` creates, `DELETE` needs no user-interactive auth).
fn uses_msc4190(state: &AppState, session: &Session) -> bool {
    session.appservice_id.as_deref().is_some_and(|id| state.appservice.all().iter().any(|a| a.id() == id && a.msc4190))
}

async fn list(state: AppState, req: Ruma<get_devices::v3::Request>) -> Result<get_devices::v3::Response, ApiError> {
    let devices = state.users.list_devices(&req.session().user_id).await?;
    Ok(get_devices::v3::Response::new(devices.into_iter().map(to_ruma).collect()))
}

async fn get(state: AppState, req: Ruma<get_device::v3::Request>) -> Result<get_device::v3::Response, ApiError> {
    let device = state.users.get_device(&req.session().user_id, &req.body.device_id).await?;
    Ok(get_device::v3::Response::new(to_ruma(device)))
}

async fn update(
    state: AppState,
    req: Ruma<update_device::v3::Request>,
) -> Result<update_device::v3::Response, ApiError> {
    let user_id = req.session().user_id.clone();
    if uses_msc4190(&state, req.session()) {
        state.users.put_device_without_login(&user_id, &req.body.device_id, req.body.display_name).await?;
        return Ok(update_device::v3::Response::new());
    }
    state.users.rename_device(&user_id, &req.body.device_id, req.body.display_name).await?;
    Ok(update_device::v3::Response::new())
}

async fn delete_one(
    state: AppState,
    req: Ruma<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response, ApiError> {
    let session = req.session().clone();
    // Spec: a device that does not exist is a 404, checked before UIA.
    state.users.get_device(&session.user_id, &req.body.device_id).await?;
    if uses_msc4190(&state, &session) {
        state.users.delete_devices_without_uia(&session.user_id, vec![req.body.device_id]).await?;
        return Ok(delete_device::v3::Response::new());
    }
    state.users.delete_devices(&session, vec![req.body.device_id], req.body.auth.as_ref()).await?;
    Ok(delete_device::v3::Response::new())
}

async fn delete_many(
    state: AppState,
    req: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response, ApiError> {
    let session = req.session().clone();
    if uses_msc4190(&state, &session) {
        state.users.delete_devices_without_uia(&session.user_id, req.body.devices).await?;
        return Ok(delete_devices::v3::Response::new());
    }
    state.users.delete_devices(&session, req.body.devices, req.body.auth.as_ref()).await?;
    Ok(delete_devices::v3::Response::new())
}
