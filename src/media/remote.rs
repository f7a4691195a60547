//! Other servers' media (client-server API, "Content repository"; the
//! fetch itself is the server-server API's, behind `RemoteMediaSource`,
//! which the federation service implements). A fetched file is kept under
//! `media/remote/<sha256>` and recorded in the remote media cache; the cache
//! is bounded by `media.remote_cache_max_bytes` (files and the thumbnails
//! made of them), the least recently used evicted first.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use bytes::Bytes;
use ruma::{OwnedServerName, ServerName};

use super::{Media, MediaError, Result, StoredMedia};
use crate::storage::{media::RemoteMediaRecord, now_ms};

/// A file another server sent.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub bytes: Bytes,
}

/// Why another server's file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RemoteFetchError {
    /// The server answered that it has no such media.
    #[error("{0}")]
    NotFound(String),
    /// This server may not ask that server (federation off, deny-list).
    #[error("{0}")]
    NotAllowed(String),
    #[error("the remote file is larger than the {0} bytes allowed")]
    TooLarge(u64),
    /// Unreachable, an error answer, or an answer that does not parse.
    #[error("{0}")]
    Unavailable(String),
}

/// Where other servers' files come from: the federation service.
#[async_trait]
pub trait RemoteMediaSource: Send + Sync {
    /// Fetches `mxc://{origin}/{media_id}` from its server, refusing a file
    /// of more than `max_bytes`.
    async fn fetch_media(
        &self,
        origin: &ServerName,
        media_id: &str,
        max_bytes: u64,
    ) -> std::result::Result<RemoteFile, RemoteFetchError>;
}

/// A cached copy is marked used at most this often (a write per download
/// would be wasted on a file many users view at once).
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Another server's media id: `(origin, media_id)`.
type RemoteId = (OwnedServerName, String);

/// The state of the remote media cache shared by requests.
#[derive(Default)]
pub(super) struct RemoteCache {
    /// One fetch per media id at a time: concurrent requests for the same
    /// file wait for the first and then find it cached.
    in_flight: Mutex<HashMap<RemoteId, Arc<tokio::sync::Mutex<()>>>>,
    /// Serialises what changes the cache's files (store, evict), so an
    /// eviction never removes a file another request just stored.
    files: tokio::sync::Mutex<()>,
}

impl From<RemoteFetchError> for MediaError {
    fn from(e: RemoteFetchError) -> Self {
        match e {
            RemoteFetchError::NotFound(m) | RemoteFetchError::NotAllowed(m) => MediaError::NotFound(m),
            RemoteFetchError::TooLarge(limit) => MediaError::RemoteTooLarge(limit),
            RemoteFetchError::Unavailable(m) => MediaError::RemoteUnavailable(m),
        }
    }
}

impl Media {
    fn remote_path(&self, sha256: &str) -> PathBuf {
        self.root.join("remote").join(&sha256[..2]).join(&sha256[2..])
    }

    /// Thumbnails of a cached copy, apart from local ones so that they go
    /// with it.
    pub(super) fn remote_thumbnail_dir(&self, sha256: &str) -> PathBuf {
        self.root.join("remote_thumbnails").join(sha256)
    }

    /// Another server's file: from the cache, else fetched and cached.
    /// `legacy` applies the freeze of the unauthenticated endpoints: they
    /// serve only copies fetched before it and never fetch.
    pub(super) async fn open_remote(&self, origin: &ServerName, media_id: &str, legacy: bool) -> Result<StoredMedia> {
        if let Some(stored) = self.cached_remote(origin, media_id, legacy).await? {
            return Ok(stored);
        }
        if legacy && now_ms() >= self.config.media.legacy_unauthenticated_before_ms {
            return Err(MediaError::NotFound(
                "this media is only available through the authenticated endpoints".into(),
            ));
        }
        let Some(source) = self.remote.clone() else {
            return Err(MediaError::NotFound("remote media is not available".into()));
        };
        let key = (origin.to_owned(), media_id.to_owned());
        let lock =
            self.remote_cache.in_flight.lock().expect("in-flight map lock").entry(key.clone()).or_default().clone();
        let result = async {
            let _fetching = lock.lock().await;
            // Another request may have fetched it while this one waited.
            if let Some(stored) = self.cached_remote(origin, media_id, legacy).await? {
                return Ok(stored);
            }
            let file = source.fetch_media(origin, media_id, self.config.media.max_upload_bytes).await?;
            self.cache_remote(origin, media_id, file).await
        }
        .await;
        drop(lock);
        let mut in_flight = self.remote_cache.in_flight.lock().expect("in-flight map lock");
        // The last request out removes the entry: then the map holds the
        // only reference.
        if in_flight.get(&key).is_some_and(|l| Arc::strong_count(l) == 1) {
            in_flight.remove(&key);
        }
        result
    }

