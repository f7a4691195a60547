//! Client-server API handlers, one file per chapter of the spec. Each
//! handler is thin: a ruma request in, one domain call, a ruma response out.

mod account;
mod device;
mod discovery;
mod profile;
mod session;

use axum::Router;

use crate::AppState;

/// Every client-server endpoint.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = discovery::routes(router);
    let router = account::routes(router);
    let router = session::routes(router);
    let router = device::routes(router);
    profile::routes(router)
}
