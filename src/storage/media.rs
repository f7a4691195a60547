//! Media metadata. The bytes live on disk under the media directory,
//! named by their SHA-256; storage maps media ids to them.

use async_trait::async_trait;

use super::Result;

#[derive(Debug, Clone)]
pub struct MediaRecord {
    pub media_id: String,
    pub user_id: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<i64>,
    /// `None` while an asynchronous upload has not arrived.
    pub sha256: Option<String>,
    pub created_ts: i64,
    pub expires_ts: Option<i64>,
}

/// What the content of a media id is set to.
#[derive(Debug, Clone)]
pub struct MediaContent {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CompleteOutcome {
    Done,
    NotFound,
    NotOwner,
    AlreadyUploaded,
    Expired,
}

/// Media metadata: which media id names which content, and who owns it.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// - A media id is stored once: inserting or reserving an existing id
///   fails and changes nothing.
/// - A reserved id is filled at most once: of two completions (even
///   concurrent ones) one is `Done`, the other `AlreadyUploaded`.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Stores the metadata of an uploaded file under a new media id.
    async fn insert_media(&self, media_id: String, user_id: String, content: MediaContent) -> Result<()>;

    /// Reserves a media id for an asynchronous upload, until `expires_ts`.
    async fn reserve_media(&self, media_id: String, user_id: String, expires_ts: i64) -> Result<()>;

    /// Unused, unexpired reservations a user holds (to bound them).
    async fn pending_media_count(&self, user_id: String) -> Result<i64>;

    /// Fills a reserved media id, once, by its owner, before it expires.
    async fn complete_media(&self, media_id: String, user_id: String, content: MediaContent)
    -> Result<CompleteOutcome>;

    async fn get_media(&self, media_id: String) -> Result<Option<MediaRecord>>;
}
