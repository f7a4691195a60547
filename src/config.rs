//! Server configuration: a TOML file whose every key has a default, so that
//! `plexus` with no file runs a working server. `config.example.toml` at the
//! repository root documents each key; unknown keys are refused at start.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ruma::{
    OwnedServerName, RoomVersionId, api::client::rtc::RtcTransport, room_version_rules::RoomVersionDisposition,
};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub registration: RegistrationConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub rate_limits: RateLimitsConfig,
    pub presence: PresenceConfig,
    pub rooms: RoomsConfig,
    pub user_directory: UserDirectoryConfig,
    pub media: MediaConfig,
    pub push: PushConfig,
    pub appservice: AppserviceConfig,
    pub federation: FederationConfig,
    pub voip: VoipConfig,
    pub rtc: RtcConfig,
    pub logging: LoggingConfig,
}

/// TURN relays for voice and video calls (`GET /voip/turnServer`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoipConfig {
    /// The TURN servers' URIs (`turn:` or `turns:`); none means no TURN.
    pub turn_uris: Vec<String>,
    /// The secret shared with the TURN server for time-limited
    /// credentials (coturn's `static-auth-secret` with `use-auth-secret`).
    pub turn_shared_secret: Option<String>,
    /// Fixed credentials, for a TURN server without a shared secret.
    pub turn_username: Option<String>,
    pub turn_password: Option<String>,
    /// How long credentials made with the shared secret are valid.
    #[serde(with = "humantime_secs")]
    pub turn_ttl: Duration,
    /// Whether guests may have TURN credentials.
    pub turn_allow_guests: bool,
}

impl Default for VoipConfig {
    fn default() -> Self {
        Self {
            turn_uris: Vec::new(),
            turn_shared_secret: None,
            turn_username: None,
            turn_password: None,
            turn_ttl: Duration::from_secs(3600),
            turn_allow_guests: true,
        }
    }
}

/// The longest `voip.turn_ttl`: credentials valid for longer are as good
/// as permanent.
const MAX_TURN_TTL_SECS: u64 = 365 * 24 * 3600;

/// Secrets stay out of debug output (logs, panics).
impl std::fmt::Debug for VoipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<hidden>");
        f.debug_struct("VoipConfig")
            .field("turn_uris", &self.turn_uris)
            .field("turn_shared_secret", &hidden(&self.turn_shared_secret))
            .field("turn_username", &self.turn_username)
            .field("turn_password", &hidden(&self.turn_password))
            .field("turn_ttl", &self.turn_ttl)
            .field("turn_allow_guests", &self.turn_allow_guests)
            .finish()
    }
}

/// MatrixRTC (MSC4143): the transports clients may use for calls, such as
/// a LiveKit SFU's JWT service, advertised by `GET /rtc/transports`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcConfig {
    /// Each a table with at least a `type`, passed on to clients as it is,
    /// in order of preference.
    pub transports: Vec<RtcTransport>,
}

