//! The addresses a service publishes: its IPs, and the IPs its DNS names resolve to,
//! each with the ports it serves and whether it is ready.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::domain::{Address, DnsSubdomain, LabelValue, PortName, ServiceSpec};

/// One IP as it goes into EndpointSlices, Endpoints and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedAddress {
    pub ip: IpAddr,
    /// The DNS name this IP was resolved from.
    pub resolved_from: Option<DnsSubdomain>,
    pub ports: BTreeSet<PortName>,
    pub zone: Option<LabelValue>,
    pub ready: bool,
    /// Why it is not ready although its checks may pass (maintenance).
    pub note: Option<String>,
}

/// A DNS name that yielded no usable IP, reported in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedName {
    pub name: DnsSubdomain,
    pub reason: String,
}

/// What the controller knows of DNS names: their IPs, or why there are none.
pub type Resolutions = BTreeMap<DnsSubdomain, Result<Vec<IpAddr>, String>>;

/// The resolutions as one namespace may use them: the resolver keeps every address some
/// namespace may use, and `allowed` leaves out those this one may not (its team has no
/// exception for them). A name left with none says why.
pub fn admitted(
    resolutions: Resolutions,
    allowed: impl Fn(IpAddr) -> Result<(), String>,
) -> Resolutions {
    resolutions
        .into_iter()
        .map(|(name, found)| {
            let found = found.and_then(|ips| {
                let (kept, refused): (Vec<IpAddr>, Vec<IpAddr>) =
                    ips.into_iter().partition(|ip| allowed(*ip).is_ok());
                match (kept.is_empty(), refused.first()) {
                    (true, Some(first)) => Err(format!(
                        "resolves only to addresses it may not use; {}",
                        allowed(*first).err().unwrap_or_default()
                    )),
                    _ => Ok(kept),
                }
            });
            (name, found)
        })
        .collect()
}

/// Readiness the probe engine reported, per IP. An IP it has not reported on is not
/// ready while checks exist: a new address must prove itself first.
pub type Health = BTreeMap<IpAddr, bool>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Sorted by IP; an IP listed directly and also resolved from a name appears once.
    pub addresses: Vec<PublishedAddress>,
    pub unresolved: Vec<UnresolvedName>,
}

/// Addresses one service publishes, at most: as many as its spec may list (Kubernetes
/// truncates legacy Endpoints beyond that), however many its DNS names resolve to.
const MAX_PUBLISHED: usize = 1000;

