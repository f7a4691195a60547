//! Registration files (application service API, "Registration"): the YAML
//! Synapse reads, parsed into ruma's `Registration` plus the unstable keys,
//! with the namespaces compiled, and the checks done at start: duplicate
//! ids or tokens, bad regexes, overlapping exclusive namespaces.

use std::{collections::HashMap, path::Path};

use regex::Regex;
use ruma::{OwnedUserId, RoomAliasId, RoomId, ServerName, UserId, api::appservice::Registration};
use serde::Deserialize;

/// Why the registration files cannot be used. Each names the file or
/// appservice at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("cannot read the appservice registration file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the appservice registration file {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error("appservice {id}: the {what} regex `{regex}` is not valid: {reason}")]
    BadRegex { id: String, what: &'static str, regex: String, reason: String },
    #[error("two appservice registrations have the id `{0}`")]
    DuplicateId(String),
    #[error("appservices {0} and {1} have the same {2}")]
    DuplicateToken(String, String, &'static str),
    #[error("the exclusive {what} namespace `{regex}` of appservice {first} overlaps appservice {second}'s")]
    Overlap { what: &'static str, regex: String, first: String, second: String },
}

/// A registration file: ruma's fields plus the unstable keys bridges set.
#[derive(Debug, Deserialize)]
struct RegistrationFile {
    #[serde(flatten)]
    registration: Registration,
    /// MSC2409's name for `receive_ephemeral`.
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: bool,
    /// MSC3202: device ids in identity assertion, E2EE data in transactions.
    #[serde(default, rename = "org.matrix.msc3202")]
    msc3202: bool,
    /// MSC4190: devices of namespace users without a login.
    #[serde(default, rename = "io.element.msc4190")]
    msc4190: bool,
}

/// One compiled namespace regex.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub exclusive: bool,
    /// As written in the file.
    pub source: String,
    regex: Regex,
}

/// A registered application service, checked and compiled.
#[derive(Debug, Clone)]
pub struct Appservice {
    pub registration: Registration,
    /// `@{sender_localpart}:{server}`.
    pub sender: OwnedUserId,
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
    /// `receive_ephemeral` or MSC2409's `push_ephemeral`.
    pub receive_ephemeral: bool,
    pub msc3202: bool,
    pub msc4190: bool,
}

impl Appservice {
    pub fn id(&self) -> &str {
        &self.registration.id
    }

    /// Whether the appservice may act as `user`: its sender, or a user of
    /// its namespaces.
    pub fn is_user_in_namespace(&self, user: &UserId) -> bool {
        user == self.sender || matches_any(&self.users, user.as_str(), false)
    }

    /// Whether `user` is in one of its exclusive user namespaces (or is its sender).
    pub fn is_exclusive_user(&self, user: &UserId) -> bool {
        user == self.sender || matches_any(&self.users, user.as_str(), true)
    }

    pub fn is_alias_in_namespace(&self, alias: &RoomAliasId) -> bool {
        matches_any(&self.aliases, alias.as_str(), false)
    }

    pub fn is_exclusive_alias(&self, alias: &RoomAliasId) -> bool {
        matches_any(&self.aliases, alias.as_str(), true)
    }

    pub fn is_room_in_namespace(&self, room: &RoomId) -> bool {
        matches_any(&self.rooms, room.as_str(), false)
    }

    /// Whether transactions carry its users' typing and receipts.
    pub fn wants_ephemeral(&self) -> bool {
        self.receive_ephemeral
    }

    /// Whether it asked for MSC3202's transaction extensions (device list
    /// changes, one-time key counts, fallback key types).
    pub fn wants_msc3202(&self) -> bool {
        self.msc3202
    }

    /// Whether it receives its users' to-device messages (MSC2409, sent
    /// with the ephemeral data, as Synapse does) — here only with MSC3202.
    pub fn wants_to_device(&self) -> bool {
        self.msc3202 && self.receive_ephemeral
    }

    /// Whether requests with its token are rate-limited (`rate_limited`
    /// defaults to true).
    pub fn is_rate_limited(&self) -> bool {
        self.registration.rate_limited.unwrap_or(true)
    }
}

fn matches_any(namespaces: &[Namespace], id: &str, exclusive_only: bool) -> bool {
    namespaces.iter().any(|n| (n.exclusive || !exclusive_only) && n.regex.is_match(id))
}

/// Compiles a namespace regex. As Synapse (Python's `re.match`), a regex
/// matches at the start of the id; most registrations anchor both ends.
fn compile(id: &str, what: &'static str, source: &str) -> Result<Regex, RegistrationError> {
    Regex::new(&format!("^(?:{source})")).map_err(|e| RegistrationError::BadRegex {
        id: id.to_owned(),
        what,
        regex: source.to_owned(),
        reason: e.to_string(),
    })
}

fn namespaces(
    id: &str,
    what: &'static str,
    list: &[ruma::api::appservice::Namespace],
) -> Result<Vec<Namespace>, RegistrationError> {
    list.iter()
        .map(|n| Ok(Namespace { exclusive: n.exclusive, source: n.regex.clone(), regex: compile(id, what, &n.regex)? }))
        .collect()
}

/// Parses one registration file's text (`path` names it in errors).
pub fn parse(path: &str, text: &str, server_name: &ServerName) -> Result<Appservice, RegistrationError> {
    let invalid = |reason: String| RegistrationError::Invalid { path: path.to_owned(), reason };
    let file: RegistrationFile = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let r = file.registration;
    if r.id.is_empty() || r.as_token.is_empty() || r.hs_token.is_empty() {
        return Err(invalid("`id`, `as_token` and `hs_token` must not be empty".into()));
    }
    if let Some(url) = &r.url {
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(format!("`url` {url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!("`url` {url} is not an http(s) URL")));
        }
    }
    let sender = UserId::parse_with_server_name(r.sender_localpart.as_str(), server_name)
        .ok()
        .filter(|u| u.validate_strict().is_ok())
        .ok_or_else(|| invalid(format!("`sender_localpart` {} is not a valid user name", r.sender_localpart)))?;
    Ok(Appservice {
        users: namespaces(&r.id, "users", &r.namespaces.users)?,
        aliases: namespaces(&r.id, "aliases", &r.namespaces.aliases)?,
        rooms: namespaces(&r.id, "rooms", &r.namespaces.rooms)?,
        receive_ephemeral: r.receive_ephemeral || file.push_ephemeral,
        msc3202: file.msc3202,
        msc4190: file.msc4190,
        sender,
        registration: r,
    })
}

/// Reads and checks every registration file.
pub fn load(paths: &[impl AsRef<Path>], server_name: &ServerName) -> Result<Vec<Appservice>, RegistrationError> {
    let mut appservices = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| RegistrationError::Read { path: shown.clone(), reason: e.to_string() })?;
        appservices.push(parse(&shown, &text, server_name)?);
    }
    check(&appservices)?;
    Ok(appservices)
}