/// The server-server API: talking to other homeservers over HTTPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Federate at all. Off by default: it needs a certificate, a public
    /// name and port 8448 (or delegation) reachable from other servers.
    pub enabled: bool,
    /// Addresses the federation listener (HTTPS) listens on.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain and private key for the federation listener.
    /// `plexus tls self-signed` makes a pair for development.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Also answer federation requests on the client listeners, for a
    /// deployment where a reverse proxy terminates TLS for both.
    pub serve_on_client_listener: bool,
    /// Check other servers' certificates. Turn off only in tests.
    pub verify_tls: bool,
    /// Extra PEM files of certificate authorities to trust for outbound
    /// federation, on top of the system's roots.
    pub extra_ca_files: Vec<PathBuf>,
    /// Notary servers asked for keys a server cannot give itself.
    pub trusted_key_servers: Vec<OwnedServerName>,
    /// Never talk to these servers (inbound requests are refused too).
    pub denied_servers: Vec<OwnedServerName>,
    /// Address ranges (CIDR) outbound requests may reach even though they
    /// are private; by default private, link-local and loopback addresses
    /// are refused.
    pub allowed_ranges: Vec<String>,
    /// Let outbound requests reach loopback addresses (tests and local setups).
    pub allow_loopback: bool,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8448))],
            tls_cert: None,
            tls_key: None,
            serve_on_client_listener: false,
            verify_tls: true,
            extra_ca_files: Vec::new(),
            trusted_key_servers: Vec::new(),
            denied_servers: Vec::new(),
            allowed_ranges: Vec::new(),
            allow_loopback: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// The legacy unauthenticated `/_matrix/media/v3/download` and
    /// `/thumbnail` endpoints serve only media uploaded before this time
    /// (Unix milliseconds), as spec v1.11 recommends ("freezing"); 0 turns
    /// them off entirely.
    pub legacy_unauthenticated_before_ms: i64,
    /// Asynchronous uploads (`/media/v1/create`) a user may hold unused.
    pub max_pending_uploads: i64,
    /// Size limit of the cache of other servers' media (the files fetched
    /// over federation and thumbnails made of them), in bytes; past it the
    /// least recently used are evicted.
    pub remote_cache_max_bytes: u64,
    /// Serve `/preview_url`. Off by default: it makes the server fetch URLs
    /// that clients choose.
    pub url_preview: bool,
    /// Internal address ranges (CIDR) previews may still reach; by default
    /// loopback, private and link-local addresses are refused.
    pub url_preview_allowed_ranges: Vec<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            // 2024-09-01, when authenticated media shipped in the spec.
            legacy_unauthenticated_before_ms: 1_725_148_800_000,
            max_pending_uploads: 10,
            remote_cache_max_bytes: 1024 * 1024 * 1024,
            url_preview: false,
            url_preview_allowed_ranges: Vec::new(),
        }
    }
}

/// Push notifications sent to the push gateways of users' pushers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Internal address ranges (CIDR) push gateways may still be reached
    /// at; by default loopback, private and link-local addresses are
    /// refused, so a pusher cannot make the server probe its own network.
    pub gateway_allowed_ranges: Vec<String>,
}

/// Application services (bridges, bots) registered with this server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppserviceConfig {
    /// Registration files in the YAML format Synapse reads (`id`, `url`,
    /// `as_token`, `hs_token`, `sender_localpart`, `namespaces`, ...),
    /// checked at start.
    pub registration_files: Vec<PathBuf>,
}

/// Which new rooms get `m.room.encryption` in their initial state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncryptByDefault {
    /// Only rooms whose creator asks for it.
    Off,
    /// Private chats (the `private_chat` and `trusted_private_chat` presets).
    Private,
    /// Every new room.
    All,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    pub encrypt_by_default: EncryptByDefault,
    /// The version `createRoom` gives a room when the client names none,
    /// advertised as `m.room_versions.default` in `/capabilities`.
    pub default_room_version: RoomVersionId,
    /// The longest delay a delayed event (MSC4140) may ask for, in
    /// milliseconds; 0 switches delayed events off.
    pub max_event_delay_ms: u64,
    /// How many delayed events one user may have scheduled at once; 0
    /// switches delayed events off.
    pub max_delayed_events_per_user: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            encrypt_by_default: EncryptByDefault::Off,
            default_room_version: RoomVersionId::V12,
            // A day: Element Call's "leave" delays are seconds, a reminder
            // may be hours.
            max_event_delay_ms: 24 * 3600 * 1000,
            max_delayed_events_per_user: 100,
        }
    }
}

