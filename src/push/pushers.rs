//! Pushers (client-server API, "Push notifications", `GET /pushers` and
//! `POST /pushers/set`): each is set by a device and belongs to it. Only
//! `http` pushers are kept; this server sends no email. A pusher is
//! checked before anything is written.

use ruma::{
    DeviceId, OwnedUserId, UserId,
    api::client::push::{Pusher, PusherIds, PusherInit, PusherKind, set_pusher::v3::PusherAction},
    push::HttpPusherData,
};

use super::{Push, PushError, Result};
use crate::storage::{now_ms, pushers::PusherRow};

/// The path every push gateway answers on (push gateway API,
/// "POST /_matrix/push/v1/notify").
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// Spec: "The maximum allowed length is 512 bytes" (`pushkey`) and "64
/// bytes" (`app_id`).
const MAX_PUSHKEY_BYTES: usize = 512;
const MAX_APP_ID_BYTES: usize = 64;

impl Push {
    /// The user's pushers, as `GET /pushers` lists them.
    pub async fn pushers(&self, user: &UserId) -> Result<Vec<Pusher>> {
        let stored = self.db.pushers(user.to_string()).await?;
        Ok(stored.into_iter().filter_map(|s| to_ruma(s.pusher)).collect())
    }

    /// Creates, updates or deletes one of the user's pushers; a pusher set
    /// belongs to `device`.
    pub async fn set_pusher(&self, user: &OwnedUserId, device: &DeviceId, action: PusherAction) -> Result<()> {
        match action {
            PusherAction::Delete(PusherIds { app_id, pushkey, .. }) => {
                // Spec: deleting a pusher that does not exist is no error.
                self.db.delete_pusher(user.to_string(), app_id, pushkey).await?;
            }
            PusherAction::Post(post) => {
                let row = pusher_row(user, device, &post.pusher)?;
                self.remember_user_with_pushers(user).await?;
                self.db.set_pusher(row, post.append).await?;
            }
            _ => return Err(PushError::InvalidParam("unknown pusher action".into())),
        }
        Ok(())
    }
}

/// Checks a pusher and makes the row that stores it.
fn pusher_row(user: &UserId, device: &DeviceId, pusher: &Pusher) -> Result<PusherRow> {
    let data = check_http_pusher(pusher)?;
    let data = serde_json::to_string(data).map_err(|e| PushError::InvalidParam(e.to_string()))?;
    Ok(PusherRow {
        user_id: user.to_string(),
        device_id: device.to_string(),
        app_id: pusher.ids.app_id.clone(),
        pushkey: pusher.ids.pushkey.clone(),
        kind: "http".into(),
        app_display_name: pusher.app_display_name.clone(),
        device_display_name: pusher.device_display_name.clone(),
        profile_tag: pusher.profile_tag.clone(),
        lang: pusher.lang.clone(),
        data,
        pushkey_ts: now_ms(),
    })
}

/// The data of a pusher this server can deliver to: `http`, its `url` an
/// absolute http(s) URL whose path is the gateway's notify path (as
/// Synapse checks). A `format` other than `event_id_only` gets the full
/// format, as Synapse sends it: the spec defines no other.
pub fn check_http_pusher(pusher: &Pusher) -> Result<&HttpPusherData> {
    let invalid = |message: &str| Err(PushError::InvalidParam(message.to_owned()));
    if pusher.ids.pushkey.is_empty() || pusher.ids.pushkey.len() > MAX_PUSHKEY_BYTES {
        return invalid("`pushkey` must be 1 to 512 bytes");
    }
    if pusher.ids.app_id.is_empty() || pusher.ids.app_id.len() > MAX_APP_ID_BYTES {
        return invalid("`app_id` must be 1 to 64 bytes");
    }
    let data = match &pusher.kind {
        PusherKind::Http(data) => data,
        PusherKind::Email(_) => return invalid("this server sends no email: `email` pushers are not supported"),
        _ => return invalid("`kind` must be `http` (or null to delete the pusher)"),
    };
    let url = reqwest::Url::parse(&data.url).map_err(|e| PushError::InvalidParam(format!("`data.url`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return invalid("`data.url` must be an absolute http or https URL");
    }
    if url.path() != NOTIFY_PATH {
        return invalid("`data.url` must have the path /_matrix/push/v1/notify");
    }
    Ok(data)
}

/// A stored pusher as the client API shows it (`None` if its data no
/// longer parses, which a write of this server never leaves).
fn to_ruma(row: PusherRow) -> Option<Pusher> {
    let data: HttpPusherData = serde_json::from_str(&row.data).ok()?;
    Some(
        PusherInit {
            ids: PusherIds::new(row.pushkey, row.app_id),
            kind: PusherKind::Http(data),
            app_display_name: row.app_display_name,
            device_display_name: row.device_display_name,
            profile_tag: row.profile_tag,
            lang: row.lang,
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pusher(kind: &str, data: Value) -> Pusher {
        serde_json::from_value(json!({
            "pushkey": "key", "app_id": "org.example.app", "kind": kind, "data": data,
            "app_display_name": "App", "device_display_name": "Phone", "lang": "en",
        }))
        .unwrap()
    }

    fn error(p: &Pusher) -> String {
        match check_http_pusher(p) {
            Err(PushError::InvalidParam(message)) => message,
            other => panic!("expected an invalid parameter, got {other:?}"),
        }
    }

    #[test]
    fn an_http_pusher_needs_the_gateway_notify_url() {
        let ok = pusher("http", json!({"url": "https://push.example.org/_matrix/push/v1/notify", "extra": 1}));
        assert_eq!(check_http_pusher(&ok).unwrap().data["extra"], 1);
        let only_ids =
            pusher("http", json!({"url": "http://10.0.0.1:5000/_matrix/push/v1/notify", "format": "event_id_only"}));
        assert!(check_http_pusher(&only_ids).is_ok());

        for url in [
            "push.example.org/_matrix/push/v1/notify",
            "/_matrix/push/v1/notify",
            "ftp://push.example.org/_matrix/push/v1/notify",
            "https://push.example.org/",
            "https://push.example.org/_matrix/push/v1/notify/extra",
        ] {
            assert!(error(&pusher("http", json!({"url": url}))).contains("data.url"), "{url}");
        }
        let other_format = pusher("http", json!({"url": "https://p.example/_matrix/push/v1/notify", "format": "x"}));
        assert!(check_http_pusher(&other_format).is_ok(), "unknown formats get the full format, as with Synapse");
    }

    #[test]
    fn only_http_pushers_are_kept() {
        assert!(error(&pusher("email", json!({}))).contains("email"));
        assert!(error(&pusher("carrier-pigeon", json!({}))).contains("kind"));
    }

    #[test]
    fn ids_have_the_spec_lengths() {
        let mut long = pusher("http", json!({"url": "https://p.example/_matrix/push/v1/notify"}));
        long.ids.pushkey = "k".repeat(513);
        assert!(error(&long).contains("pushkey"));
        long.ids.pushkey = "k".into();
        long.ids.app_id = "a".repeat(65);
        assert!(error(&long).contains("app_id"));
    }

    #[test]
    fn a_stored_pusher_reads_back_as_set() {
        let set = pusher("http", json!({"url": "https://p.example/_matrix/push/v1/notify", "format": "event_id_only"}));
        let row = pusher_row(ruma::user_id!("@bob:x"), ruma::device_id!("PHONE"), &set).unwrap();
        assert_eq!(row.device_id, "PHONE");
        let back = serde_json::to_value(to_ruma(row).unwrap()).unwrap();
        assert_eq!(back, serde_json::to_value(&set).unwrap());
    }
}
