//! Reports (client-server API, "Reporting content"): the events, rooms
//! and users that users reported to the server's admins, kept until an
//! admin resolves them.

use async_trait::async_trait;

use super::Result;

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    /// An event; `sender` is who sent it (so admins see whom it concerns).
    Event {
        room_id: String,
        event_id: String,
        sender: String,
    },
    Room {
        room_id: String,
    },
    User {
        user_id: String,
    },
}

/// A report as a user made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub reporter: String,
    pub target: ReportTarget,
    /// The reporter's words, possibly empty.
    pub reason: String,
    /// When it was made, in milliseconds.
    pub ts: i64,
}

/// A stored report: its id, what was reported, and who resolved it when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub id: i64,
    pub report: ReportRow,
    /// `(admin, ts)` once an admin resolved it.
    pub resolved: Option<(String, i64)>,
}

/// Which reports to list: newest first, below `before` (an id) when given,
/// only resolved or only open ones when `resolved` says so.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportListing {
    pub resolved: Option<bool>,
    pub before: Option<i64>,
    pub limit: usize,
}

/// Reports and their resolution.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - Ids grow: a report added later has a larger id, and ids are never
///   reused.
/// - Resolving is once: a report resolved keeps its first resolver and
///   time.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores a report; returns its id.
    async fn add_report(&self, report: ReportRow) -> Result<i64>;

    async fn get_report(&self, id: i64) -> Result<Option<StoredReport>>;

    /// Reports as `listing` selects them, newest first.
    async fn list_reports(&self, listing: ReportListing) -> Result<Vec<StoredReport>>;

    /// Marks a report resolved by `admin` at `ts`; whether it was open
    /// (false when unknown or already resolved).
    async fn resolve_report(&self, id: i64, admin: String, ts: i64) -> Result<bool>;
}
