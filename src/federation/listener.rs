//! Federation as a listener of the commit pipeline: an event queued for
//! other servers wakes their workers, and a local user's typing, public
//! read receipts, presence, device list changes and to-device messages for
//! other servers' devices go out as EDUs (server-server API, "EDUs").
//! What other servers reported is never sent back out.

use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use ruma::{OwnedServerName, OwnedUserId, ServerName};

use super::Federation;
use crate::commit::{Commit, CommitListener};

pub struct FederationListener {
    federation: Weak<Federation>,
}

impl FederationListener {
    pub fn new(federation: &Arc<Federation>) -> Self {
        Self { federation: Arc::downgrade(federation) }
    }
}

impl CommitListener for FederationListener {
    fn committed<'a>(&'a self, commit: &'a Commit<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(federation) = self.federation.upgrade() else { return };
            if !federation.enabled() {
                return;
            }
            let own = federation.server_name();
            match *commit {
                Commit::RoomEvent { destinations, .. } if !destinations.is_empty() => {
                    federation.sender.wake(destinations);
                }
                Commit::Typing { room_id, user, typing, expired: false, .. } if user.server_name() == own => {
                    federation.send_typing(room_id, user, typing).await;
                }
                Commit::Receipt { room_id, user, receipt_type: "m.read", event_id, thread, .. }
                    if user.server_name() == own =>
                {
                    federation.send_receipt(room_id, user, event_id, thread).await;
                }
                Commit::Presence { row, user, audience, .. } if user.server_name() == own => {
                    let servers = other_servers(audience, own);
                    if !servers.is_empty() {
                        // Presence changes ride on syncs: the sync does not
                        // wait for the EDUs to be queued.
                        let row = row.clone();
                        tokio::spawn(async move { federation.send_presence(row, servers).await });
                    }
                }
                Commit::DeviceList { position, user, audience } if user.server_name() == own => {
                    let servers = other_servers(audience, own);
                    if !servers.is_empty() {
                        let user = user.to_owned();
                        tokio::spawn(async move { federation.send_device_list_update(&user, position, servers).await });
                    }
                }
                Commit::ToDevice { sender, remote: Some(remote), .. } => {
                    federation
                        .send_to_device_remote(sender, &remote.kind, &remote.message_id, remote.messages.clone())
                        .await;
                }
                _ => {}
            }
        })
    }
}

/// The servers of `users` other than this one, each once: where a change
/// seen by those users goes.
fn other_servers(users: &[OwnedUserId], own: &ServerName) -> Vec<OwnedServerName> {
    let mut servers: Vec<OwnedServerName> =
        users.iter().map(|u| u.server_name().to_owned()).filter(|s| s != own).collect();
    servers.sort();
    servers.dedup();
    servers
}