/// The user directory (`POST /user_directory/search`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserDirectoryConfig {
    /// Let every local user be found, not only those sharing a room with
    /// the searcher or in a room anyone may join.
    pub search_all_users: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Track and stream presence. When off, presence endpoints still answer
    /// (everyone is offline) and nothing is stored or streamed.
    pub enabled: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The name in every user id and room alias of this server (`@alice:NAME`).
    pub server_name: OwnedServerName,
    /// Addresses the client-server API listens on.
    pub listen: Vec<SocketAddr>,
    /// Where the database, the signing key and media live.
    pub data_dir: PathBuf,
    /// The URL clients should use, advertised in `/.well-known/matrix/client`.
    /// Defaults to `http://{server_name}`.
    pub public_base_url: Option<String>,
    /// Largest accepted request body for JSON endpoints, in bytes.
    pub max_request_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone may register (`m.login.dummy`).
    Open,
    /// Registration needs a registration token (`m.login.registration_token`).
    Token,
    /// Nobody may register through the API; use `plexus user add`.
    Closed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    pub mode: RegistrationMode,
    /// A fixed registration token. In token mode without one, the server
    /// creates a token at first start and logs it once.
    pub token: Option<String>,
    /// Whether `POST /register?kind=guest` creates guest accounts
    /// (client-server API, "Guest Access"), whatever the mode.
    pub allow_guest_access: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of an access token issued together with a refresh token.
    #[serde(with = "humantime_secs")]
    pub refreshable_access_token_lifetime: Duration,
    /// Minimum password length for registration and password changes.
    pub min_password_length: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Off,
    Normal,
    Full,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// SQLite `synchronous` pragma. `normal` loses nothing on a process crash
    /// (WAL); `full` also survives power loss.
    pub synchronous: Synchronous,
    /// Number of read-only SQLite connections.
    pub readers: usize,
}

