//! Media metadata. The bytes live on disk under the media directory,
//! named by their SHA-256; storage maps media ids to them, and other
//! servers' media ids to the cached copies of their files.

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

/// A cached copy of another server's file.
#[derive(Debug, Clone)]
pub struct RemoteMediaRecord {
    pub origin: String,
    pub media_id: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: i64,
    pub sha256: String,
    /// When it was fetched (Unix milliseconds).
    pub fetched_ts: i64,
    pub last_access_ts: i64,
}

/// A file evicted from the remote media cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictedMedia {
    pub sha256: String,
    /// Whether another cached id still names the same content (then the
    /// file stays).
    pub still_used: bool,
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
/// - Eviction from the remote media cache removes the least recently used
///   entries until the total (files and their thumbnails) fits, and says
///   of each removed file whether another entry still names it, as seen
///   in the same step.
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

    /// The cached copy of `mxc://origin/media_id`, if any.
    async fn get_remote_media(&self, origin: String, media_id: String) -> Result<Option<RemoteMediaRecord>>;

    /// Records a fetched copy (replacing an older record of the same id).
    async fn insert_remote_media(&self, record: RemoteMediaRecord) -> Result<()>;

    /// Marks a cached copy used at `now_ms`.
    async fn touch_remote_media(&self, origin: String, media_id: String, now_ms: i64) -> Result<()>;

    /// Adds the size of a thumbnail made of a cached copy to its share of
    /// the cache.
    async fn add_remote_thumbnail_size(&self, origin: String, media_id: String, bytes: i64) -> Result<()>;

    /// Forgets a cached copy (its file went missing).
    async fn delete_remote_media(&self, origin: String, media_id: String) -> Result<()>;

    /// Evicts the least recently used cached copies until the cache holds
    /// at most `max_bytes`; returns the files of the evicted entries.
    async fn evict_remote_media(&self, max_bytes: i64) -> Result<Vec<EvictedMedia>>;
}
