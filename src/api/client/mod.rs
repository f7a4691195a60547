//! Client-server API handlers, one file per chapter of the spec. Each
//! handler is thin: a ruma request in, one domain call, a ruma response out.

mod account;
mod account_data;
mod admin;
mod appservice;
mod backup;
mod delayed_events;
mod device;
pub(crate) mod directory;
mod discovery;
pub mod events;
mod filter;
mod keys;
mod legacy_sync;
mod media;
mod membership;
mod message;
mod openid;
mod presence;
mod profile;
mod push;
mod receipts;
mod relations;
mod reporting;
mod room;
mod rtc;
mod search;
mod session;
pub mod sliding_sync;
mod space;
mod state;
pub mod sync;
pub mod sync_push;
mod thirdparty;
mod to_device;
mod typing;
mod user_directory;
mod voip;

use axum::Router;

use crate::services::AppState;

/// Every client-server endpoint.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = discovery::routes(router);
    let router = account::routes(router);
    let router = session::routes(router);
    let router = appservice::routes(router);
    let router = device::routes(router);
    let router = profile::routes(router);
    let router = room::routes(router);
    let router = membership::routes(router);
    let router = message::routes(router);
    let router = relations::routes(router);
    let router = state::routes(router);
    let router = delayed_events::routes(router);
    let router = directory::routes(router);
    let router = sync::routes(router);
    let router = legacy_sync::routes(router);
    let router = sliding_sync::routes(router);
    let router = sync_push::routes(router);
    let router = filter::routes(router);
    let router = typing::routes(router);
    let router = receipts::routes(router);
    let router = presence::routes(router);
    let router = keys::routes(router);
    let router = to_device::routes(router);
    let router = backup::routes(router);
    let router = media::routes(router);
    let router = push::routes(router);
    let router = thirdparty::routes(router);
    let router = search::routes(router);
    let router = user_directory::routes(router);
    let router = reporting::routes(router);
    let router = space::routes(router);
    let router = voip::routes(router);
    let router = rtc::routes(router);
    let router = openid::routes(router);
    let router = admin::routes(router);
    account_data::routes(router)
}
