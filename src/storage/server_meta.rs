//! Small server-wide facts that must survive restarts (for example, that the
//! first-run registration token has been created).

use async_trait::async_trait;

use super::Result;

/// Named server-wide values.
#[async_trait]
pub trait ServerMetaStore: Send + Sync {
    async fn get_meta(&self, key: &'static str) -> Result<Option<String>>;

    /// Sets a value, replacing any earlier one.
    async fn set_meta(&self, key: &'static str, value: String) -> Result<()>;
}