/// The checks across registrations: ids and tokens are unique, and no
/// two appservices claim the same thing exclusively. Overlap of two
/// regexes cannot be decided in general; what is caught is the same
/// pattern claimed twice when either claim is exclusive, and one
/// appservice's sender inside another's exclusive user namespace.
pub fn check(appservices: &[Appservice]) -> Result<(), RegistrationError> {
    let mut ids = HashMap::new();
    let mut tokens: HashMap<&str, (&str, &'static str)> = HashMap::new();
    for a in appservices {
        if ids.insert(a.id(), ()).is_some() {
            return Err(RegistrationError::DuplicateId(a.id().to_owned()));
        }
        for (token, what) in [(&a.registration.as_token, "as_token"), (&a.registration.hs_token, "hs_token")] {
            if let Some((other, other_what)) = tokens.insert(token, (a.id(), what)) {
                let what = if other_what == what { what } else { "token (as_token and hs_token)" };
                return Err(RegistrationError::DuplicateToken(other.to_owned(), a.id().to_owned(), what));
            }
        }
    }
    for (i, a) in appservices.iter().enumerate() {
        for b in &appservices[i + 1..] {
            for (what, mine, theirs) in
                [("users", &a.users, &b.users), ("aliases", &a.aliases, &b.aliases), ("rooms", &a.rooms, &b.rooms)]
            {
                for n in mine {
                    if let Some(m) = theirs.iter().find(|m| m.source == n.source && (m.exclusive || n.exclusive)) {
                        let (first, second) = if n.exclusive { (a, b) } else { (b, a) };
                        return Err(RegistrationError::Overlap {
                            what,
                            regex: m.source.clone(),
                            first: first.id().to_owned(),
                            second: second.id().to_owned(),
                        });
                    }
                }
            }
            for (x, y) in [(a, b), (b, a)] {
                if y.users.iter().any(|n| n.exclusive && n.regex.is_match(x.sender.as_str())) {
                    return Err(RegistrationError::Overlap {
                        what: "users",
                        regex: x.sender.to_string(),
                        first: y.id().to_owned(),
                        second: x.id().to_owned(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::{room_alias_id, room_id, server_name, user_id};

    use super::*;

    fn yaml(id: &str, token: &str, users: &str) -> String {
        format!(
            "id: {id}\nurl: http://127.0.0.1:29317\nas_token: as_{token}\nhs_token: hs_{token}\n\
             sender_localpart: {id}bot\nrate_limited: false\nde.sorunome.msc2409.push_ephemeral: true\n\
             namespaces:\n  users:\n  - exclusive: true\n    regex: '{users}'\n  aliases:\n  \
             - exclusive: true\n    regex: '#{id}_.*:test'\n  rooms: []\n"
        )
    }

    fn one(id: &str, token: &str, users: &str) -> Appservice {
        parse("test.yaml", &yaml(id, token, users), server_name!("test")).unwrap()
    }

    #[test]
    fn a_synapse_registration_parses_and_its_namespaces_match() {
        let a = one("bridge", "a", "@bridge_.*:test");
        assert_eq!(a.id(), "bridge");
        assert_eq!(a.sender, "@bridgebot:test");
        assert_eq!(a.registration.url.as_deref(), Some("http://127.0.0.1:29317"));
        assert!(a.receive_ephemeral, "the MSC2409 key counts");
        assert!(!a.is_rate_limited());
        assert!(a.is_exclusive_user(user_id!("@bridge_alice:test")));
        assert!(a.is_user_in_namespace(user_id!("@bridgebot:test")), "its sender");
        assert!(!a.is_user_in_namespace(user_id!("@alice:test")));
        // Matched from the start, as Synapse does.
        assert!(!a.is_user_in_namespace(user_id!("@x_bridge_alice:test")));
        assert!(a.is_exclusive_alias(room_alias_id!("#bridge_room:test")));
        assert!(!a.is_alias_in_namespace(room_alias_id!("#other:test")));
        assert!(!a.is_room_in_namespace(room_id!("!r:test")));
    }

    #[test]
    fn a_null_url_and_missing_optional_keys_are_accepted() {
        let text = "id: bot\nurl: null\nas_token: a\nhs_token: h\nsender_localpart: bot\nnamespaces: {}\n";
        let a = parse("bot.yaml", text, server_name!("test")).unwrap();
        assert_eq!(a.registration.url, None);
        assert!(a.is_rate_limited());
        assert!(!a.wants_ephemeral());
    }

    #[test]
    fn bad_files_are_refused_naming_what_is_wrong() {
        let bad_regex = parse("x.yaml", &yaml("bridge", "a", "@bridge_(.*:test"), server_name!("test"));
        let message = bad_regex.unwrap_err().to_string();
        assert!(message.contains("appservice bridge: the users regex `@bridge_(.*:test` is not valid"), "{message}");
        let missing = parse("x.yaml", "id: x\nurl: null\n", server_name!("test")).unwrap_err().to_string();
        assert!(missing.starts_with("the appservice registration file x.yaml is not valid"), "{missing}");
        let bad_sender = yaml("bridge", "a", "@b.*").replace("sender_localpart: bridgebot", "sender_localpart: 'A B'");
        let message = parse("x.yaml", &bad_sender, server_name!("test")).unwrap_err().to_string();
        assert!(message.contains("`sender_localpart` A B is not a valid user name"), "{message}");
    }

    #[test]
    fn duplicate_ids_and_tokens_are_refused() {
        let a = one("bridge", "a", "@bridge_.*:test");
        let same_id = one("bridge", "b", "@other_.*:test");
        let message = check(&[a.clone(), same_id]).unwrap_err().to_string();
        assert_eq!(message, "two appservice registrations have the id `bridge`");
        let same_token = one("other", "a", "@other_.*:test");
        let message = check(&[a.clone(), same_token]).unwrap_err().to_string();
        assert_eq!(message, "appservices bridge and other have the same as_token");
        assert!(check(&[a, one("other", "b", "@other_.*:test")]).is_ok());
    }

    #[test]
    fn overlapping_exclusive_namespaces_are_refused() {
        let a = one("bridge", "a", "@bridge_.*:test");
        let message = check(&[a.clone(), one("other", "b", "@bridge_.*:test")]).unwrap_err().to_string();
        assert!(message.contains("exclusive users namespace `@bridge_.*:test`"), "{message}");
        // Another appservice's sender inside an exclusive namespace.
        let message = check(&[a.clone(), one("bridge_x", "b", "@x_.*:test")]).unwrap_err().to_string();
        assert!(message.contains("@bridge_xbot:test"), "{message}");
    }
}
