//! Spaces (client-server API, "Spaces", `GET /rooms/{roomId}/hierarchy`;
//! server-server API, "Spaces", `GET /hierarchy/{roomId}`): a room's
//! summary and its `m.space.child` links, who may preview a room, and the
//! depth-first walk over a space tree, which asks other servers (through
//! `RemoteHierarchy`) about the rooms this server is not in.

use std::{collections::HashSet, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ruma::{
    OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, ServerName, UInt,
    api::{client::space::SpaceHierarchyRoomsChunk, federation::space::SpaceHierarchyParentSummary},
    events::{
        StateEventType,
        room::{history_visibility::HistoryVisibility, join_rules::RoomJoinRulesEventContent, member::MembershipState},
        space::child::HierarchySpaceChildEvent,
    },
    room::{JoinRuleSummary, RoomSummary, RoomType},
    serde::Raw,
};
use serde_json::{Value, json};

use super::{Result, Rooms, RoomsError, pdu::Pdu};

/// Rooms per page when the client names no `limit`, and the most it may ask.
pub const HIERARCHY_PAGE_LIMIT: usize = 50;
/// How deep a walk goes when the client names no `max_depth`, and the most
/// it may ask (Synapse's default too).
pub const HIERARCHY_MAX_DEPTH: usize = 50;
/// The most rooms one walk looks at (pages included): a space tree can be
/// large or cyclic, and every request re-walks it from the root.
const MAX_ROOMS_WALKED: usize = 500;
/// The most children of one space that are considered.
pub const MAX_CHILDREN: usize = 500;

/// A space as another server described it (server-server API
/// `GET /hierarchy/{roomId}`), checked by the federation service.
#[derive(Debug, Clone)]
pub struct RemoteSpace {
    pub room: SpaceHierarchyParentSummary,
    /// Summaries of the space's children that server could give.
    pub children: Vec<RoomSummary>,
    /// Children that server says nobody here may peek or join.
    pub inaccessible_children: Vec<OwnedRoomId>,
}

/// Asks other servers about a space this server is not in.
#[async_trait::async_trait]
pub trait RemoteHierarchy: Send + Sync {
    /// The space as one of `via` describes it, or `None` when none could.
    async fn remote_space(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
    ) -> Option<Arc<RemoteSpace>>;
}

/// A client's `GET /hierarchy` parameters.
#[derive(Debug, Clone, Default)]
pub struct HierarchyRequest {
    pub from: Option<String>,
    pub limit: Option<UInt>,
    pub max_depth: Option<UInt>,
    pub suggested_only: bool,
}

/// One page of a space hierarchy.
#[derive(Debug, Clone)]
pub struct HierarchyPage {
    pub rooms: Vec<SpaceHierarchyRoomsChunk>,
    pub next_batch: Option<String>,
}

/// What a server may see of a space here (server-server API
/// `GET /hierarchy/{roomId}`).
#[derive(Debug, Clone)]
pub struct SpaceForServer {
    pub room: SpaceHierarchyParentSummary,
    pub children: Vec<RoomSummary>,
    pub inaccessible_children: Vec<OwnedRoomId>,
}

/// A space link: the child's room id and where to ask about it.
#[derive(Debug, Clone)]
struct ChildLink {
    room_id: OwnedRoomId,
    via: Vec<OwnedServerName>,
}

/// A room of the walk: its summary, its children's events (ordered) and,
/// when its server told, its children's summaries.
struct HierarchyNode {
    summary: RoomSummary,
    children_state: Vec<Raw<HierarchySpaceChildEvent>>,
    children: Vec<ChildLink>,
    remote: Option<Arc<RemoteSpace>>,
}

impl HierarchyNode {
    /// A room of this server, with its valid children events.
    fn local(summary: RoomSummary, children: Vec<(HierarchySpaceChildEvent, Raw<HierarchySpaceChildEvent>)>) -> Self {
        let (children, children_state) =
            children.into_iter().map(|(c, raw)| (ChildLink { room_id: c.state_key, via: c.content.via }, raw)).unzip();
        Self { summary, children_state, children, remote: None }
    }
}

/// What one page of a walk is asked to do, defaults and caps applied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Walk {
    limit: usize,
    max_depth: usize,
    suggested_only: bool,
    /// Rooms earlier pages returned, to skip.
    offset: usize,
}

