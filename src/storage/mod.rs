//! Storage: everything Plexus keeps, behind typed functions per domain.
//! Each domain module names the records it stores; `sqlite/` is the
//! backend, and the only code that writes SQL. Callers never see SQL or a
//! connection.

pub mod e2ee;
pub mod federation;
pub mod media;
pub mod rooms;
mod sqlite;
pub mod streams;
pub mod sync;
pub mod users;

pub use sqlite::Db;

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
