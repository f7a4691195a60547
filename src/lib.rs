//! Plexus, a Matrix homeserver. The crate root only declares the modules:
//! `services` wires the domain services together, `server` starts and stops
//! the listeners, `api` assembles the routes. See `docs/architecture.md` for
//! the map of modules, the layers they sit in and their invariants.

pub mod address_policy;
pub mod api;
pub mod appservice;
pub mod calls;
pub mod commit;
pub mod config;
pub mod delayed;
pub mod e2ee;
pub mod federation;
pub mod http;
pub mod media;
pub mod pdu;
pub mod push;
pub mod rate_limit;
pub mod reports;
pub mod rooms;
pub mod search;
pub mod server;
pub mod server_key;
pub mod services;
pub mod storage;
pub mod streams;
pub mod sync;
pub mod users;

/// The ruma version Plexus is built on, for tests and tools that check its output.
pub use ruma;

pub use crate::{
    server::Server,
    services::{AppState, Services, StartError},
};
