//! The push gateway API, homeserver side ("POST /_matrix/push/v1/notify"):
//! the notification a push carries, made from the event and the push
//! actions, and its sending. A client chose the gateway's URL, so the
//! gateway is reached only at addresses the address policy allows: every
//! DNS answer is checked, and IP literals too; redirects are not followed.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, SecondsSinceUnixEpoch, UInt,
    api::{
        IncomingResponse, OutgoingRequest,
        push_gateway::send_event_notification::v1::{
            Device, Notification, NotificationCounts, NotificationPriority, PusherData, Request, Response,
        },
    },
    events::TimelineEventType,
    push::{Action, HttpPusherData, PushFormat, Tweak},
};
use serde_json::value::RawValue;

use crate::{
    address_policy::{AddressPolicy, parse_ranges},
    config::PushConfig,
};

/// The largest gateway answer read (it lists rejected pushkeys).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The event a push is about.
pub(super) struct PushedEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub event_type: TimelineEventType,
    /// What the full format adds; `None` for `event_id_only` pushers.
    pub details: Option<EventDetails>,
}

/// The parts of a notification only the full format carries.
pub(super) struct EventDetails {
    pub sender: OwnedUserId,
    pub sender_display_name: Option<String>,
    pub room_name: Option<String>,
    pub content: Box<RawValue>,
    /// A membership event about the user pushed to.
    pub user_is_target: bool,
}

/// The pusher a push goes to.
pub(super) struct PushDevice<'a> {
    pub app_id: &'a str,
    pub pushkey: &'a str,
    pub pushkey_ts_ms: i64,
    pub data: &'a HttpPusherData,
}

/// Whether a pusher wants only the event's id (`format: event_id_only`).
pub(super) fn wants_event_id_only(data: &HttpPusherData) -> bool {
    matches!(data.format, Some(PushFormat::EventIdOnly))
}

/// The notification of one event for one pusher. Spec (push gateway API,
/// "Homeserver behaviour"): `event_id_only` pushers get the event's id,
/// room, counts and priority only; `devices` carries the pusher's `data`
/// without `url`, and the tweaks of the actions.
pub(super) fn notification(
    event: PushedEvent,
    device: PushDevice<'_>,
    actions: &[Action],
    unread: u64,
) -> Notification {
    let tweaks: Vec<Tweak> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SetTweak(tweak) => Some(tweak.clone()),
            _ => None,
        })
        .collect();
    // As Synapse: what highlights or rings, and anything encrypted (whose
    // content the gateway cannot judge), is urgent.
    let urgent = actions.iter().any(|a| a.is_highlight() || a.sound().is_some())
        || event.event_type == TimelineEventType::RoomEncrypted;
    let mut pushed_to = Device::new(device.app_id.to_owned(), device.pushkey.to_owned());
    pushed_to.pushkey_ts = Some(SecondsSinceUnixEpoch(UInt::new_saturating((device.pushkey_ts_ms / 1000) as u64)));
    pushed_to.data = PusherData::from(device.data.clone());
    pushed_to.tweaks = tweaks;

    let mut n = Notification::new(vec![pushed_to]);
    n.event_id = Some(event.event_id);
    n.room_id = Some(event.room_id);
    n.prio = if urgent { NotificationPriority::High } else { NotificationPriority::Low };
    n.counts = NotificationCounts::new(UInt::new_saturating(unread), UInt::MIN);
    if let Some(details) = event.details {
        n.event_type = Some(event.event_type);
        n.sender = Some(details.sender);
        n.sender_display_name = details.sender_display_name;
        n.room_name = details.room_name;
        n.content = Some(details.content);
        n.user_is_target = details.user_is_target;
    }
    n
}

#[derive(Debug, thiserror::Error)]
pub(super) enum GatewayError {
    /// The URL points at an address this server may not reach: retrying
    /// cannot help.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("the gateway answered {0}")]
    Status(http::StatusCode),
    #[error("unexpected answer from the gateway: {0}")]
    BadResponse(String),
}

