//! Application services (application service API; client-server API
//! "Application service" sections): the registrations, who an `as_token`
//! may act as, the exclusive namespaces, the transactions of events an
//! appservice is interested in (fed by the commit pipeline, queued in
//! storage, delivered by one worker per appservice), user and alias
//! queries, and pings.

mod client;
mod delivery;
pub mod registration;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use ruma::{
    OwnedRoomAliasId, OwnedServerName, OwnedTransactionId, OwnedUserId, RoomAliasId, UserId,
    api::appservice::thirdparty::{
        get_location_for_protocol, get_location_for_room_alias, get_protocol, get_user_for_protocol,
        get_user_for_user_id,
    },
    events::{TimelineEventType, room::member::MembershipState},
    thirdparty::{Location, Protocol, User},
};
use serde_json::json;

pub use self::{
    client::AppserviceCallError,
    registration::{Appservice, RegistrationError},
};
use self::{client::AppserviceClient, delivery::Delivery};
use crate::{
    commit::{Commit, CommitListener},
    config::Config,
    pdu::Pdu,
    storage::{
        Storage, StorageError,
        appservice::{AppserviceItem, AppserviceItemKind},
    },
    streams::Streams,
};

/// What an appservice request could not do; the HTTP edge maps each to
/// its Matrix error.
#[derive(Debug, thiserror::Error)]
pub enum AppserviceError {
    /// `?user_id=` names a user outside the appservice's namespaces.
    #[error("the application service cannot act as {0}")]
    NotInNamespace(String),
    /// `?user_id=` names a user no one registered.
    #[error("the application service has not registered {0}")]
    NotRegistered(String),
    #[error("{0}")]
    Forbidden(String),
    /// A ping failed (the call's own error).
    #[error("the ping failed: {0}")]
    Ping(#[from] AppserviceCallError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A third-party lookup: by protocol and its fields, or the reverse
/// lookup by a Matrix id (user id or room alias).
pub enum ThirdPartyLookup {
    Protocol { protocol: String, fields: BTreeMap<String, String> },
    Matrix(String),
}

/// The appservices of this server.
pub struct Appservices {
    list: Vec<Arc<Appservice>>,
    server_name: OwnedServerName,
    db: Arc<dyn Storage>,
    streams: Arc<Streams>,
    client: Arc<AppserviceClient>,
    delivery: Arc<Delivery>,
}

impl Appservices {
    /// Reads and checks the registration files the configuration names.
    pub fn open(config: &Config, db: Arc<dyn Storage>, streams: Arc<Streams>) -> Result<Self, String> {
        let list = registration::load(&config.appservice.registration_files, &config.server.server_name)
            .map_err(|e| e.to_string())?;
        let list: Vec<Arc<Appservice>> = list.into_iter().map(Arc::new).collect();
        let client = Arc::new(AppserviceClient::new()?);
        let delivery = Arc::new(Delivery::new(db.clone(), client.clone(), &list));
        Ok(Self { list, server_name: config.server.server_name.clone(), db, streams, client, delivery })
    }

    pub fn all(&self) -> &[Arc<Appservice>] {
        &self.list
    }

    /// The appservice whose `as_token` this is.
    pub fn by_as_token(&self, token: &str) -> Option<&Arc<Appservice>> {
        self.list.iter().find(|a| a.registration.as_token == token)
    }

    /// The appservice that claims `user` exclusively, if one does.
    pub fn exclusive_owner(&self, user: &UserId) -> Option<&Arc<Appservice>> {
        self.list.iter().find(|a| a.is_exclusive_user(user))
    }

    /// Whether an appservice registered with `rate_limited: false` acts
    /// for `user` (its sender or a user of its namespaces).
    pub fn is_rate_limit_exempt(&self, user: &UserId) -> bool {
        self.list.iter().any(|a| !a.is_rate_limited() && a.is_user_in_namespace(user))
    }

    /// Asks the appservice whose namespace `user` is in to create it, when
    /// no account of that id exists yet ("Querying the application
    /// service", users). Failures are logged: the caller goes on and finds
    /// the user, or not.
    pub async fn query_user_if_unknown(&self, user: &UserId) -> Result<(), AppserviceError> {
        if user.server_name() != self.server_name {
            return Ok(());
        }
        let Some(appservice) =
            self.exclusive_owner(user).or_else(|| self.list.iter().find(|a| a.is_user_in_namespace(user)))
        else {
            return Ok(());
        };
        if self.db.get_user(user.to_owned()).await?.is_some() {
            return Ok(());
        }
        if let Err(e) = self.client.query_user(appservice, user.to_owned()).await {
            tracing::info!(appservice = appservice.id(), %user, error = %e, "the appservice did not create the user");
        }
        Ok(())
    }

    /// Asks the appservice whose namespace `alias` is in to create it, when
    /// it does not resolve here yet.
    pub async fn query_alias_if_unknown(&self, alias: &RoomAliasId) -> Result<(), AppserviceError> {
        if alias.server_name() != self.server_name {
            return Ok(());
        }
        let Some(appservice) = self.list.iter().find(|a| a.is_alias_in_namespace(alias)) else {
            return Ok(());
        };
        if self.db.resolve_alias(alias.to_string()).await?.is_some() {
            return Ok(());
        }
        if let Err(e) = self.client.query_alias(appservice, alias.to_owned()).await {
            tracing::info!(appservice = appservice.id(), %alias, error = %e, "the appservice did not create the alias");
        }
        Ok(())
    }

    /// `POST /appservice/{appserviceId}/ping` by `caller`: only an
    /// appservice may ping itself.
    pub async fn ping(
        &self,
        caller: &Appservice,
        appservice_id: &str,
        transaction_id: Option<OwnedTransactionId>,
    ) -> Result<Duration, AppserviceError> {
        if caller.id() != appservice_id {
            return Err(AppserviceError::Forbidden("an application service may only ping itself".into()));
        }
        Ok(self.client.ping(caller, transaction_id).await?)
    }

    /// The appservices that declare a third-party protocol.
    fn declaring<'a>(&'a self, protocol: &'a str) -> impl Iterator<Item = &'a Arc<Appservice>> {
        self.list
            .iter()
            .filter(move |a| a.registration.protocols.as_ref().is_some_and(|p| p.iter().any(|p| p == protocol)))
    }

    /// "Third-party networks": a protocol as the first appservice that
    /// declares it describes it, its instances given ids unique across
    /// appservices (`{appservice id}|{network id}`).
    pub async fn thirdparty_protocol(&self, protocol: &str) -> Option<Protocol> {
        for a in self.declaring(protocol) {
            match self.client.call(a, get_protocol::v1::Request::new(protocol.to_owned())).await {
                Ok(answer) => {
                    let mut value = serde_json::to_value(answer.protocol).ok()?;
                    if let Some(instances) = value.get_mut("instances").and_then(|i| i.as_array_mut()) {
                        for instance in instances {
                            let network = instance.get("network_id").and_then(|n| n.as_str()).unwrap_or("").to_owned();
                            instance["instance_id"] = format!("{}|{network}", a.id()).into();
                        }
                    }
                    return serde_json::from_value(value).ok();
                }
                Err(e) => tracing::info!(appservice = a.id(), protocol, error = %e, "no third-party protocol answer"),
            }
        }
        None
    }

    /// Every protocol the appservices declare and describe.
    pub async fn thirdparty_protocols(&self) -> BTreeMap<String, Protocol> {
        let mut names: Vec<&String> =
            self.list.iter().filter_map(|a| a.registration.protocols.as_ref()).flatten().collect();
        names.sort();
        names.dedup();
        let mut protocols = BTreeMap::new();
        for name in names {
            if let Some(protocol) = self.thirdparty_protocol(name).await {
                protocols.insert(name.clone(), protocol);
            }
        }
        protocols
    }

    /// Third-party users: of one protocol matching `fields`, or (no
    /// protocol) those linked to a Matrix user id, from every appservice
    /// asked; one that fails is left out.
    pub async fn thirdparty_users(&self, lookup: ThirdPartyLookup) -> Vec<User> {
        let mut found = Vec::new();
        match lookup {
            ThirdPartyLookup::Protocol { protocol, fields } => {
                for a in self.declaring(&protocol) {
                    let mut request = get_user_for_protocol::v1::Request::new(protocol.clone());
                    request.fields = fields.clone();
                    if let Ok(answer) = self.client.call(a, request).await {
                        found.extend(answer.users);
                    }
                }
            }
            ThirdPartyLookup::Matrix(id) => {
                let Ok(user) = OwnedUserId::try_from(id) else { return found };
                for a in self.list.iter().filter(|a| a.registration.protocols.as_ref().is_some_and(|p| !p.is_empty())) {
                    if let Ok(answer) = self.client.call(a, get_user_for_user_id::v1::Request::new(user.clone())).await
                    {
                        found.extend(answer.users);
                    }
                }
            }
        }
        found
    }

    /// Third-party locations, like `thirdparty_users` (a Matrix alias for
    /// the reverse lookup).
    pub async fn thirdparty_locations(&self, lookup: ThirdPartyLookup) -> Vec<Location> {
        let mut found = Vec::new();
        match lookup {
            ThirdPartyLookup::Protocol { protocol, fields } => {
                for a in self.declaring(&protocol) {
                    let mut request = get_location_for_protocol::v1::Request::new(protocol.clone());
                    request.fields = fields.clone();
                    if let Ok(answer) = self.client.call(a, request).await {
                        found.extend(answer.locations);
                    }
                }
            }
            ThirdPartyLookup::Matrix(id) => {
                let Ok(alias) = OwnedRoomAliasId::try_from(id) else { return found };
                for a in self.list.iter().filter(|a| a.registration.protocols.as_ref().is_some_and(|p| !p.is_empty())) {
                    let request = get_location_for_room_alias::v1::Request::new(alias.clone());
                    if let Ok(answer) = self.client.call(a, request).await {
                        found.extend(answer.locations);
                    }
                }
            }
        }
        found
    }

    /// Starts delivering what was queued before a restart.
    pub async fn start_delivery(&self) {
        match self.db.queued_appservices().await {
            Ok(ids) => self.delivery.wake(&ids),
            Err(e) => tracing::error!(error = %e, "cannot read the appservice queues"),
        }
    }

    /// Stops the delivery workers (at shutdown); queued items stay queued.
    pub fn stop_delivery(&self) {
        self.delivery.stop();
    }

    /// Whether the appservice is interested in an event: sent by or about
    /// one of its users, in a room of its namespaces or with an alias of
    /// them, or in a room one of its users is in (`members`: the local
    /// users the event concerns).
    async fn is_interested(&self, a: &Appservice, event: &Pdu, members: &[&UserId]) -> Result<bool, StorageError> {
        if a.is_user_in_namespace(event.sender()) || a.is_room_in_namespace(&event.room) {
            return Ok(true);
        }
        if *event.kind() == TimelineEventType::RoomMember
            && let Some(target) = event.state_key().and_then(|s| <&UserId>::try_from(s).ok())
            && a.is_user_in_namespace(target)
        {
            return Ok(true);
        }
        if members.iter().any(|u| a.is_user_in_namespace(u)) {
            return Ok(true);
        }
        if a.aliases.is_empty() {
            return Ok(false);
        }
        let aliases = self.db.room_aliases(event.room.to_string()).await?;
        Ok(aliases.iter().filter_map(|s| <&RoomAliasId>::try_from(s.as_str()).ok()).any(|s| a.is_alias_in_namespace(s)))
    }

    /// What a commit gives each appservice, queued in one write.
    async fn queue_commit(&self, commit: &Commit<'_>) -> Result<(), StorageError> {
        if self.list.is_empty() {
            return Ok(());
        }
        let mut items = Vec::new();
        let mut delivered_to_device = None;
        match commit {
            Commit::RoomEvent { event, wake, .. } => {
                let mut json = None;
                for a in &self.list {
                    if self.is_interested(a, event, wake).await? {
                        let json =
                            json.get_or_insert_with(|| serde_json::Value::Object(event.to_client_event()).to_string());
                        items.push(item(a, AppserviceItemKind::Event, json.clone()));
                    }
                }
                self.queue_device_list_left(event, wake, &mut items).await?;
            }
            Commit::Typing { position: Some(_), room_id, wake, .. } => {
                let typing = self.streams.typing_in(&(*room_id).to_owned(), 0).unwrap_or_default();
                let edu = json!({"type": "m.typing", "room_id": room_id, "content": {"user_ids": typing}}).to_string();
                for a in self.list.iter().filter(|a| a.wants_ephemeral()) {
                    if wake.iter().any(|u| a.is_user_in_namespace(u)) || a.is_room_in_namespace(room_id) {
                        items.push(item(a, AppserviceItemKind::Ephemeral, edu.clone()));
                    }
                }
            }
            // Private receipts are for the user's own devices only.
            Commit::Receipt { room_id, user, receipt_type, event_id, thread, wake, .. }
                if *receipt_type == "m.read" =>
            {
                let mut receipt = json!({"ts": crate::storage::now_ms()});
                if let Some(thread) = thread {
                    receipt["thread_id"] = (*thread).into();
                }
                let edu = json!({
                    "type": "m.receipt",
                    "room_id": room_id,
                    "content": {event_id.as_str(): {*receipt_type: {user.as_str(): receipt}}},
                })
                .to_string();
                for a in self.list.iter().filter(|a| a.wants_ephemeral()) {
                    if wake.iter().any(|u| a.is_user_in_namespace(u)) || a.is_room_in_namespace(room_id) {
                        items.push(item(a, AppserviceItemKind::Ephemeral, edu.clone()));
                    }
                }
            }
            // Presence of a user sharing a room with its users (or its own).
            Commit::Presence { row, user, audience, .. } => {
                let info = crate::streams::presence_info(row);
                let mut content = json!({"presence": info.state, "currently_active": info.currently_active});
                if let Some(ago) = info.last_active_ago {
                    content["last_active_ago"] = ago.into();
                }
                if let Some(msg) = &info.status_msg {
                    content["status_msg"] = msg.as_str().into();
                }
                let edu = json!({"type": "m.presence", "sender": user, "content": content}).to_string();
                for a in self.list.iter().filter(|a| a.wants_ephemeral()) {
                    if a.is_user_in_namespace(user) || audience.iter().any(|u| a.is_user_in_namespace(u)) {
                        items.push(item(a, AppserviceItemKind::Ephemeral, edu.clone()));
                    }
                }
            }
            Commit::ToDevice { position: Some(position), wake, .. } => {
                let users = self.queue_to_device(*position, wake, &mut items).await?;
                if !users.is_empty() {
                    delivered_to_device = Some((*position, users));
                }
            }
            // MSC3202: device list changes of users sharing a room with its users.
            Commit::DeviceList { user, audience, .. } => {
                let changed = serde_json::Value::from(user.as_str()).to_string();
                for a in self.list.iter().filter(|a| a.wants_msc3202()) {
                    if a.is_user_in_namespace(user) || audience.iter().any(|u| a.is_user_in_namespace(u)) {
                        items.push(item(a, AppserviceItemKind::DeviceListChanged, changed.clone()));
                    }
                }
            }
            Commit::OneTimeKeys { user, device } => {
                let owners: Vec<&Arc<Appservice>> =
                    self.list.iter().filter(|a| a.wants_msc3202() && a.is_user_in_namespace(user)).collect();
                if !owners.is_empty() {
                    let mut counts: BTreeMap<String, i64> = self
                        .db
                        .one_time_key_counts(user.to_string(), (*device).to_owned())
                        .await?
                        .into_iter()
                        .collect();
                    // As /sync: always there, so the bridge knows to upload more.
                    counts.entry("signed_curve25519".into()).or_insert(0);
                    let fallback = self.db.unused_fallback_key_types(user.to_string(), (*device).to_owned()).await?;
                    let json = json!({"user_id": user, "device_id": device, "counts": counts, "fallback": fallback})
                        .to_string();
                    for a in owners {
                        items.push(item(a, AppserviceItemKind::KeyCounts, json.clone()));
                    }
                }
            }
            _ => {}
        }
        // An appservice without a URL receives nothing: queue nothing for it.
        items.retain(|i| self.list.iter().any(|a| a.id() == i.appservice_id && a.registration.url.is_some()));
        if items.is_empty() {
            return Ok(());
        }
        let mut woken: Vec<String> = items.iter().map(|i| i.appservice_id.clone()).collect();
        woken.dedup();
        self.db.queue_appservice_items(items).await?;
        // Queued first: a crash in between leaves a copy for /sync, never none.
        if let Some((position, users)) = delivered_to_device {
            self.db.delete_to_device_at(position, users).await?;
        }
        self.delivery.wake(&woken);
        Ok(())
    }
}

impl Appservices {
    /// MSC2409 / MSC4203: the to-device messages queued at `position` for
    /// namespace users go to their appservice, each with `to_user_id` and
    /// `to_device_id`. Those of exclusive namespace users then count as
    /// delivered (the appservice's queue keeps them until it acknowledges
    /// them, and those users do not sync); those of users an appservice
    /// only shares stay for the users' own syncs too (MSC4203's suggested
    /// rule). Returns those users.
    async fn queue_to_device(
        &self,
        position: i64,
        recipients: &[&UserId],
        items: &mut Vec<AppserviceItem>,
    ) -> Result<Vec<String>, StorageError> {
        let mut users: Vec<String> = recipients
            .iter()
            .filter(|u| self.list.iter().any(|a| a.wants_to_device() && a.is_user_in_namespace(u)))
            .map(|u| u.to_string())
            .collect();
        users.sort();
        users.dedup();
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut delivered = Vec::new();
        for (user_id, device_id, message) in self.db.to_device_at(position, users).await? {
            let Ok(user) = <&UserId>::try_from(user_id.as_str()) else { continue };
            let content: serde_json::Value =
                serde_json::from_str(&message.content).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let json = json!({
                "type": message.kind,
                "sender": message.sender,
                "content": content,
                "to_user_id": user,
                "to_device_id": device_id,
            })
            .to_string();
            let mut exclusive = false;
            for a in self.list.iter().filter(|a| a.wants_to_device() && a.is_user_in_namespace(user)) {
                exclusive |= a.is_exclusive_user(user);
                items.push(item(a, AppserviceItemKind::ToDevice, json.clone()));
            }
            if exclusive && a_url_receives(&self.list, user) && !delivered.contains(&user_id) {
                delivered.push(user_id);
            }
        }
        Ok(delivered)
    }
}

impl Appservices {
    /// MSC3202 `device_lists.left`: a user who leaves (or is banned from) a
    /// room shared with an appservice's users and now shares none with
    /// them. (A namespace user leaving is not followed up on.)
    async fn queue_device_list_left(
        &self,
        event: &Pdu,
        wake: &[&UserId],
        items: &mut Vec<AppserviceItem>,
    ) -> Result<(), StorageError> {
        if !matches!(event.membership(), Some(MembershipState::Leave | MembershipState::Ban)) {
            return Ok(());
        }
        let Some(target) = event.state_key().and_then(|s| <&UserId>::try_from(s).ok()) else { return Ok(()) };
        let concerned: Vec<&Arc<Appservice>> = self
            .list
            .iter()
            .filter(|a| {
                a.wants_msc3202()
                    && !a.is_user_in_namespace(target)
                    && wake.iter().any(|u| *u != target && a.is_user_in_namespace(u))
            })
            .collect();
        if concerned.is_empty() {
            return Ok(());
        }
        let sharing = self.db.users_sharing_rooms(target.to_string()).await?;
        let left = serde_json::Value::from(target.as_str()).to_string();
        for a in concerned {
            let still =
                sharing.iter().filter_map(|u| <&UserId>::try_from(u.as_str()).ok()).any(|u| a.is_user_in_namespace(u));
            if !still {
                items.push(item(a, AppserviceItemKind::DeviceListLeft, left.clone()));
            }
        }
        Ok(())
    }
}

/// Whether an appservice with a URL (one that receives transactions)
/// claims `user` exclusively.
fn a_url_receives(list: &[Arc<Appservice>], user: &UserId) -> bool {
    list.iter().any(|a| a.registration.url.is_some() && a.wants_to_device() && a.is_exclusive_user(user))
}

fn item(a: &Appservice, kind: AppserviceItemKind, json: String) -> AppserviceItem {
    AppserviceItem { appservice_id: a.id().to_owned(), kind, json }
}

/// The appservices' listener of the commit pipeline: queues what each
/// appservice is interested in (the write is on the committing path, so
/// nothing acknowledged is lost) and wakes their workers.
pub struct AppserviceListener(Arc<Appservices>);

impl AppserviceListener {
    pub fn new(appservices: &Arc<Appservices>) -> Self {
        Self(appservices.clone())
    }
}

impl CommitListener for AppserviceListener {
    fn committed<'a>(&'a self, commit: &'a Commit<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.0.queue_commit(commit).await {
                tracing::error!(error = %e, "cannot queue a commit for the appservices");
            }
        })
    }
}