impl HierarchyRequest {
    /// The walk this request asks for: `limit` (1 to 50, default 50),
    /// `max_depth` (at most 50, default 50), and where `from` left off,
    /// which must be a token of the same root, `suggested_only` and
    /// `max_depth` (client-server API `GET /hierarchy`: "`max_depth` and
    /// `suggested_only` cannot be changed from the first request").
    fn walk(&self, root: &RoomId) -> Result<Walk> {
        let limit = match self.limit {
            Some(l) if l == UInt::MIN => {
                return Err(RoomsError::InvalidParam("`limit` must be greater than zero".into()));
            }
            Some(l) => usize::try_from(l).unwrap_or(usize::MAX).min(HIERARCHY_PAGE_LIMIT),
            None => HIERARCHY_PAGE_LIMIT,
        };
        let max_depth = self
            .max_depth
            .map_or(HIERARCHY_MAX_DEPTH, |d| usize::try_from(d).unwrap_or(usize::MAX).min(HIERARCHY_MAX_DEPTH));
        let suggested_only = self.suggested_only;
        let offset = match self.from.as_deref() {
            None => 0,
            Some(from) => {
                let token = HierarchyToken::decode(from)
                    .filter(|t| t.room_id == root.as_str() && t.offset <= MAX_ROOMS_WALKED)
                    .ok_or_else(|| RoomsError::InvalidParam("unknown `from` token".into()))?;
                if token.suggested_only != suggested_only || token.max_depth != max_depth {
                    return Err(RoomsError::InvalidParam(
                        "`suggested_only` and `max_depth` cannot change while paginating".into(),
                    ));
                }
                token.offset
            }
        };
        Ok(Walk { limit, max_depth, suggested_only, offset })
    }
}

/// The walk's position: the parameters it was asked with and how many
/// rooms earlier pages returned. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HierarchyToken {
    room_id: String,
    suggested_only: bool,
    max_depth: usize,
    offset: usize,
}

impl HierarchyToken {
    fn encode(&self) -> String {
        let plain = format!("{}|{}|{}|{}", self.offset, u8::from(self.suggested_only), self.max_depth, self.room_id);
        URL_SAFE_NO_PAD.encode(plain)
    }

    fn decode(token: &str) -> Option<Self> {
        let plain = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let mut parts = plain.splitn(4, '|');
        let offset = parts.next()?.parse().ok()?;
        let suggested_only = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let max_depth = parts.next()?.parse().ok()?;
        let room_id = parts.next()?.to_owned();
        Some(Self { room_id, suggested_only, max_depth, offset })
    }
}

/// The `m.space.child` events of a state, valid ones only (a `via` that is
/// present and not empty: anything else removes the link), in the spec's
/// order (`order`, then `origin_server_ts`, then room id).
fn space_children(
    events: &[Arc<Pdu>],
    suggested_only: bool,
) -> Vec<(HierarchySpaceChildEvent, Raw<HierarchySpaceChildEvent>)> {
    let mut children: Vec<_> = events
        .iter()
        .filter(|pdu| pdu.kind().to_string() == "m.space.child" && !pdu.rejected)
        .filter_map(|pdu| {
            let stripped = json!({
                "type": "m.space.child",
                "state_key": pdu.state_key()?,
                "sender": pdu.sender(),
                "content": pdu.content_value(),
                "origin_server_ts": pdu.fields.origin_server_ts,
            });
            let raw = Raw::<HierarchySpaceChildEvent>::from_json(serde_json::value::to_raw_value(&stripped).ok()?);
            let parsed = raw.deserialize().ok()?;
            Some((parsed, raw))
        })
        .filter(|(child, _)| !child.content.via.is_empty() && (!suggested_only || child.content.suggested))
        .collect();
    children.sort_by(|a, b| a.0.cmp(&b.0));
    children.truncate(MAX_CHILDREN);
    children
}