/// Expands `spec`'s endpoints into IPs with readiness. With no health checks every
/// address is ready. Beyond [`MAX_PUBLISHED`] addresses, a name's further IPs are left
/// out and the name is reported.
pub fn publish(spec: &ServiceSpec, resolutions: &Resolutions, health: &Health) -> Published {
    let checked = !spec.health_checks().is_empty();
    let ready = |ip: &IpAddr| !checked || health.get(ip).copied().unwrap_or(false);
    let mut by_ip: BTreeMap<IpAddr, PublishedAddress> = BTreeMap::new();
    let mut unresolved = Vec::new();
    for endpoint in spec.endpoints() {
        let (ips, resolved_from) = match &endpoint.address {
            Address::Ip(ip) => (vec![*ip], None),
            Address::Dns(name) => match resolutions.get(name) {
                Some(Ok(ips)) if !ips.is_empty() => (ips.clone(), Some(name.clone())),
                Some(Ok(_)) => {
                    unresolved.push(UnresolvedName {
                        name: name.clone(),
                        reason: "resolves to no address".to_owned(),
                    });
                    continue;
                }
                Some(Err(reason)) => {
                    unresolved.push(UnresolvedName {
                        name: name.clone(),
                        reason: reason.clone(),
                    });
                    continue;
                }
                None => {
                    unresolved.push(UnresolvedName {
                        name: name.clone(),
                        reason: "not resolved yet".to_owned(),
                    });
                    continue;
                }
            },
        };
        for ip in ips {
            if by_ip.len() >= MAX_PUBLISHED && !by_ip.contains_key(&ip) {
                if let Some(name) = &resolved_from {
                    unresolved.push(UnresolvedName {
                        name: name.clone(),
                        reason: format!(
                            "some of its addresses are left out: a service publishes {MAX_PUBLISHED} at most"
                        ),
                    });
                }
                break;
            }
            // An IP named twice (directly and through a name, or by two names) serves
            // the union of the ports; the first zone given wins.
            by_ip
                .entry(ip)
                .and_modify(|known| known.ports.extend(endpoint.ports.iter().cloned()))
                .or_insert_with(|| PublishedAddress {
                    ip,
                    resolved_from: resolved_from.clone(),
                    ports: endpoint.ports.clone(),
                    zone: endpoint.zone.clone(),
                    ready: ready(&ip),
                    note: None,
                });
        }
    }
    Published {
        addresses: by_ip.into_values().collect(),
        unresolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::spec;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_publish_a_thousand_addresses_at_most_and_say_what_they_left_out() {
        let spec = spec(serde_json::json!({
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"address": "192.0.2.1"}, {"address": "a.example.com"},
                          {"address": "b.example.com"}]
        }));
        let name = |n: &str| DnsSubdomain::parse(n).unwrap();
        let many = |third: u8| -> Vec<IpAddr> {
            // 512 each.
            (0..128u8)
                .flat_map(|a| (0..4u8).map(move |b| IpAddr::from([10, third, b, a])))
                .collect()
        };
        let resolutions = Resolutions::from([
            (name("a.example.com"), Ok(many(1))),
            (name("b.example.com"), Ok(many(2))),
        ]);
        let published = publish(&spec, &resolutions, &Health::new());
        assert_eq!(published.addresses.len(), MAX_PUBLISHED);
        assert!(published.addresses.iter().any(|a| a.ip == ip("192.0.2.1")));
        let left_out: Vec<_> = published
            .unresolved
            .iter()
            .map(|u| u.name.as_ref())
            .collect();
        assert_eq!(left_out, ["b.example.com"]);
    }

    #[test]
    fn without_checks_every_address_is_ready() {
        let spec = spec(serde_json::json!({
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"address": "192.0.2.1"}, {"address": "2001:db8::1"}]
        }));
        let published = publish(&spec, &Resolutions::new(), &Health::new());
        assert!(published.addresses.iter().all(|a| a.ready));
        assert_eq!(published.addresses.len(), 2);
    }

    #[test]
    fn with_checks_an_address_is_ready_only_once_reported_ready() {
        let spec = spec(serde_json::json!({
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"address": "192.0.2.1"}, {"address": "192.0.2.2"}, {"address": "192.0.2.3"}],
            "healthChecks": [{"name": "up", "tcp": {"port": "http"}}]
        }));
        let health = Health::from([(ip("192.0.2.1"), true), (ip("192.0.2.2"), false)]);
        let ready: Vec<_> = publish(&spec, &Resolutions::new(), &health)
            .addresses
            .iter()
            .map(|a| a.ready)
            .collect();
        assert_eq!(ready, [true, false, false]);
    }

    #[test]
    fn dns_names_expand_into_their_ips_and_failures_are_reported() {
        let spec = spec(serde_json::json!({
            "ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 81}],
            "endpoints": [
                {"address": "db.example.com", "ports": ["http"]},
                {"address": "gone.example.com"},
                {"address": "new.example.com"},
                {"address": "192.0.2.9", "ports": ["admin"]}
            ]
        }));
        let name = |s: &str| DnsSubdomain::parse(s).unwrap();
        let resolutions = Resolutions::from([
            (
                name("db.example.com"),
                Ok(vec![ip("192.0.2.9"), ip("2001:db8::9")]),
            ),
            (name("gone.example.com"), Err("no such host".to_owned())),
        ]);
        let published = publish(&spec, &resolutions, &Health::new());
        let ips: Vec<_> = published
            .addresses
            .iter()
            .map(|a| a.ip.to_string())
            .collect();
        assert_eq!(ips, ["192.0.2.9", "2001:db8::9"]);
        let both: Vec<_> = published.addresses[0]
            .ports
            .iter()
            .map(|p| p.as_ref())
            .collect();
        assert_eq!(
            both,
            ["admin", "http"],
            "an IP named twice serves both port sets"
        );
        assert_eq!(
            published.addresses[1].resolved_from,
            Some(name("db.example.com"))
        );
        let reasons: Vec<_> = published
            .unresolved
            .iter()
            .map(|u| (u.name.to_string(), u.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("gone.example.com".to_owned(), "no such host"),
                ("new.example.com".to_owned(), "not resolved yet")
            ]
        );
    }

    #[test]
    fn a_namespace_uses_only_the_resolved_addresses_it_may() {
        let name = |n: &str| DnsSubdomain::parse(n).unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let resolutions: Resolutions = BTreeMap::from([
            (
                name("mixed.example.com"),
                Ok(vec![ip("192.0.2.1"), ip("198.51.100.1")]),
            ),
            (name("theirs.example.com"), Ok(vec![ip("198.51.100.2")])),
            (name("gone.example.com"), Err("lookup failed".to_owned())),
        ]);
        let allowed = |ip: IpAddr| match ip.to_string().starts_with("192.0.2.") {
            true => Ok(()),
            false => Err(format!("{ip} is denied")),
        };
        let admitted = admitted(resolutions, allowed);
        assert_eq!(
            admitted[&name("mixed.example.com")],
            Ok(vec![ip("192.0.2.1")])
        );
        assert_eq!(
            admitted[&name("theirs.example.com")],
            Err("resolves only to addresses it may not use; 198.51.100.2 is denied".to_owned())
        );
        assert_eq!(
            admitted[&name("gone.example.com")],
            Err("lookup failed".to_owned())
        );
    }
}
