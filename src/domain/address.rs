//! Addresses of a backend: IP literals or DNS names.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use super::{DnsSubdomain, Invalid, LabelValue, PortName};

/// Where a backend can be reached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    Ip(IpAddr),
    /// Resolved by the controller into IP addresses.
    Dns(DnsSubdomain),
}

impl Address {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        const FORMAT: Invalid = Invalid::Format("an IPv4 address, an IPv6 address or a DNS name");
        if let Ok(ip) = s.parse::<IpAddr>() {
            return check_routable(ip).map(Self::Ip);
        }
        // A name whose last label is numeric would be a mistyped IP address, not a host.
        let looks_numeric = s
            .rsplit('.')
            .next()
            .is_some_and(|last| !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()));
        if looks_numeric || s.contains(':') {
            return Err(FORMAT);
        }
        DnsSubdomain::parse(s).map(Self::Dns).map_err(|_| FORMAT)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Dns(name) => name.fmt(f),
        }
    }
}

/// Refuses the addresses Kubernetes refuses in Endpoints and EndpointSlices: nothing in
/// the cluster could reach a backend there.
pub fn check_routable(ip: IpAddr) -> Result<IpAddr, Invalid> {
    let special = match ip {
        IpAddr::V4(v4) => {
            v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || (v4.octets()[..3] == [224, 0, 0])
                || v4 == Ipv4Addr::BROADCAST
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_loopback()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || (v6.segments()[0] & 0xff0f) == 0xff02
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| check_routable(IpAddr::V4(v4)).is_err())
        }
    };
    if special {
        return Err(Invalid::Rule(
            "must not be unspecified, loopback, link-local or link-local multicast: Kubernetes refuses such endpoint addresses",
        ));
    }
    Ok(ip)
}

/// One address and the ports it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: Address,
    /// Never empty: an address declared without `ports` serves every declared port.
    pub ports: BTreeSet<PortName>,
    pub zone: Option<LabelValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_ip_or_dns_name() {
        assert!(matches!(
            Address::parse("192.0.2.10"),
            Ok(Address::Ip(IpAddr::V4(_)))
        ));
        assert!(matches!(
            Address::parse("2001:db8::1"),
            Ok(Address::Ip(IpAddr::V6(_)))
        ));
        assert!(matches!(
            Address::parse("db.example.com"),
            Ok(Address::Dns(_))
        ));
    }

    #[test]
    fn malformed_and_special_addresses_are_refused() {
        let cases = [
            "",
            "300.1.1.1",
            "10.0.0",
            "010.0.0.1",
            "1.2.3.4.5",
            "db_1.example.com",
            "DB.example.com",
            "2001:db8::zz",
            "[2001:db8::1]",
            "http://db",
            "db.example.com.",
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "169.254.1.1",
            "fe80::1",
            "224.0.0.5",
            "ff02::1",
            "::ffff:127.0.0.1",
            "255.255.255.255",
        ];
        for bad in cases {
            assert!(Address::parse(bad).is_err(), "{bad:?}");
        }
    }
}