/// The valid links among a space's children events as another server
/// sent them, in the spec's order, with those events (invalid ones, which
/// remove a link or break the format, are not passed on).
fn links_of(
    children_state: &[Raw<HierarchySpaceChildEvent>],
    suggested_only: bool,
) -> (Vec<ChildLink>, Vec<Raw<HierarchySpaceChildEvent>>) {
    let mut parsed: Vec<(HierarchySpaceChildEvent, &Raw<HierarchySpaceChildEvent>)> = children_state
        .iter()
        .take(MAX_CHILDREN)
        .filter_map(|raw| Some((raw.deserialize().ok()?, raw)))
        .filter(|(child, _)| !child.content.via.is_empty() && (!suggested_only || child.content.suggested))
        .collect();
    parsed.sort_by(|a, b| a.0.cmp(&b.0));
    parsed.into_iter().map(|(c, raw)| (ChildLink { room_id: c.state_key, via: c.content.via }, raw.clone())).unzip()
}

/// A string field of a state event's content.
fn content_str(pdu: Option<&Arc<Pdu>>, field: &str) -> Option<String> {
    pdu.and_then(|p| p.content_value().get(field).and_then(Value::as_str).map(str::to_owned))
}

/// Whether anyone may preview the room whatever their membership: it is
/// world-readable, or its join rule lets anyone join or knock.
fn open_to_preview(summary: &RoomSummary) -> bool {
    summary.world_readable
        || matches!(
            summary.join_rule,
            JoinRuleSummary::Public | JoinRuleSummary::Knock | JoinRuleSummary::KnockRestricted(_)
        )
}

/// The rooms a restricted room's join rule lets members of join through.
fn allowed_rooms(summary: &RoomSummary) -> &[OwnedRoomId] {
    match &summary.join_rule {
        JoinRuleSummary::Restricted(r) | JoinRuleSummary::KnockRestricted(r) => &r.allowed_room_ids,
        _ => &[],
    }
}