/// Sends notifications to push gateways.
pub(super) struct Gateways {
    http: reqwest::Client,
    policy: AddressPolicy,
}

impl Gateways {
    pub fn new(config: &PushConfig) -> Result<Self, String> {
        let allowed_ranges = parse_ranges(&config.gateway_allowed_ranges)?;
        let policy = AddressPolicy { allowed_ranges, allow_loopback: false };
        let http = reqwest::Client::builder()
            .user_agent(concat!("Plexus/", env!("CARGO_PKG_VERSION"), " push"))
            .dns_resolver(Arc::new(CheckedDns { policy: policy.clone() }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the push gateway client: {e}"))?;
        Ok(Self { http, policy })
    }

    /// Sends one notification to the gateway at `url`; answers with the
    /// pushkeys the gateway rejected.
    pub async fn notify(&self, url: &str, notification: Notification) -> Result<Vec<String>, GatewayError> {
        let url = reqwest::Url::parse(url).map_err(|e| GatewayError::Refused(format!("bad gateway URL: {e}")))?;
        // reqwest asks the resolver only for names: check literals here.
        if let Some(host) = url.host_str() {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>()
                && !self.policy.allows(ip)
            {
                return Err(GatewayError::Refused(format!("{ip} is not an address push gateways may be reached at")));
            }
        }
        let mut request = Request::new(notification)
            .try_into_http_request::<Vec<u8>>(&url.origin().ascii_serialization(), (), ())
            .map_err(|e| GatewayError::BadResponse(format!("cannot build the request: {e}")))?;
        // The pusher's URL as given (the path is the notify path, checked
        // when the pusher was set; a query string stays).
        *request.uri_mut() =
            url.as_str().parse().map_err(|e| GatewayError::Refused(format!("bad gateway URL: {e}")))?;
        let (parts, body) = request.into_parts();
        let request = reqwest::Request::try_from(http::Request::from_parts(parts, reqwest::Body::from(body)))
            .map_err(|e| GatewayError::Refused(format!("bad gateway URL: {e}")))?;
        let mut response = self.http.execute(request).await.map_err(|e| GatewayError::Unreachable(with_causes(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(GatewayError::Status(status));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| GatewayError::Unreachable(with_causes(&e)))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(GatewayError::BadResponse("the answer is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let answer = http::Response::builder()
            .status(status)
            .body(Bytes::from(body))
            .map_err(|e| GatewayError::BadResponse(e.to_string()))?;
        let answer = Response::try_from_http_response(answer).map_err(|e| GatewayError::BadResponse(e.to_string()))?;
        Ok(answer.rejected)
    }
}

/// An error with its causes (reqwest's own message does not say why a
/// connection failed, e.g. that the policy left no address).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

/// reqwest's resolver for gateways: only the addresses the policy allows.
struct CheckedDns {
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for CheckedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let allowed: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{host} has no address push gateways may be reached at").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        owned_event_id, owned_room_id, owned_user_id,
        push::{HighlightTweakValue, SoundTweakValue},
    };
    use serde_json::{Value, json};

    use super::*;

    fn data(format: Option<&str>) -> HttpPusherData {
        let mut data = json!({"url": "https://gw.example/_matrix/push/v1/notify", "custom": "x"});
        if let Some(format) = format {
            data["format"] = format.into();
        }
        serde_json::from_value(data).unwrap()
    }

    fn event(event_type: TimelineEventType, full: bool) -> PushedEvent {
        PushedEvent {
            event_id: owned_event_id!("$e"),
            room_id: owned_room_id!("!r:x"),
            event_type,
            details: full.then(|| EventDetails {
                sender: owned_user_id!("@alice:x"),
                sender_display_name: Some("Alice".into()),
                room_name: Some("Tea".into()),
                content: RawValue::from_string(r#"{"body":"hi","msgtype":"m.text"}"#.into()).unwrap(),
                user_is_target: false,
            }),
        }
    }

    fn as_json(event: PushedEvent, data: &HttpPusherData, actions: &[Action]) -> Value {
        let device = PushDevice { app_id: "app", pushkey: "key", pushkey_ts_ms: 5_000, data };
        serde_json::to_value(notification(event, device, actions, 3)).unwrap()
    }

    #[test]
    fn a_full_notification_carries_the_event_and_the_pusher_data_without_url() {
        let data = data(None);
        let actions = [Action::Notify, Action::SetTweak(Tweak::Highlight(HighlightTweakValue::No))];
        let n = as_json(event(TimelineEventType::RoomMessage, true), &data, &actions);
        assert_eq!(n["event_id"], "$e");
        assert_eq!(n["type"], "m.room.message");
        assert_eq!(n["sender"], "@alice:x");
        assert_eq!(n["sender_display_name"], "Alice");
        assert_eq!(n["room_name"], "Tea");
        assert_eq!(n["content"]["body"], "hi");
        assert_eq!(n["counts"]["unread"], 3);
        assert_eq!(n["prio"], "low");
        assert_eq!(
            n["devices"],
            json!([{"app_id": "app", "pushkey": "key", "pushkey_ts": 5, "data": {"custom": "x"},
                    "tweaks": {"highlight": false}}])
        );
    }

    #[test]
    fn event_id_only_carries_no_content() {
        let data = data(Some("event_id_only"));
        let n = as_json(event(TimelineEventType::RoomMessage, false), &data, &[Action::Notify]);
        let mut keys: Vec<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["counts", "devices", "event_id", "prio", "room_id"]);
        assert_eq!(n["devices"][0]["data"], json!({"format": "event_id_only", "custom": "x"}));
        assert!(wants_event_id_only(&data));
    }

    #[tokio::test]
    async fn internal_gateways_are_refused_unless_allowed() {
        let gateways = Gateways::new(&PushConfig::default()).unwrap();
        let n = || Notification::new(Vec::new());
        let literal = gateways.notify("http://127.0.0.1:9/_matrix/push/v1/notify", n()).await;
        assert!(matches!(literal, Err(GatewayError::Refused(_))), "{literal:?}");
        let private = gateways.notify("http://[fd00::1]:9/_matrix/push/v1/notify", n()).await;
        assert!(matches!(private, Err(GatewayError::Refused(_))), "{private:?}");
        // A name is checked after its DNS answer: no address is left to try.
        let named = gateways.notify("http://localhost:9/_matrix/push/v1/notify", n()).await;
        let error = named.expect_err("localhost is loopback").to_string();
        assert!(error.contains("localhost has no address push gateways may be reached at"), "{error}");

        let allowed = PushConfig { gateway_allowed_ranges: vec!["127.0.0.0/8".into()] };
        let literal = Gateways::new(&allowed).unwrap().notify("http://127.0.0.1:9/_matrix/push/v1/notify", n()).await;
        assert!(matches!(literal, Err(GatewayError::Unreachable(_))), "allowed, but nothing listens: {literal:?}");
    }

    #[test]
    fn highlights_sounds_and_encrypted_events_are_urgent() {
        let data = data(None);
        let high = |event_type, actions: &[Action]| {
            let n = as_json(event(event_type, true), &data, actions);
            // ruma leaves out the default priority, `high`.
            n.get("prio").is_none_or(|p| p == "high")
        };
        assert!(high(TimelineEventType::RoomMessage, &[Action::SetTweak(Tweak::Highlight(HighlightTweakValue::Yes))]));
        assert!(high(TimelineEventType::RoomMessage, &[Action::SetTweak(Tweak::Sound(SoundTweakValue::Default))]));
        assert!(high(TimelineEventType::RoomEncrypted, &[Action::Notify]));
        assert!(!high(TimelineEventType::RoomMessage, &[Action::Notify]));
    }
}
