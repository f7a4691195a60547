//! Server name resolution (server-server API, "Resolving server names"):
//! IP literals, explicit ports, `/.well-known/matrix/server` delegation,
//! SRV records (`_matrix-fed._tcp`, then the deprecated `_matrix._tcp`),
//! then A/AAAA on port 8448. DNS goes through hickory-resolver, which
//! honours `/etc/hosts`. The same resolver is reqwest's, so every outbound
//! connection passes the deny-list of address ranges.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_resolver::TokioResolver;
use ruma::ServerName;

pub use crate::address_policy::AddressPolicy;

/// Where to send requests for a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Scheme, host and port for the URL (the host is what TLS checks).
    pub base_url: String,
    /// The `Host` header the spec asks for.
    pub host_header: String,
}

/// Why an address may not be contacted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

const DEFAULT_PORT: u16 = 8448;
const WELL_KNOWN_OK_TTL: Duration = Duration::from_secs(24 * 3600);
const WELL_KNOWN_MAX_TTL: Duration = Duration::from_secs(48 * 3600);
const WELL_KNOWN_ERROR_TTL: Duration = Duration::from_secs(3600);
const RESOLVED_TTL: Duration = Duration::from_secs(3600);

/// The DNS side, shared by discovery and reqwest.
pub struct Dns {
    resolver: TokioResolver,
    policy: AddressPolicy,
    /// Hostnames in URLs whose connection goes to another host (SRV targets).
    targets: Mutex<HashMap<String, String>>,
}

impl Dns {
    pub fn new(policy: AddressPolicy) -> Result<Self, ResolveError> {
        let resolver = TokioResolver::builder_tokio()
            .map_err(|e| ResolveError(format!("cannot read the system's DNS configuration: {e}")))?
            .build()
            .map_err(|e| ResolveError(format!("cannot start the DNS resolver: {e}")))?;
        Ok(Self { resolver, policy, targets: Mutex::new(HashMap::new()) })
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// A/AAAA addresses of `host` that the policy allows.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let target = self.targets.lock().expect("targets mutex").get(host).cloned();
        let name = target.as_deref().unwrap_or(host);
        let ips: Vec<IpAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self
                .resolver
                .lookup_ip(name)
                .await
                .map_err(|e| ResolveError(format!("cannot resolve {name}: {e}")))?
                .iter()
                .collect(),
        };
        let allowed: Vec<IpAddr> = ips.into_iter().filter(|ip| self.policy.allows(*ip)).collect();
        if allowed.is_empty() {
            return Err(ResolveError(format!("{name} has no address this server may contact")));
        }
        Ok(allowed)
    }

    /// SRV records of `name`, best first: `(target host, port)`.
    async fn srv(&self, name: &str) -> Vec<(String, u16)> {
        let Ok(lookup) = self.resolver.srv_lookup(name).await else { return Vec::new() };
        let mut records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                hickory_resolver::proto::rr::RData::SRV(srv) => Some(srv.clone()),
                _ => None,
            })
            .collect();
        records.sort_by_key(|srv| (srv.priority, std::cmp::Reverse(srv.weight)));
        records
            .into_iter()
            .map(|srv| (srv.target.to_utf8().trim_end_matches('.').to_owned(), srv.port))
            .filter(|(target, _)| !target.is_empty())
            .collect()
    }

    fn connect_via(&self, url_host: &str, target: &str) {
        self.targets.lock().expect("targets mutex").insert(url_host.to_owned(), target.to_owned());
    }
}

