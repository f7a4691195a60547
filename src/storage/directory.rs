//! Room aliases and the public room directory (client-server API, "Room
//! aliases" and "Listing rooms"): which alias names which room, and which
//! rooms are listed.

use async_trait::async_trait;

use super::Result;

/// Aliases and the public room list.
///
/// What every backend must guarantee, beyond those of [`super::Storage`]:
/// an alias names one room: of two creations of one alias (even
/// concurrent ones) exactly one succeeds.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Creates an alias; false when it exists already.
    async fn create_alias(&self, alias: String, room_id: String, creator: String) -> Result<bool>;

    /// `(room_id, creator)` of an alias.
    async fn resolve_alias(&self, alias: String) -> Result<Option<(String, String)>>;

    /// Deletes an alias; false when there was none.
    async fn delete_alias(&self, alias: String) -> Result<bool>;

    /// A room's aliases, sorted.
    async fn room_aliases(&self, room_id: String) -> Result<Vec<String>>;

    /// Lists (or unlists) a stored room in the public directory.
    async fn set_room_public(&self, room_id: String, public: bool) -> Result<()>;

    /// Whether a room is listed (false for a room not stored).
    async fn room_is_public(&self, room_id: String) -> Result<bool>;

    /// Public rooms ordered by joined member count (then id), as
    /// `(room_id, joined_members)`.
    async fn public_rooms(&self) -> Result<Vec<(String, i64)>>;
}
