//! Spaces across servers (client-server API `GET /rooms/{roomId}/hierarchy`;
//! server-server API `GET /hierarchy/{roomId}`): a walk reaching a room
//! this server is not in asks a server its link names, checks the answer
//! and keeps it a minute, so paging does not ask again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, ServerName, api::federation::space::get_hierarchy};

use super::{FedError, Federation};
use crate::rooms::{
    HierarchyPage, HierarchyRequest, RemoteHierarchy, RemoteSpace, SpaceForServer, hierarchy::MAX_CHILDREN,
};

/// How long another server's answer about a space is kept.
const REMOTE_SPACE_TTL: Duration = Duration::from_secs(60);
/// How many of a link's `via` servers are asked, one after the other.
const MAX_VIA_ASKED: usize = 3;
/// How long one server is given to answer.
const REMOTE_SPACE_TIMEOUT: Duration = Duration::from_secs(10);

/// Other servers' answers (or that none answered) by (room, suggested only).
pub(super) type RemoteSpaceCache = quick_cache::sync::Cache<(OwnedRoomId, bool), (Instant, Option<Arc<RemoteSpace>>)>;

pub(super) fn remote_space_cache() -> RemoteSpaceCache {
    quick_cache::sync::Cache::new(1_000)
}

impl Federation {
    /// One page of a space's hierarchy for a local user; rooms of other
    /// servers are described by them.
    pub async fn space_hierarchy(
        &self,
        user: &OwnedUserId,
        room_id: &RoomId,
        request: HierarchyRequest,
    ) -> Result<HierarchyPage, FedError> {
        Ok(self.rooms.space_hierarchy(user, room_id, request, self).await?)
    }

    /// Answers another server's `GET /hierarchy/{roomId}`.
    pub async fn answer_hierarchy(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<SpaceForServer, FedError> {
        Ok(self.rooms.space_for_server(origin, room_id, suggested_only).await?)
    }

    /// Asks `server` about a space, and checks the answer is about it.
    async fn ask_space(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<RemoteSpace, FedError> {
        let mut request = get_hierarchy::v1::Request::new(room_id.to_owned());
        request.suggested_only = suggested_only;
        let answer = tokio::time::timeout(REMOTE_SPACE_TIMEOUT, self.request(server, request))
            .await
            .map_err(|_| FedError::Unreachable(format!("{server} did not answer in time")))??;
        if answer.room.summary.room_id != room_id {
            return Err(FedError::BadResponse(format!("{server} described another room than {room_id}")));
        }
        let mut room = answer.room;
        room.children_state.truncate(MAX_CHILDREN);
        let mut children = answer.children;
        children.truncate(MAX_CHILDREN);
        let mut inaccessible_children = answer.inaccessible_children;
        inaccessible_children.truncate(MAX_CHILDREN);
        Ok(RemoteSpace { room, children, inaccessible_children })
    }
}

#[async_trait::async_trait]
impl RemoteHierarchy for Federation {
    async fn remote_space(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
    ) -> Option<Arc<RemoteSpace>> {
        if !self.enabled() {
            return None;
        }
        let key = (room_id.to_owned(), suggested_only);
        if let Some((at, space)) = self.spaces.get(&key)
            && at.elapsed() < REMOTE_SPACE_TTL
        {
            return space;
        }
        let mut found = None;
        for server in via.iter().filter(|s| *s != self.server_name()).take(MAX_VIA_ASKED) {
            match self.ask_space(server, room_id, suggested_only).await {
                Ok(space) => {
                    found = Some(Arc::new(space));
                    break;
                }
                Err(e) => tracing::debug!(%room_id, %server, error = %e, "no space summary from this server"),
            }
        }
        self.spaces.insert(key, (Instant::now(), found.clone()));
        found
    }
}