impl reqwest::dns::Resolve for Dns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        // The resolver lives as long as the client (both are in the
        // Federation service), so a weak pointer is not needed: clone what
        // the future needs.
        let resolver = self.resolver.clone();
        let policy = self.policy.clone();
        let target = self.targets.lock().expect("targets mutex").get(&host).cloned();
        Box::pin(async move {
            let name = target.unwrap_or(host);
            let ips: Vec<IpAddr> = match name.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => resolver.lookup_ip(name.as_str()).await?.iter().collect(),
            };
            let allowed: Vec<SocketAddr> =
                ips.into_iter().filter(|ip| policy.allows(*ip)).map(|ip| SocketAddr::new(ip, 0)).collect();
            if allowed.is_empty() {
                return Err(format!("{name} has no address this server may contact").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Resolves server names, caching results (well-known by its rules).
pub struct Resolver {
    dns: Arc<Dns>,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (Destination, Instant)>>,
    well_known: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

/// Splits `host[:port]`, with IPv6 literals in brackets.
pub fn split_host_port(name: &str) -> (String, Option<u16>) {
    if let Some(rest) = name.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (format!("[{host}]"), port);
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_owned(), Some(port)),
            Err(_) => (name.to_owned(), None),
        },
        _ => (name.to_owned(), None),
    }
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn with_port(host: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

impl Resolver {
    pub fn new(dns: Arc<Dns>, http: reqwest::Client) -> Self {
        Self { dns, http, cache: Mutex::new(HashMap::new()), well_known: Mutex::new(HashMap::new()) }
    }

    /// Forgets what is known of a server (after its requests failed).
    pub fn forget(&self, server: &ServerName) {
        self.cache.lock().expect("cache mutex").remove(server.as_str());
    }

    /// Whether the host of a URL another server handed over (a media
    /// `Location`) may be contacted. reqwest does not resolve an IP
    /// literal, so the DNS side's filter would never see it: it is checked
    /// here; a name must have an address the policy allows.
    pub async fn check_host(&self, host: &str) -> Result<(), ResolveError> {
        match ip_literal(host) {
            Some(ip) if self.dns.policy().allows(ip) => Ok(()),
            Some(ip) => Err(ResolveError(format!("{ip} is not an address this server may contact"))),
            None => self.dns.lookup(host).await.map(|_| ()),
        }
    }

    pub async fn resolve(&self, server: &ServerName) -> Result<Destination, ResolveError> {
        if let Some((dest, until)) = self.cache.lock().expect("cache mutex").get(server.as_str())
            && *until > Instant::now()
        {
            return Ok(dest.clone());
        }
        let dest = self.resolve_uncached(server.as_str()).await?;
        self.cache
            .lock()
            .expect("cache mutex")
            .insert(server.as_str().to_owned(), (dest.clone(), Instant::now() + RESOLVED_TTL));
        Ok(dest)
    }

    async fn resolve_uncached(&self, name: &str) -> Result<Destination, ResolveError> {
        let (host, port) = split_host_port(name);
        // 1. An IP literal, with its port or 8448.
        if let Some(ip) = ip_literal(&host) {
            return self.direct_ip(ip, &host, port, name);
        }
        // 2. A hostname with an explicit port.
        if port.is_some() {
            self.dns.lookup(&host).await?;
            return Ok(Destination { base_url: format!("https://{name}"), host_header: name.to_owned() });
        }
        // 3. Delegation through /.well-known/matrix/server.
        if let Some(delegated) = self.well_known(&host).await {
            let (d_host, d_port) = split_host_port(&delegated);
            if let Some(ip) = ip_literal(&d_host) {
                return self.direct_ip(ip, &d_host, d_port, &delegated);
            }
            if d_port.is_some() {
                self.dns.lookup(&d_host).await?;
                return Ok(Destination { base_url: format!("https://{delegated}"), host_header: delegated });
            }
            return self.srv_or_default(&d_host).await;
        }
        // 4-6. SRV, then A/AAAA on 8448.
        self.srv_or_default(&host).await
    }

    fn direct_ip(&self, ip: IpAddr, host: &str, port: Option<u16>, header: &str) -> Result<Destination, ResolveError> {
        if !self.dns.policy().allows(ip) {
            return Err(ResolveError(format!("{ip} is not an address this server may contact")));
        }
        let port = port.unwrap_or(DEFAULT_PORT);
        Ok(Destination { base_url: format!("https://{host}:{port}"), host_header: header.to_owned() })
    }

    async fn srv_or_default(&self, host: &str) -> Result<Destination, ResolveError> {
        for prefix in ["_matrix-fed._tcp", "_matrix._tcp"] {
            if let Some((target, port)) = self.dns.srv(&format!("{prefix}.{host}.")).await.into_iter().next() {
                // TLS still checks the certificate for `host`: connect to
                // the target through the resolver's override.
                self.dns.connect_via(host, &target);
                return Ok(Destination { base_url: format!("https://{host}:{port}"), host_header: host.to_owned() });
            }
        }
        self.dns.lookup(host).await?;
        Ok(Destination {
            base_url: format!("https://{}", with_port(host, Some(DEFAULT_PORT))),
            host_header: host.to_owned(),
        })
    }

    /// The delegated server of `host`, per its well-known file (cached).
    async fn well_known(&self, host: &str) -> Option<String> {
        if let Some((value, until)) = self.well_known.lock().expect("well-known mutex").get(host)
            && *until > Instant::now()
        {
            return value.clone();
        }
        let (value, ttl) = self.fetch_well_known(host).await;
        self.well_known
            .lock()
            .expect("well-known mutex")
            .insert(host.to_owned(), (value.clone(), Instant::now() + ttl));
        value
    }

    async fn fetch_well_known(&self, host: &str) -> (Option<String>, Duration) {
        let url = format!("https://{host}/.well-known/matrix/server");
        let response = match self.http.get(&url).timeout(Duration::from_secs(10)).send().await {
            Ok(r) if r.status().is_success() => r,
            _ => return (None, WELL_KNOWN_ERROR_TTL),
        };
        let ttl = response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map(|ttl| ttl.min(WELL_KNOWN_MAX_TTL))
            .unwrap_or(WELL_KNOWN_OK_TTL);
        let Ok(bytes) = response.bytes().await else { return (None, WELL_KNOWN_ERROR_TTL) };
        if bytes.len() > 50 * 1024 {
            return (None, WELL_KNOWN_ERROR_TTL);
        }
        let server = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("m.server").and_then(|s| s.as_str()).map(str::to_owned))
            .filter(|s| ServerName::parse(s).is_ok());
        match server {
            Some(server) => (Some(server), ttl),
            None => (None, WELL_KNOWN_ERROR_TTL),
        }
    }
}

fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let value = directive.trim().strip_prefix("max-age=")?;
        value.parse().ok().map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(split_host_port("example.org"), ("example.org".into(), None));
        assert_eq!(split_host_port("example.org:8449"), ("example.org".into(), Some(8449)));
        assert_eq!(split_host_port("1.2.3.4:80"), ("1.2.3.4".into(), Some(80)));
        assert_eq!(split_host_port("[::1]:8448"), ("[::1]".into(), Some(8448)));
        assert_eq!(split_host_port("[::1]"), ("[::1]".into(), None));
        assert_eq!(ip_literal("[::1]"), Some("::1".parse().unwrap()));
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(max_age("no-store"), None);
    }

    #[tokio::test]
    async fn literal_and_explicit_port_names_resolve_directly() {
        let dns = Arc::new(Dns::new(AddressPolicy { allowed_ranges: vec![], allow_loopback: true }).unwrap());
        let resolver = Resolver::new(dns, reqwest::Client::new());
        let dest = resolver.resolve(&ServerName::parse("127.0.0.1:9000").unwrap()).await.unwrap();
        assert_eq!(dest.base_url, "https://127.0.0.1:9000");
        assert_eq!(dest.host_header, "127.0.0.1:9000");
        let dest = resolver.resolve(&ServerName::parse("localhost:9001").unwrap()).await.unwrap();
        assert_eq!(dest.base_url, "https://localhost:9001");
        let dest = resolver.resolve(&ServerName::parse("[::1]").unwrap()).await.unwrap();
        assert_eq!(dest.base_url, "https://[::1]:8448");

        let strict = Arc::new(Dns::new(AddressPolicy { allowed_ranges: vec![], allow_loopback: false }).unwrap());
        let resolver = Resolver::new(strict, reqwest::Client::new());
        assert!(resolver.resolve(&ServerName::parse("127.0.0.1:9000").unwrap()).await.is_err());
        assert!(resolver.resolve(&ServerName::parse("localhost:9000").unwrap()).await.is_err());
    }
}
