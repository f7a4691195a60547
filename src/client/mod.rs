//! Client-server API handlers, one file per chapter of the spec. Each
//! handler is thin: a ruma request in, one domain call, a ruma response out.

mod account;
mod device;
mod directory;
mod discovery;
pub mod events;
mod membership;
mod message;
mod profile;
mod room;
mod session;
mod state;

use axum::Router;

use crate::AppState;

/// Every client-server endpoint.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = discovery::routes(router);
    let router = account::routes(router);
    let router = session::routes(router);
    let router = device::routes(router);
    let router = profile::routes(router);
    let router = room::routes(router);
    let router = membership::routes(router);
    let router = message::routes(router);
    let router = state::routes(router);
    directory::routes(router)
}
