//! The outbound address policy: which IP addresses the server may connect
//! to on a remote party's behalf (federation, URL previews). Loopback,
//! private, link-local and other internal ranges are refused unless the
//! operator allows them, so nobody can make the server probe its own
//! network. Every outbound connection is checked after its DNS answer.

use std::net::IpAddr;

use ipnet::IpNet;

/// Address policy for outbound connections.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    pub allowed_ranges: Vec<IpNet>,
    pub allow_loopback: bool,
}

impl AddressPolicy {
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.allowed_ranges.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        let loopback = match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        };
        if loopback {
            return self.allow_loopback;
        }
        !is_internal(ip)
    }
}

/// Addresses no preview may reach unless explicitly allowed.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
        }
    }
}

/// Parses the configured allowed ranges (validated at start).
pub fn parse_ranges(ranges: &[String]) -> std::result::Result<Vec<IpNet>, String> {
    ranges.iter().map(|r| r.parse::<IpNet>().map_err(|e| format!("`{r}`: {e}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn private_ranges_are_refused_unless_allowed() {
        let strict = AddressPolicy { allowed_ranges: vec![], allow_loopback: false };
        assert!(!strict.allows("127.0.0.1".parse().unwrap()));
        assert!(!strict.allows("10.1.2.3".parse().unwrap()));
        assert!(!strict.allows("fd00::1".parse().unwrap()));
        assert!(strict.allows("93.184.216.34".parse().unwrap()));
        let local = AddressPolicy { allowed_ranges: vec!["10.0.0.0/8".parse().unwrap()], allow_loopback: true };
        assert!(local.allows("127.0.0.1".parse().unwrap()));
        assert!(local.allows("10.1.2.3".parse().unwrap()));
        assert!(!local.allows("192.168.1.1".parse().unwrap()));
    }
}
