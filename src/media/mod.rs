//! The media repository (client-server API, "Content repository"):
//! uploads streamed to disk and named by their SHA-256 (written fully to a
//! temporary file, then renamed, before an id is handed out), downloads,
//! thumbnails, and the rules for serving files safely. Other servers'
//! media is fetched through a `RemoteMediaSource` (federation) and kept in
//! a bounded cache (`remote`).

pub mod preview;
pub mod remote;
pub mod serve;
pub mod thumbnail;

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use rand::{Rng, distributions::Alphanumeric};
use ruma::{MxcUri, OwnedMxcUri, OwnedServerName, ServerName, UserId};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

pub use self::{
    remote::{RemoteFetchError, RemoteFile, RemoteMediaSource},
    serve::{ServedHeaders, served_headers},
};
use crate::{
    config::Config,
    storage::{
        MediaStore, StorageError,
        media::{CompleteOutcome, MediaContent, MediaRecord},
        now_ms,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file is larger than the {0} bytes allowed")]
    TooLarge(u64),
    #[error("{0}")]
    NotFound(String),
    #[error("the media has not been uploaded yet")]
    NotYetUploaded,
    #[error("the media was already uploaded")]
    CannotOverwrite,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("the remote file is larger than the {0} bytes allowed")]
    RemoteTooLarge(u64),
    #[error("failed to fetch remote media: {0}")]
    RemoteUnavailable(String),
    #[error("cannot read the upload: {0}")]
    Upload(String),
    #[error("media storage failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;

/// How long an unused asynchronous upload stays reserved.
const PENDING_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;

pub struct Media {
    db: Arc<dyn MediaStore>,
    config: Arc<Config>,
    root: PathBuf,
    /// Recent URL previews: URL -> (when, preview).
    previews: quick_cache::sync::Cache<String, (std::time::Instant, serde_json::Value)>,
    /// Where other servers' files come from (none: they are not found).
    remote: Option<Arc<dyn RemoteMediaSource>>,
    remote_cache: remote::RemoteCache,
}

/// A stored file ready to serve, this server's or a cached copy of another
/// server's.
#[derive(Debug)]
pub struct StoredMedia {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub sha256: String,
    pub path: PathBuf,
    /// `(origin, media_id)` of a cached copy of another server's file.
    pub remote: Option<(OwnedServerName, String)>,
}

/// Media ids are what this server generates: letters, digits, `-`, `_`.
/// Anything else (`../`, slashes, dots) is refused before touching disk.
pub fn valid_media_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A SHA-256 as files are named by: 64 lowercase hex digits.
fn valid_sha256(sha256: &str) -> bool {
    sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Media {
    /// The content repository; other servers' files come from `remote`.
    pub fn new(db: Arc<dyn MediaStore>, config: Arc<Config>, remote: Option<Arc<dyn RemoteMediaSource>>) -> Self {
        let root = config.server.data_dir.join("media");
        Self {
            db,
            config,
            root,
            previews: quick_cache::sync::Cache::new(1000),
            remote,
            remote_cache: remote::RemoteCache::default(),
        }
    }

    fn content_path(&self, sha256: &str) -> PathBuf {
        self.root.join("content").join(&sha256[..2]).join(&sha256[2..])
    }

    pub(crate) fn thumbnail_dir(&self) -> PathBuf {
        self.root.join("thumbnails")
    }

    fn new_media_id() -> String {
        rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect()
    }

    fn mxc(&self, media_id: &str) -> OwnedMxcUri {
        OwnedMxcUri::from(format!("mxc://{}/{media_id}", self.config.server.server_name))
    }

    /// Streams an upload to a temporary file while hashing it, refusing it
    /// once it passes the size limit, then moves it to its content address.
    async fn store<S, E>(&self, body: S) -> Result<(String, i64)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let (tmp, sha256, size) = self.write_temporary(body).await?;
        let dest = self.content_path(&sha256);
        let moved = async {
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&tmp, &dest).await
        }
        .await;
        if let Err(e) = moved {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok((sha256, size))
    }

    /// Streams bytes to a new temporary file while hashing them, refusing
    /// them once they pass the upload size limit: `(file, sha256, size)`.
    async fn write_temporary<S, E>(&self, mut body: S) -> Result<(PathBuf, String, i64)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let limit = self.config.media.max_upload_bytes;
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp = tmp_dir.join(format!("upload-{}", Self::new_media_id()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut hasher = Sha256::new();
            let mut size: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| MediaError::Upload(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(MediaError::TooLarge(limit));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            let sha256: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
            Ok((sha256, size as i64))
        }
        .await;
        match result {
            Ok((sha256, size)) => Ok((tmp, sha256, size)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// `POST /upload`: stores the bytes and returns their new `mxc://` URI.
    pub async fn upload<S, E>(
        &self,
        user: &UserId,
        content_type: Option<String>,
        filename: Option<String>,
        body: S,
    ) -> Result<OwnedMxcUri>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let (sha256, size) = self.store(body).await?;
        let media_id = Self::new_media_id();
        let content = MediaContent { content_type, filename, size, sha256 };
        self.db.insert_media(media_id.clone(), user.to_string(), content).await?;
        Ok(self.mxc(&media_id))
    }

    /// `POST /media/v1/create`: reserves an id for a later upload.
    pub async fn reserve(&self, user: &UserId) -> Result<(OwnedMxcUri, i64)> {
        if self.db.pending_media_count(user.to_string()).await? >= self.config.media.max_pending_uploads {
            return Err(MediaError::LimitExceeded("too many unfinished uploads".into()));
        }
        let media_id = Self::new_media_id();
        let expires = now_ms() + PENDING_LIFETIME_MS;
        self.db.reserve_media(media_id.clone(), user.to_string(), expires).await?;
        Ok((self.mxc(&media_id), expires))
    }

    /// `PUT /upload/{serverName}/{mediaId}`: fills a reservation.
    pub async fn upload_reserved<S, E>(
        &self,
        user: &UserId,
        server: &str,
        media_id: &str,
        content_type: Option<String>,
        filename: Option<String>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let record = self.local_record(server, media_id).await?;
        if record.user_id != user.as_str() {
            return Err(MediaError::Forbidden("this upload was reserved by someone else".into()));
        }
        if record.sha256.is_some() {
            return Err(MediaError::CannotOverwrite);
        }
        let (sha256, size) = self.store(body).await?;
        let content = MediaContent { content_type, filename, size, sha256 };
        match self.db.complete_media(media_id.to_owned(), user.to_string(), content).await? {
            CompleteOutcome::Done => Ok(()),
            CompleteOutcome::AlreadyUploaded => Err(MediaError::CannotOverwrite),
            CompleteOutcome::NotOwner => Err(MediaError::Forbidden("this upload was reserved by someone else".into())),
            CompleteOutcome::NotFound | CompleteOutcome::Expired => Err(MediaError::NotFound("no such upload".into())),
        }
    }

    async fn local_record(&self, server: &str, media_id: &str) -> Result<MediaRecord> {
        if !valid_media_id(media_id) {
            return Err(MediaError::InvalidParam("invalid media id".into()));
        }
        if server != self.config.server.server_name.as_str() {
            return Err(MediaError::NotFound("media not found".into()));
        }
        self.db.get_media(media_id.to_owned()).await?.ok_or_else(|| MediaError::NotFound("media not found".into()))
    }

    /// Finds a file to serve: this server's, or another server's (cached,
    /// else fetched). `legacy` applies the freeze of the unauthenticated
    /// endpoints.
    pub async fn open(&self, server: &str, media_id: &str, legacy: bool) -> Result<StoredMedia> {
        if server != self.config.server.server_name.as_str() {
            if !valid_media_id(media_id) {
                return Err(MediaError::InvalidParam("invalid media id".into()));
            }
            let origin =
                <&ServerName>::try_from(server).map_err(|_| MediaError::InvalidParam("invalid server name".into()))?;
            return self.open_remote(origin, media_id, legacy).await;
        }
        self.open_local(media_id, legacy).await
    }

    /// This server's file `media_id` (what the federation media endpoints
    /// serve: never another server's).
    pub async fn open_local(&self, media_id: &str, legacy: bool) -> Result<StoredMedia> {
        let record = self.local_record(self.config.server.server_name.as_str(), media_id).await?;
        if legacy && record.created_ts >= self.config.media.legacy_unauthenticated_before_ms {
            return Err(MediaError::NotFound(
                "this media is only available through the authenticated endpoints".into(),
            ));
        }
        let Some(sha256) = record.sha256 else {
            return Err(MediaError::NotYetUploaded);
        };
        let path = self.content_path(&sha256);
        Ok(StoredMedia {
            content_type: record.content_type,
            filename: record.filename,
            size: record.size,
            sha256,
            path,
            remote: None,
        })
    }

    /// The `mxc://` URI a server name and id make, for messages.
    pub fn parse_mxc(uri: &MxcUri) -> Option<(String, String)> {
        let (server, id) = uri.parts().ok()?;
        Some((server.to_string(), id.to_owned()))
    }
}
