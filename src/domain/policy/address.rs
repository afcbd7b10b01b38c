//! Which backend addresses may be registered, published and probed. Without it, anyone
//! who may register a service could make the cluster's probe engine connect to the node
//! itself, the cloud's metadata service or the cluster's own Services, and read the
//! answers over the health API.
//!
//! An address is refused when a denied range holds it and no allowed range does. Built
//! in, and always denied unless allowed: loopback, link-local (with the metadata
//! services at 169.254.169.254 and fd00:ec2::254), the metadata service some clouds keep
//! at 100.100.100.200, unspecified, multicast and broadcast.
//! An IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16`) is judged as that IPv4 address too, so no denied IPv4 address can be
//! reached in disguise. Private ranges stay allowed: that is where most backends live.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use crate::sync::lock;

/// The ranges denied unless configured otherwise, each with what it is.
const BUILT_IN: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("100.100.100.200/32", "cloud metadata"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("fd00:ec2::254/128", "cloud metadata"),
    ("ff00::/8", "multicast"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    net: IpNet,
    what: String,
}

/// Denied ranges and the exceptions made to them. Clones share what was learned from the
/// cluster and the exceptions made for teams.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    denied: Vec<Range>,
    allowed: Vec<IpNet>,
    /// Denied too: the cluster's own ranges as last read from it.
    learned: Arc<Mutex<Vec<Range>>>,
    /// Exceptions the platform admin made for a team, per namespace it owns, as last read
    /// from the database.
    exceptions: Arc<Mutex<HashMap<String, Vec<IpNet>>>>,
}

impl Default for AddressPolicy {
    /// The built-in ranges, no exceptions.
    fn default() -> Self {
        Self {
            denied: BUILT_IN
                .iter()
                .filter_map(|(net, what)| {
                    Some(Range {
                        net: net.parse().ok()?,
                        what: (*what).to_owned(),
                    })
                })
                .collect(),
            allowed: Vec::new(),
            learned: Arc::default(),
            exceptions: Arc::default(),
        }
    }
}

impl AddressPolicy {
    /// From comma-separated CIDR lists: `denied` adds to the built-in ranges (`none`
    /// denies nothing at all, for tests), `allowed` makes exceptions to both.
    pub fn parse(denied: Option<&str>, allowed: Option<&str>) -> Result<Self, String> {
        let mut policy = match denied.map(str::trim) {
            Some("none") => Self {
                denied: Vec::new(),
                ..Self::default()
            },
            Some(list) => {
                let mut policy = Self::default();
                policy.deny(list, "denied by configuration")?;
                policy
            }
            None => Self::default(),
        };
        policy.allowed = cidrs(allowed.unwrap_or_default())?;
        Ok(policy)
    }

    /// Denies the comma-separated CIDR `ranges` too, e.g. the cluster's own, saying
    /// `what` they are.
    pub fn deny(&mut self, ranges: &str, what: &str) -> Result<(), String> {
        self.denied
            .extend(cidrs(ranges)?.into_iter().map(|net| Range {
                net,
                what: what.to_owned(),
            }));
        Ok(())
    }

    /// Replaces what was learned from the cluster with `ranges`, each with what it is.
    pub fn learn(&self, ranges: impl IntoIterator<Item = (IpNet, String)>) {
        *lock(&self.learned) = ranges
            .into_iter()
            .map(|(net, what)| Range { net, what })
            .collect();
    }

    /// Replaces the teams' exceptions: per namespace, ranges allowed there although
    /// denied.
    pub fn except(&self, exceptions: HashMap<String, Vec<IpNet>>) {
        *lock(&self.exceptions) = exceptions;
    }

    /// Whether the address may be used; if not, why (for a field error or a report).
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        self.check_with(ip, &[])
    }

    /// The exceptions made for the team that owns `namespace`.
    pub fn exceptions_in(&self, namespace: &str) -> Vec<IpNet> {
        lock(&self.exceptions)
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }

    /// [`AddressPolicy::check`] in `namespace`, with its team's exceptions.
    pub fn check_in(&self, namespace: &str, ip: IpAddr) -> Result<(), String> {
        self.check_with(ip, &self.exceptions_in(namespace))
    }

    /// Whether some namespace may use the address: what no team may use is never
    /// resolved into or connected to.
    pub fn check_anywhere(&self, ip: IpAddr) -> Result<(), String> {
        let exceptions: Vec<IpNet> = lock(&self.exceptions).values().flatten().copied().collect();
        self.check_with(ip, &exceptions)
    }

    /// [`AddressPolicy::check`], with `exceptions` allowed too.
    pub fn check_with(&self, ip: IpAddr, exceptions: &[IpNet]) -> Result<(), String> {
        std::iter::once(ip)
            .chain(embedded_ipv4(ip).map(IpAddr::V4))
            .try_for_each(|ip| self.check_one(ip, exceptions))
    }

    fn check_one(&self, ip: IpAddr, exceptions: &[IpNet]) -> Result<(), String> {
        if self
            .allowed
            .iter()
            .chain(exceptions)
            .any(|net| net.contains(&ip))
        {
            return Ok(());
        }
        let refuse = |range: &Range| {
            format!(
                "{ip} is in {} ({}), which the address policy denies",
                range.net, range.what
            )
        };
        if let Some(range) = self.denied.iter().find(|range| range.net.contains(&ip)) {
            return Err(refuse(range));
        }
        match lock(&self.learned)
            .iter()
            .find(|range| range.net.contains(&ip))
        {
            Some(range) => Err(refuse(range)),
            None => Ok(()),
        }
    }
}

