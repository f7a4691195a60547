//! Ephemeral data units to other servers: typing notices, read receipts
//! and presence of local users in shared rooms, built as ruma's `Edu`
//! (what other servers send is applied by `api::federation::edus`).

use std::collections::BTreeMap;

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedServerName, RoomId, UInt, UserId,
    api::federation::transactions::edu::{
        Edu, PresenceContent, PresenceUpdate, ReceiptContent, ReceiptData, ReceiptMap, TypingContent,
    },
    events::receipt::{Receipt, ReceiptThread},
    presence::PresenceState,
};

use super::Federation;
use crate::{storage::streams::PresenceRow, streams::presence_info};

/// An EDU as sent in a transaction.
pub(super) fn edu_json(edu: &Edu) -> String {
    serde_json::to_string(edu).expect("ruma EDUs serialise to JSON")
}

impl Federation {
    /// Tells the other servers in the room that a local user (stopped) typing.
    pub(super) async fn send_typing(&self, room_id: &RoomId, user: &UserId, typing: bool) {
        let edu = Edu::Typing(TypingContent::new(room_id.to_owned(), user.to_owned(), typing));
        self.send_to_room(room_id, edu).await;
    }

    /// Sends a local user's public read receipt to the other servers in the room.
    pub(super) async fn send_receipt(&self, room_id: &RoomId, user: &UserId, event_id: &EventId, thread: Option<&str>) {
        let mut receipt = Receipt::new(MilliSecondsSinceUnixEpoch::now());
        // A thread id the client sent that ruma cannot take is left out,
        // as the receipt applies to the whole room then.
        receipt.thread = ReceiptThread::try_from(thread).unwrap_or_default();
        let data = ReceiptData::new(receipt, vec![event_id.to_owned()]);
        let read = ReceiptMap::new(BTreeMap::from([(user.to_owned(), data)]));
        let edu = Edu::Receipt(ReceiptContent::new(BTreeMap::from([(room_id.to_owned(), read)])));
        self.send_to_room(room_id, edu).await;
    }

    /// Sends a local user's new presence to the servers sharing a room
    /// with them.
    pub(super) async fn send_presence(&self, row: PresenceRow, servers: Vec<OwnedServerName>) {
        if !self.enabled() {
            return;
        }
        let info = presence_info(&row);
        let Ok(user) = UserId::parse(row.user_id.as_str()) else {
            tracing::warn!(user = %row.user_id, "presence of a user id that does not parse");
            return;
        };
        let ago = UInt::try_from(info.last_active_ago.unwrap_or(0)).unwrap_or(UInt::MAX);
        let mut update = PresenceUpdate::new(user, PresenceState::from(info.state.as_str()), ago);
        update.currently_active = info.currently_active;
        update.status_msg = info.status_msg;
        let json = edu_json(&Edu::Presence(PresenceContent::new(vec![update])));
        self.sender.send_edus(servers.into_iter().map(|s| (s, json.clone())).collect()).await;
    }

    async fn send_to_room(&self, room_id: &RoomId, edu: Edu) {
        if !self.enabled() {
            return;
        }
        let servers = match self.room_servers(room_id).await {
            Ok(servers) => servers,
            Err(e) => {
                tracing::warn!(%room_id, error = %e, "cannot find the servers of a room");
                return;
            }
        };
        let json = edu_json(&edu);
        self.sender.send_edus(servers.into_iter().map(|s| (s, json.clone())).collect()).await;
    }
}
