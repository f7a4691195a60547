//! Media metadata. The bytes live on disk under the media directory,
//! named by their SHA-256; storage maps media ids to them.

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