/// One rate limit: a token bucket refilled at `per_second`, holding `burst`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Switch every rate limit off (test suites, benchmarks).
    pub enabled: bool,
    /// Login attempts, per client IP address.
    pub login: RateLimit,
    /// Registration attempts, per client IP address.
    pub registration: RateLimit,
    /// Events sent (messages, state, redactions), per user.
    pub message: RateLimit,
    /// Room joins (and knocks), per user.
    pub join: RateLimit,
    /// Invites sent, per user.
    pub invite: RateLimit,
    /// Rooms created (and upgraded), per user.
    pub room_creation: RateLimit,
    /// Media uploads, per user.
    pub media_upload: RateLimit,
    /// Reports of events, rooms and users, per user.
    pub report: RateLimit,
    /// Delayed event management (restart, cancel, send, list), per user,
    /// or per client IP address when unauthenticated.
    pub delayed_event_management: RateLimit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A `tracing` filter directive, e.g. `info` or `plexus=debug,info`.
    /// The `RUST_LOG` environment variable overrides it.
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_name: "localhost:8008".try_into().expect("a valid server name"),
            listen: vec!["127.0.0.1:8008".parse().expect("a valid address")],
            data_dir: PathBuf::from("./plexus-data"),
            public_base_url: None,
            max_request_bytes: 1024 * 1024,
        }
    }
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self { mode: RegistrationMode::Token, token: None, allow_guest_access: false }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { refreshable_access_token_lifetime: Duration::from_secs(300), min_password_length: 8 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { synchronous: Synchronous::Normal, readers: 4 }
    }
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            login: RateLimit { per_second: 0.2, burst: 5 },
            registration: RateLimit { per_second: 0.1, burst: 3 },
            message: RateLimit { per_second: 10.0, burst: 50 },
            join: RateLimit { per_second: 0.5, burst: 10 },
            invite: RateLimit { per_second: 0.5, burst: 10 },
            room_creation: RateLimit { per_second: 0.2, burst: 5 },
            media_upload: RateLimit { per_second: 1.0, burst: 10 },
            report: RateLimit { per_second: 0.05, burst: 5 },
            delayed_event_management: RateLimit { per_second: 1.0, burst: 10 },
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: "info".to_owned() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config = Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; the error message names the offending key, as the
    /// `toml` crate reports it with its line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks what serde cannot: values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.listen.is_empty() {
            return Err(ConfigError::Invalid {
                key: "server.listen",
                message: "at least one address is needed".into(),
            });
        }
        if self.server.max_request_bytes < 65_536 {
            return Err(ConfigError::Invalid {
                key: "server.max_request_bytes",
                message: "must be at least 65536 (the largest event)".into(),
            });
        }
        let version = &self.rooms.default_room_version;
        if !version.rules().is_some_and(|r| r.disposition == RoomVersionDisposition::Stable) {
            return Err(ConfigError::Invalid {
                key: "rooms.default_room_version",
                message: format!("room version {version} is not a stable version this server supports"),
            });
        }
        if self.storage.readers == 0 {
            return Err(ConfigError::Invalid { key: "storage.readers", message: "must be at least 1".into() });
        }
        if let Some(url) = &self.server.public_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "server.public_base_url",
                message: "must start with http:// or https://".into(),
            });
        }
        if let Some(token) = &self.registration.token
            && (token.is_empty() || token.len() > 64)
        {
            return Err(ConfigError::Invalid {
                key: "registration.token",
                message: "must be 1 to 64 characters".into(),
            });
        }
        let limits = &self.rate_limits;
        for (key, limit) in [
            ("rate_limits.login", limits.login),
            ("rate_limits.registration", limits.registration),
            ("rate_limits.message", limits.message),
            ("rate_limits.join", limits.join),
            ("rate_limits.invite", limits.invite),
            ("rate_limits.room_creation", limits.room_creation),
            ("rate_limits.media_upload", limits.media_upload),
            ("rate_limits.report", limits.report),
            ("rate_limits.delayed_event_management", limits.delayed_event_management),
        ] {
            if !(limit.per_second > 0.0 && limit.per_second.is_finite()) || limit.burst == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "per_second must be positive and burst at least 1".into(),
                });
            }
        }
        if let Err(message) = crate::address_policy::parse_ranges(&self.media.url_preview_allowed_ranges) {
            return Err(ConfigError::Invalid { key: "media.url_preview_allowed_ranges", message });
        }
        if let Err(message) = crate::address_policy::parse_ranges(&self.push.gateway_allowed_ranges) {
            return Err(ConfigError::Invalid { key: "push.gateway_allowed_ranges", message });
        }
        if let Err(message) = crate::address_policy::parse_ranges(&self.federation.allowed_ranges) {
            return Err(ConfigError::Invalid { key: "federation.allowed_ranges", message });
        }
        let fed = &self.federation;
        if fed.enabled && !fed.listen.is_empty() && (fed.tls_cert.is_none() || fed.tls_key.is_none()) {
            return Err(ConfigError::Invalid {
                key: "federation.tls_cert",
                message: "the federation listener needs tls_cert and tls_key (`plexus tls self-signed` makes a pair)"
                    .into(),
            });
        }
        self.validate_voip()?;
        if let Some(i) = self.rtc.transports.iter().position(|t| t.transport_type().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "rtc.transports",
                message: format!("transport {} has an empty `type`", i + 1),
            });
        }
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            return Err(ConfigError::Invalid {
                key: "logging.level",
                message: format!("`{}` is not a tracing filter", self.logging.level),
            });
        }
        Ok(())
    }

    /// TURN: URIs the spec allows, a lifetime that stays a lifetime, and
    /// one way to make credentials for them.
    fn validate_voip(&self) -> Result<(), ConfigError> {
        let voip = &self.voip;
        let invalid = |key, message: &str| Err(ConfigError::Invalid { key, message: message.into() });
        // Spec: `uris` match `^turns?:`.
        if voip.turn_uris.iter().any(|u| !(u.starts_with("turn:") || u.starts_with("turns:"))) {
            return invalid("voip.turn_uris", "each URI must start with turn: or turns:");
        }
        if voip.turn_ttl > Duration::from_secs(MAX_TURN_TTL_SECS) {
            return invalid("voip.turn_ttl", "must be at most 31536000 seconds (a year)");
        }
        if voip.turn_shared_secret.as_deref().is_some_and(str::is_empty) {
            return invalid("voip.turn_shared_secret", "must not be empty");
        }
        let fixed = (voip.turn_username.is_some(), voip.turn_password.is_some());
        if fixed.0 != fixed.1 {
            return invalid("voip.turn_username", "turn_username and turn_password go together");
        }
        if voip.turn_shared_secret.is_some() && fixed.0 {
            return invalid("voip.turn_shared_secret", "give either a shared secret or a username and password");
        }
        if !voip.turn_uris.is_empty() && voip.turn_shared_secret.is_none() && !fixed.0 {
            return invalid("voip.turn_uris", "needs turn_shared_secret, or turn_username and turn_password");
        }
        Ok(())
    }

    /// The base URL clients reach this server at.
    pub fn public_base_url(&self) -> String {
        match &self.server.public_base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.server.server_name),
        }
    }
}

