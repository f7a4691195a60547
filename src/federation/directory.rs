//! Room aliases and public room directories across servers (client-server
//! API, "Room aliases", "Listing rooms"; server-server API, "Querying for
//! information", "Public Room Directory"): an alias or a directory of
//! another server is that server's to answer; this server answers for its
//! own.

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, ServerName, UInt,
    api::federation::{
        directory::{get_public_rooms, get_public_rooms_filtered},
        query::get_room_information,
    },
    directory::Filter,
};

use super::{FedError, Federation};
use crate::rooms::PublicRoomsPage;

impl Federation {
    /// The room an alias names and servers to join it through: asked of
    /// the alias's server when it is another (and federation is on).
    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<(OwnedRoomId, Vec<OwnedServerName>), FedError> {
        if alias.server_name() != self.server_name() && self.enabled() {
            let answer =
                self.request(alias.server_name(), get_room_information::v1::Request::new(alias.to_owned())).await?;
            return Ok((answer.room_id, answer.servers));
        }
        let room_id = self.rooms.resolve_alias(&alias.to_owned()).await?;
        Ok((room_id, vec![self.server_name().to_owned()]))
    }

    /// Answers another server's alias query: the room and the servers in
    /// it, this one first.
    pub async fn answer_alias_query(
        &self,
        alias: &OwnedRoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>), FedError> {
        if alias.server_name() != self.server_name() {
            return Err(FedError::NotFound("the alias is not on this server".into()));
        }
        let room_id = self.rooms.resolve_alias(alias).await?;
        let mut servers = vec![self.server_name().to_owned()];
        servers.extend(self.room_servers(&room_id).await?);
        Ok((room_id, servers))
    }

    /// A page of a public room directory: this server's, or that of
    /// `server` when it is another (and federation is on). `filter`, when
    /// given, narrows the rooms by its search term.
    pub async fn public_rooms(
        &self,
        server: Option<&ServerName>,
        limit: Option<UInt>,
        since: Option<String>,
        filter: Option<Filter>,
    ) -> Result<PublicRoomsPage, FedError> {
        let remote = server.filter(|s| *s != self.server_name() && self.enabled());
        let Some(server) = remote else {
            let search = filter.as_ref().and_then(|f| f.generic_search_term.as_deref());
            return Ok(self.rooms.public_rooms_page(search, limit, since.as_deref()).await?);
        };
        let (chunk, next_batch, prev_batch, total) = match filter {
            None => {
                let mut request = get_public_rooms::v1::Request::new();
                request.limit = limit;
                request.since = since;
                let answer = self.request(server, request).await?;
                (answer.chunk, answer.next_batch, answer.prev_batch, answer.total_room_count_estimate)
            }
            Some(filter) => {
                let mut request = get_public_rooms_filtered::v1::Request::new();
                request.limit = limit;
                request.since = since;
                request.filter = filter;
                let answer = self.request(server, request).await?;
                (answer.chunk, answer.next_batch, answer.prev_batch, answer.total_room_count_estimate)
            }
        };
        Ok(PublicRoomsPage { chunk, next_batch, prev_batch, total_room_count_estimate: total })
    }
}
