//! The APIs Plexus serves, assembled into routers: the client-server API
//! (`client`, one file per chapter of the spec) and the server-server API
//! (`federation`). Handlers are thin: a ruma request in, domain calls, a
//! ruma response out.

pub mod client;
pub mod federation;

use axum::Router;

use crate::{
    http::{App, layered},
    services::AppState,
};

/// The client listener's application: the client-server API, and the
/// server-server API too when a reverse proxy sends both to one port.
pub fn app(state: AppState) -> App {
    let mut router = client::routes(Router::new());
    if state.config.federation.serve_on_client_listener {
        router = federation::routes(router);
    }
    layered(router, state)
}

/// The federation listener's application: the server-server and key APIs.
pub fn federation_app(state: AppState) -> App {
    layered(federation::routes(Router::new()), state)
}