/// Comma-separated CIDR ranges (a bare address is a range of one).
pub fn cidrs(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("{item:?} is not a CIDR range (like 10.0.0.0/8)"))
        })
        .collect()
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped, NAT64 or 6to4.
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let segments = v6.segments();
    let bits = v6.to_bits();
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if bits >> 32 == 0x0064_ff9b_u128 << 64 {
        // 64:ff9b::/96, the well-known NAT64 prefix: the IPv4 address is the last 32 bits.
        Some(Ipv4Addr::from_bits(bits as u32))
    } else if segments[0] == 0x2002 {
        // 2002:AABB:CCDD::/48, 6to4: the IPv4 address follows the prefix.
        Some(Ipv4Addr::from_bits(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &AddressPolicy, ip: &str) -> bool {
        policy.check(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn every_built_in_form_is_refused_and_private_ranges_are_not() {
        let policy = AddressPolicy::default();
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "169.254.169.254",
            "100.100.100.200",
            "224.0.0.1",
            "239.1.1.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            // The same places in IPv6 disguise.
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(refused(&policy, ip), "{ip} should be refused");
        }
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "192.0.2.10",
            "203.0.113.5",
            "8.8.8.8",
            "2001:db8::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            assert!(!refused(&policy, ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn the_reason_names_the_range() {
        let error = AddressPolicy::default()
            .check("64:ff9b::a9fe:a9fe".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            error,
            "169.254.169.254 is in 169.254.0.0/16 (link-local (cloud metadata)), which the address policy denies"
        );
    }

    #[test]
    fn configured_ranges_add_to_the_built_in_ones_and_exceptions_beat_both() {
        let policy = AddressPolicy::parse(
            Some("10.0.0.0/8, 192.0.2.7"),
            Some("10.9.0.0/16, 127.0.0.1"),
        )
        .unwrap();
        assert!(refused(&policy, "10.1.2.3"));
        assert!(refused(&policy, "192.0.2.7"));
        assert!(refused(&policy, "::ffff:10.1.2.3"));
        assert!(refused(&policy, "127.0.0.2"));
        assert!(!refused(&policy, "10.9.1.1"));
        assert!(!refused(&policy, "127.0.0.1"));
        assert!(!refused(&policy, "192.0.2.8"));
    }

    #[test]
    fn none_denies_nothing_and_bad_ranges_are_named() {
        let policy = AddressPolicy::parse(Some("none"), None).unwrap();
        assert!(!refused(&policy, "127.0.0.1"));
        assert_eq!(
            AddressPolicy::parse(Some("10.0.0.0/33"), None).unwrap_err(),
            "\"10.0.0.0/33\" is not a CIDR range (like 10.0.0.0/8)"
        );
        assert!(AddressPolicy::parse(None, Some("nope")).is_err());
    }

    #[test]
    fn cluster_ranges_can_be_denied_later() {
        let mut policy = AddressPolicy::default();
        policy
            .deny("10.96.0.0/12", "the cluster's Services")
            .unwrap();
        assert_eq!(
            policy.check("10.96.0.1".parse().unwrap()).unwrap_err(),
            "10.96.0.1 is in 10.96.0.0/12 (the cluster's Services), which the address policy denies"
        );
    }

    #[test]
    fn what_is_learned_from_the_cluster_is_shared_by_clones_and_replaced() {
        let policy = AddressPolicy::default();
        let in_the_api = policy.clone();
        policy.learn([("10.0.0.0/24".parse().unwrap(), "a ServiceCIDR".to_owned())]);
        assert!(refused(&in_the_api, "10.0.0.5"));
        assert!(refused(&in_the_api, "::ffff:10.0.0.5"));
        policy.learn([]);
        assert!(!refused(&in_the_api, "10.0.0.5"));
    }

    #[test]
    fn a_teams_exception_opens_a_denied_range_in_its_namespaces_only() {
        let policy = AddressPolicy::parse(Some("192.0.2.0/24"), None).unwrap();
        let exception: IpNet = "192.0.2.0/28".parse().unwrap();
        policy.except(HashMap::from([("payments".to_owned(), vec![exception])]));
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(policy.check(ip("192.0.2.5")).is_err());
        assert!(policy.check_in("payments", ip("192.0.2.5")).is_ok());
        assert!(policy.check_in("payments", ip("::ffff:192.0.2.5")).is_ok());
        assert!(policy.check_in("payments", ip("192.0.2.100")).is_err());
        assert!(policy.check_in("billing", ip("192.0.2.5")).is_err());
        assert!(policy.check_anywhere(ip("192.0.2.5")).is_ok());
        assert!(policy.check_anywhere(ip("192.0.2.100")).is_err());
        // Clones share the exceptions, as they share what was learned from the cluster.
        let clone = policy.clone();
        policy.except(HashMap::new());
        assert!(clone.check_in("payments", ip("192.0.2.5")).is_err());
    }
}