    /// The cached copy, if it is there (a record whose file went missing
    /// is forgotten, so the file is fetched again).
    async fn cached_remote(&self, origin: &ServerName, media_id: &str, legacy: bool) -> Result<Option<StoredMedia>> {
        let Some(record) = self.db.get_remote_media(origin.to_string(), media_id.to_owned()).await? else {
            return Ok(None);
        };
        let path = self.remote_path(&record.sha256);
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            tracing::warn!(%origin, media_id, "a cached remote file is missing; fetching it again");
            self.db.delete_remote_media(origin.to_string(), media_id.to_owned()).await?;
            return Ok(None);
        }
        if legacy && record.fetched_ts >= self.config.media.legacy_unauthenticated_before_ms {
            return Err(MediaError::NotFound(
                "this media is only available through the authenticated endpoints".into(),
            ));
        }
        let now = now_ms();
        if now - record.last_access_ts >= TOUCH_INTERVAL_MS {
            self.db.touch_remote_media(origin.to_string(), media_id.to_owned(), now).await?;
        }
        Ok(Some(StoredMedia {
            content_type: record.content_type,
            filename: record.filename,
            size: Some(record.size),
            sha256: record.sha256,
            path,
            remote: Some((origin.to_owned(), media_id.to_owned())),
        }))
    }

    /// Stores a fetched file in the cache, evicting what no longer fits.
    async fn cache_remote(&self, origin: &ServerName, media_id: &str, file: RemoteFile) -> Result<StoredMedia> {
        let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(file.bytes)]);
        let (tmp, sha256, size) = self.write_temporary(chunks).await?;
        let _files = self.remote_cache.files.lock().await;
        let path = self.remote_path(&sha256);
        let stored = async {
            // Room for the new file first, so it is never its own victim
            // (a file larger than the whole cache stays until the next).
            let budget = (self.config.media.remote_cache_max_bytes as i64).saturating_sub(size).max(0);
            self.remove_evicted(self.db.evict_remote_media(budget).await?).await;
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&tmp, &path).await?;
            let now = now_ms();
            let content_type = file.content_type.filter(|t| !t.is_empty());
            self.db
                .insert_remote_media(RemoteMediaRecord {
                    origin: origin.to_string(),
                    media_id: media_id.to_owned(),
                    content_type: content_type.clone(),
                    filename: file.filename.clone(),
                    size,
                    sha256: sha256.clone(),
                    fetched_ts: now,
                    last_access_ts: now,
                })
                .await?;
            Ok(StoredMedia {
                content_type,
                filename: file.filename,
                size: Some(size),
                sha256,
                path,
                remote: Some((origin.to_owned(), media_id.to_owned())),
            })
        }
        .await;
        if stored.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        stored
    }

    /// Counts a thumbnail made of a cached copy in the cache's size.
    pub(super) async fn remote_thumbnail_made(&self, origin: &ServerName, media_id: &str, bytes: u64) -> Result<()> {
        let _files = self.remote_cache.files.lock().await;
        self.db.add_remote_thumbnail_size(origin.to_string(), media_id.to_owned(), bytes as i64).await?;
        // Just used: not the one to make room for its own thumbnail.
        self.db.touch_remote_media(origin.to_string(), media_id.to_owned(), now_ms()).await?;
        let max = self.config.media.remote_cache_max_bytes as i64;
        self.remove_evicted(self.db.evict_remote_media(max).await?).await;
        Ok(())
    }

    /// Deletes the files of evicted entries that no other entry names, and
    /// the thumbnails made of them.
    async fn remove_evicted(&self, evicted: Vec<crate::storage::media::EvictedMedia>) {
        for gone in evicted.into_iter().filter(|e| !e.still_used) {
            if !super::valid_sha256(&gone.sha256) {
                continue;
            }
            let _ = tokio::fs::remove_file(self.remote_path(&gone.sha256)).await;
            let _ = tokio::fs::remove_dir_all(self.remote_thumbnail_dir(&gone.sha256)).await;
            tracing::debug!(sha256 = %gone.sha256, "evicted from the remote media cache");
        }
    }
}
