//! Storage: everything Plexus keeps, behind one trait per domain. Each
//! domain module names the records it stores and the trait its callers
//! use; `sqlite/` is the backend (the only code that writes SQL). Services
//! hold an `Arc<dyn Storage>`, so another backend plugs in where
//! `Services::open` opens the store. `tests/storage_contract/` holds the
//! tests every backend must pass.

pub mod appservice;
pub mod delayed_events;
pub mod directory;
pub mod e2ee;
pub mod federation;
pub mod media;
pub mod push;
pub mod pushers;
pub mod relations;
pub mod reports;
pub mod rooms;
pub mod search;
pub mod server_meta;
mod sqlite;
pub mod streams;
pub mod sync;
pub mod users;

pub use self::{
    appservice::AppserviceStore,
    delayed_events::DelayedEventStore,
    directory::DirectoryStore,
    e2ee::{E2eeStore, KeyBackupStore},
    federation::FederationStore,
    media::MediaStore,
    push::PushStore,
    pushers::PusherStore,
    relations::RelationStore,
    reports::ReportStore,
    rooms::{EventStore, MembershipStore, StateStore},
    search::SearchStore,
    server_meta::ServerMetaStore,
    sqlite::SqliteStore,
    streams::StreamStore,
    sync::SyncStore,
    users::AccountStore,
};

/// Every domain's store, from one backend.
///
/// What every backend must guarantee for every method of every domain
/// trait (each trait adds its own):
/// - Nothing is acknowledged before it is committed: a write returns `Ok`
///   only once it is durable (as configured), and every read that starts
///   after that sees it, on any task or thread.
/// - A write is atomic: when it fails (or answers with a refusal such as
///   `AlreadySent` or `WrongVersion`), it has changed nothing.
/// - Writes that check and then change (a transaction id, a one-time key,
///   a free user id, a reserved media id) do both in one step, as if no
///   other write ran between them. The SQLite backend gets this from its
///   single writer; a backend with several writers needs transactions (or
///   locks) that give the same.
/// - Stream positions are never observed out of order: a reader that
///   sees position `N` of a stream sees everything at positions below `N`
///   (see `EventStore` and `StreamStore`).
pub trait Storage:
    AccountStore
    + EventStore
    + StateStore
    + MembershipStore
    + StreamStore
    + E2eeStore
    + KeyBackupStore
    + MediaStore
    + PushStore
    + PusherStore
    + RelationStore
    + ReportStore
    + FederationStore
    + DirectoryStore
    + SearchStore
    + ServerMetaStore
    + SyncStore
    + AppserviceStore
    + DelayedEventStore
{
    /// Lets the writes queued so far commit, then refuses new ones
    /// (`WriterGone`); reads go on working. Called once, at shutdown.
    fn close(&self);
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend failed (its own error inside).
    #[error("database error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A write found a row that conflicts with it; nothing was changed.
    #[error("conflicting data for {0}")]
    Conflict(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Current time in milliseconds since the Unix epoch, as stored in tables.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