impl Rooms {
    /// A room's summary (client-server API `SpaceHierarchyRoomsChunk`
    /// without its children) and its valid `m.space.child` events, from
    /// the current state. `None` when this server does not know the room.
    async fn local_space(
        &self,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<Option<(RoomSummary, Vec<(HierarchySpaceChildEvent, Raw<HierarchySpaceChildEvent>)>)>> {
        if !self.knows_room(room_id).await? {
            return Ok(None);
        }
        let state = self.current_state(room_id).await?;
        let wanted = [
            StateEventType::RoomCreate,
            StateEventType::RoomName,
            StateEventType::RoomTopic,
            StateEventType::RoomAvatar,
            StateEventType::RoomCanonicalAlias,
            StateEventType::RoomJoinRules,
            StateEventType::RoomHistoryVisibility,
            StateEventType::RoomGuestAccess,
            StateEventType::RoomEncryption,
        ];
        let ids = state
            .iter()
            .filter(|((kind, key), _)| *kind == StateEventType::SpaceChild || (key.is_empty() && wanted.contains(kind)))
            .map(|(_, id)| id);
        let events: Vec<Arc<Pdu>> = self.get_pdus(ids).await?.into_values().collect();
        let single = |kind: &str| events.iter().find(|p| p.kind().to_string() == kind && p.state_key() == Some(""));
        let join_rule = single("m.room.join_rules")
            .and_then(|p| p.content::<RoomJoinRulesEventContent>())
            // A room without join rules can be joined by invite only.
            .map_or(JoinRuleSummary::Invite, |c| JoinRuleSummary::from(c.join_rule));
        let world_readable = single("m.room.history_visibility")
            .is_some_and(|p| super::visibility::history_visibility_of(p) == HistoryVisibility::WorldReadable);
        let guest_can_join = content_str(single("m.room.guest_access"), "guest_access").as_deref() == Some("can_join");
        let joined = self.joined_members(room_id).await?.len();
        let mut summary = RoomSummary::new(
            room_id.to_owned(),
            join_rule,
            guest_can_join,
            UInt::try_from(joined as u64).unwrap_or_default(),
            world_readable,
        );
        summary.name = content_str(single("m.room.name"), "name");
        summary.topic = content_str(single("m.room.topic"), "topic");
        summary.avatar_url = content_str(single("m.room.avatar"), "url").map(Into::into);
        summary.canonical_alias =
            content_str(single("m.room.canonical_alias"), "alias").and_then(|a| a.try_into().ok());
        summary.room_type = content_str(single("m.room.create"), "type").map(RoomType::from);
        summary.encryption = content_str(single("m.room.encryption"), "algorithm").map(Into::into);
        summary.room_version = self.room_version(room_id).await.ok();
        Ok(Some((summary, space_children(&events, suggested_only))))
    }

    /// Whether the user may preview the room in a hierarchy: they are
    /// joined or invited, the room is world-readable or lets anyone join or
    /// knock, or it is restricted and they are joined to one of the rooms
    /// its join rule allows (client-server API, `GET /hierarchy`, "rooms").
    async fn user_may_preview(&self, user: &OwnedUserId, summary: &RoomSummary) -> Result<bool> {
        if open_to_preview(summary) {
            return Ok(true);
        }
        if matches!(
            self.membership(&summary.room_id, user).await?,
            Some(MembershipState::Join | MembershipState::Invite)
        ) {
            return Ok(true);
        }
        for allowed in allowed_rooms(summary) {
            if self.membership(allowed, user).await? == Some(MembershipState::Join) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether another server may preview a room of this server: the room's
    /// server ACL allows it, and the room is open to preview, or the server
    /// has a member joined to it or to one of the rooms its join rule
    /// allows (it could join it).
    async fn server_may_preview(&self, server: &ServerName, summary: &RoomSummary) -> Result<bool> {
        if !self.server_allowed(&summary.room_id, server).await? {
            return Ok(false);
        }
        if open_to_preview(summary) {
            return Ok(true);
        }
        for room in std::iter::once(&summary.room_id).chain(allowed_rooms(summary)) {
            if self.knows_room(room).await?
                && self.joined_members(room).await?.iter().any(|u| u.server_name() == server)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Answers another server's `GET /hierarchy/{roomId}`: the space and
    /// one level of children, those it may not preview listed apart;
    /// children this server does not know are left out. 404 when the
    /// server may not preview the space, or it is not resident here.
    pub async fn space_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<SpaceForServer> {
        let not_found = || RoomsError::NotFound("this server cannot describe that room to yours".into());
        if !self.is_resident(room_id).await? {
            return Err(not_found());
        }
        let (summary, children) = self.local_space(room_id, suggested_only).await?.ok_or_else(not_found)?;
        if !self.server_may_preview(server, &summary).await? {
            return Err(not_found());
        }
        let mut out = Vec::new();
        let mut inaccessible = Vec::new();
        for (child, _) in &children {
            if !self.is_resident(&child.state_key).await? {
                continue;
            }
            let Some((child_summary, _)) = self.local_space(&child.state_key, suggested_only).await? else { continue };
            if self.server_may_preview(server, &child_summary).await? {
                out.push(child_summary);
            } else {
                inaccessible.push(child.state_key.clone());
            }
        }
        let children_state = children.into_iter().map(|(_, raw)| raw).collect();
        Ok(SpaceForServer {
            room: SpaceHierarchyParentSummary::new(summary, children_state),
            children: out,
            inaccessible_children: inaccessible,
        })
    }

    /// One page of the hierarchy of a space for a user (client-server API
    /// `GET /rooms/{roomId}/hierarchy`): depth-first from the root, each
    /// space's children in the spec's order, rooms the user may not preview
    /// (and what lies below them) left out, each room once. Rooms this
    /// server is not in are asked of the servers their link names. A page
    /// walks again from the root and skips what earlier pages returned.
    pub async fn space_hierarchy(
        &self,
        user: &OwnedUserId,
        root: &RoomId,
        request: HierarchyRequest,
        remote: &dyn RemoteHierarchy,
    ) -> Result<HierarchyPage> {
        let Walk { limit, max_depth, suggested_only, offset } = request.walk(root)?;
        let (root_summary, root_children) =
            self.local_space(root, suggested_only).await?.ok_or_else(|| RoomsError::NotFound("unknown room".into()))?;
        if !self.user_may_preview(user, &root_summary).await? {
            return Err(RoomsError::Forbidden("you may not preview this room".into()));
        }
        let root_node = HierarchyNode::local(root_summary, root_children);

        // The stack of rooms to visit: (link, depth, the remote space that
        // named it, if any). Popped from the end, children pushed reversed,
        // so the walk is depth-first in the children's order.
        let mut stack: Vec<(ChildLink, usize, Option<Arc<RemoteSpace>>)> = Vec::new();
        let mut seen: HashSet<OwnedRoomId> = HashSet::from([root.to_owned()]);
        let mut rooms = Vec::new();
        let mut returned = 0usize;
        let mut next = Some((root_node, 0usize));
        while let Some((node, depth)) = next.take() {
            if returned >= offset {
                rooms.push(SpaceHierarchyRoomsChunk::new(node.summary, node.children_state));
            }
            returned += 1;
            if depth < max_depth {
                for link in node.children.into_iter().rev() {
                    if !seen.contains(&link.room_id) {
                        stack.push((link, depth + 1, node.remote.clone()));
                    }
                }
            }
            if rooms.len() >= limit || seen.len() >= MAX_ROOMS_WALKED {
                break;
            }
            while let Some((link, depth, parent)) = stack.pop() {
                if !seen.insert(link.room_id.clone()) {
                    continue;
                }
                if let Some(node) = self.hierarchy_node(user, &link, parent.as_deref(), suggested_only, remote).await? {
                    next = Some((node, depth));
                    break;
                }
            }
        }
        let more = rooms.len() >= limit
            && seen.len() < MAX_ROOMS_WALKED
            && stack.iter().any(|(link, _, _)| !seen.contains(&link.room_id));
        let next_batch = more.then(|| {
            HierarchyToken { room_id: root.to_string(), suggested_only, max_depth, offset: offset + rooms.len() }
                .encode()
        });
        Ok(HierarchyPage { rooms, next_batch })
    }

    /// A child of the walk, if the user may preview it: from this server's
    /// state when it is in the room, else from what the parent's server
    /// said of it (a room that is not a space), else from one of the
    /// servers its link names.
    async fn hierarchy_node(
        &self,
        user: &OwnedUserId,
        link: &ChildLink,
        parent: Option<&RemoteSpace>,
        suggested_only: bool,
        remote: &dyn RemoteHierarchy,
    ) -> Result<Option<HierarchyNode>> {
        if self.is_resident(&link.room_id).await? {
            let Some((summary, children)) = self.local_space(&link.room_id, suggested_only).await? else {
                return Ok(None);
            };
            if !self.user_may_preview(user, &summary).await? {
                return Ok(None);
            }
            return Ok(Some(HierarchyNode::local(summary, children)));
        }
        if let Some(parent) = parent {
            if parent.inaccessible_children.contains(&link.room_id) {
                return Ok(None);
            }
            let known = parent.children.iter().find(|c| c.room_id == link.room_id);
            if let Some(summary) = known.filter(|c| c.room_type != Some(RoomType::Space)) {
                if !self.user_may_preview(user, summary).await? {
                    return Ok(None);
                }
                return Ok(Some(HierarchyNode {
                    summary: summary.clone(),
                    children_state: Vec::new(),
                    children: Vec::new(),
                    remote: None,
                }));
            }
        }
        let Some(space) = remote.remote_space(&link.room_id, &link.via, suggested_only).await else {
            return Ok(None);
        };
        if !self.user_may_preview(user, &space.room.summary).await? {
            return Ok(None);
        }
        let (children, children_state) = links_of(&space.room.children_state, suggested_only);
        Ok(Some(HierarchyNode { summary: space.room.summary.clone(), children, children_state, remote: Some(space) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let token =
            HierarchyToken { room_id: "!space:example.org".into(), suggested_only: true, max_depth: 3, offset: 17 };
        assert_eq!(HierarchyToken::decode(&token.encode()), Some(token.clone()));
        assert_eq!(token.encode(), token.clone().encode(), "the same position gives the same token");
        assert_eq!(HierarchyToken::decode("not base64!"), None);
        assert_eq!(HierarchyToken::decode(&URL_SAFE_NO_PAD.encode("x|1|3|!r:e")), None);
        assert_eq!(HierarchyToken::decode(&URL_SAFE_NO_PAD.encode("1|2|3|!r:e")), None);
    }

    #[test]
    fn requests_get_defaults_caps_and_checked_tokens() {
        let root: OwnedRoomId = "!space:example.org".try_into().unwrap();
        let walk = HierarchyRequest::default().walk(&root).unwrap();
        assert_eq!(walk, Walk { limit: 50, max_depth: 50, suggested_only: false, offset: 0 });
        let big = HierarchyRequest { limit: Some(UInt::MAX), max_depth: Some(UInt::MAX), ..Default::default() };
        assert_eq!(big.walk(&root).unwrap(), Walk { limit: 50, max_depth: 50, suggested_only: false, offset: 0 });
        let zero = HierarchyRequest { limit: Some(UInt::MIN), ..Default::default() };
        assert!(matches!(zero.walk(&root), Err(RoomsError::InvalidParam(_))));

        let token =
            HierarchyToken { room_id: root.to_string(), suggested_only: false, max_depth: 2, offset: 4 }.encode();
        let next = HierarchyRequest { from: Some(token.clone()), max_depth: Some(2u32.into()), ..Default::default() };
        assert_eq!(next.walk(&root).unwrap().offset, 4);
        let deeper = HierarchyRequest { from: Some(token.clone()), ..Default::default() };
        assert!(matches!(deeper.walk(&root), Err(RoomsError::InvalidParam(_))));
        let other: OwnedRoomId = "!other:example.org".try_into().unwrap();
        assert!(matches!(next.walk(&other), Err(RoomsError::InvalidParam(_))));
    }

    #[test]
    fn links_skip_removed_children_and_follow_the_spec_order() {
        let event = |room: &str, content: Value, ts: u64| {
            Raw::<HierarchySpaceChildEvent>::from_json(
                serde_json::value::to_raw_value(&json!({
                    "type": "m.space.child",
                    "state_key": room,
                    "sender": "@a:example.org",
                    "content": content,
                    "origin_server_ts": ts,
                }))
                .unwrap(),
            )
        };
        let state = vec![
            event("!late:example.org", json!({ "via": ["example.org"] }), 30),
            event("!early:example.org", json!({ "via": ["example.org"], "suggested": true }), 10),
            event("!ordered:example.org", json!({ "via": ["example.org"], "order": "a" }), 50),
            event("!removed:example.org", json!({}), 1),
            event("!emptyvia:example.org", json!({ "via": [] }), 2),
        ];
        let ids = |(links, raws): (Vec<ChildLink>, Vec<Raw<HierarchySpaceChildEvent>>)| {
            assert_eq!(links.len(), raws.len(), "one event per link");
            links.into_iter().map(|l| l.room_id.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(ids(links_of(&state, false)), ["!ordered:example.org", "!early:example.org", "!late:example.org"]);
        assert_eq!(ids(links_of(&state, true)), ["!early:example.org"]);
    }
}