/// Durations in the config are whole seconds, which reads well in TOML.
mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = u64::deserialize(d)?;
        if secs == 0 {
            return Err(serde::de::Error::custom("must be at least 1 second"));
        }
        Ok(Duration::from_secs(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.server_name.as_str(), "localhost:8008");
        assert_eq!(c.registration.mode, RegistrationMode::Token);
        c.validate().unwrap();
    }

    #[test]
    fn example_file_documents_the_defaults() {
        let example = Config::parse(include_str!("../config.example.toml")).unwrap();
        example.validate().unwrap();
        let defaults = Config::default();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[server]\nserver_nam = \"x\"\n").unwrap_err();
        assert!(err.contains("server_nam"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::parse("[registration]\nmode = \"sometimes\"\n").unwrap_err();
        assert!(err.contains("mode"), "{err}");
        let err = Config::parse("[server]\nserver_name = \"bad name!\"\n").unwrap_err();
        assert!(err.contains("server_name"), "{err}");
    }

    #[test]
    fn turn_needs_one_kind_of_credentials() {
        let with = |extra: &str| {
            Config::parse(&format!("[voip]\nturn_uris = [\"turn:turn.test:3478\"]\n{extra}")).unwrap().validate()
        };
        let err = with("").unwrap_err().to_string();
        assert!(err.contains("voip.turn_uris"), "{err}");
        with("turn_shared_secret = \"s\"").unwrap();
        with("turn_username = \"u\"\nturn_password = \"p\"").unwrap();
        let err = with("turn_shared_secret = \"s\"\nturn_ttl = 99999999999").unwrap_err().to_string();
        assert!(err.contains("voip.turn_ttl"), "{err}");
        let err = with("turn_username = \"u\"").unwrap_err().to_string();
        assert!(err.contains("voip.turn_username"), "{err}");
        let err =
            with("turn_shared_secret = \"s\"\nturn_username = \"u\"\nturn_password = \"p\"").unwrap_err().to_string();
        assert!(err.contains("voip.turn_shared_secret"), "{err}");
        let err = Config::parse("[voip]\nturn_uris = [\"http://x\"]\nturn_shared_secret = \"s\"\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("voip.turn_uris"), "{err}");
        let debug = format!("{:?}", Config::parse("[voip]\nturn_shared_secret = \"hunter2\"\n").unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn rtc_transports_keep_their_fields() {
        let c =
            Config::parse("[rtc]\ntransports = [{ type = \"livekit\", livekit_service_url = \"https://lk.test\" }]\n")
                .unwrap();
        c.validate().unwrap();
        let json = serde_json::to_value(&c.rtc.transports).unwrap();
        assert_eq!(json, serde_json::json!([{"type": "livekit", "livekit_service_url": "https://lk.test"}]));
        let err = Config::parse("[rtc]\ntransports = [{ livekit_service_url = \"x\" }]\n").unwrap_err();
        assert!(err.contains("type"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config::parse("[storage]\nreaders = 0\n").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("storage.readers"), "{err}");
    }
}
