//! EndpointSlices (discovery.k8s.io/v1): one group per address family and set of ports
//! served, at most 100 endpoints a slice, readiness from health.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};

use crate::domain::{PortName, ServiceSpec};
use crate::k8s::{ENDPOINT_SLICE_MANAGED_BY, ENDPOINT_SLICE_MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

use super::addresses::PublishedAddress;
use super::apply::digest;
use super::owner::Owner;
use super::service::protocol;

/// Kubernetes' own limit per slice (the EndpointSlice controller's default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    fn address_type(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::V4 => "v4",
            Self::V6 => "v6",
        }
    }
}

/// Every slice the service should have. Names are stable for a given family, port set
/// and position, so an unchanged world yields the same objects.
pub fn desired_endpoint_slices(
    owner: &Owner,
    spec: &ServiceSpec,
    addresses: &[PublishedAddress],
) -> Vec<EndpointSlice> {
    let mut groups: BTreeMap<(Family, &BTreeSet<PortName>), Vec<&PublishedAddress>> =
        BTreeMap::new();
    for address in addresses {
        groups
            .entry((Family::of(&address.ip), &address.ports))
            .or_default()
            .push(address);
    }
    let mut slices = Vec::new();
    for ((family, ports), mut members) in groups {
        members.sort_by_key(|a| a.ip);
        let port_names: Vec<&str> = ports.iter().map(AsRef::as_ref).collect();
        let group = format!("{:08x}", digest(port_names.join(",").as_bytes()) as u32);
        let slice_ports: Vec<EndpointPort> = spec
            .ports()
            .iter()
            .filter(|port| ports.contains(&port.name))
            .map(|port| EndpointPort {
                name: Some(port.name.to_string()),
                port: Some(i32::from(port.number.get())),
                protocol: Some(protocol(port.protocol).to_owned()),
                app_protocol: port.app_protocol.clone(),
            })
            .collect();
        for (index, chunk) in members.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            let name = format!("{}-{}-{group}-{index}", owner.name, family.short());
            slices.push(EndpointSlice {
                metadata: owner.child_meta(
                    &name,
                    &[
                        (SERVICE_NAME_LABEL, &owner.name),
                        (ENDPOINT_SLICE_MANAGED_BY_LABEL, ENDPOINT_SLICE_MANAGED_BY),
                    ],
                ),
                address_type: family.address_type().to_owned(),
                endpoints: chunk
                    .iter()
                    .map(|address| Endpoint {
                        addresses: vec![address.ip.to_string()],
                        conditions: Some(EndpointConditions {
                            ready: Some(address.ready),
                            serving: Some(address.ready),
                            terminating: Some(false),
                        }),
                        zone: address.zone.as_ref().map(ToString::to_string),
                        ..Endpoint::default()
                    })
                    .collect(),
                ports: Some(slice_ports.clone()),
            });
        }
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::addresses::{Health, Resolutions, publish};
    use crate::controller::fixtures::{owner, spec};
    use serde_json::json;

    fn slices_for(spec_json: serde_json::Value, health: &Health) -> Vec<EndpointSlice> {
        let spec = spec(spec_json);
        let published = publish(&spec, &Resolutions::new(), health);
        desired_endpoint_slices(&owner(), &spec, &published.addresses)
    }

    fn addresses(slice: &EndpointSlice) -> Vec<String> {
        slice
            .endpoints
            .iter()
            .map(|e| e.addresses[0].clone())
            .collect()
    }

    fn port_names(slice: &EndpointSlice) -> Vec<String> {
        slice
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn a_multi_port_service_gets_one_slice_with_every_port() {
        let slices = slices_for(
            json!({
                "ports": [{"name": "https", "port": 443}, {"name": "metrics", "port": 9100}],
                "endpoints": [{"address": "192.0.2.2"}, {"address": "192.0.2.1"}]
            }),
            &Health::new(),
        );
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].address_type, "IPv4");
        assert_eq!(addresses(&slices[0]), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(port_names(&slices[0]), ["https", "metrics"]);
        let labels = slices[0].metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/service-name"], "billing-db");
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "controller.extsvc.dev"
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "extsvc");
        assert_eq!(
            slices[0].metadata.owner_references.as_ref().unwrap()[0].name,
            "billing-db"
        );
    }

    #[test]
    fn addresses_serving_different_port_subsets_get_separate_slices() {
        let slices = slices_for(
            json!({
                "ports": [{"name": "https", "port": 443}, {"name": "metrics", "port": 9100}],
                "endpoints": [
                    {"address": "192.0.2.1"},
                    {"address": "192.0.2.2", "ports": ["https"]},
                    {"address": "192.0.2.3", "ports": ["metrics"]},
                    {"address": "192.0.2.4", "ports": ["https"]}
                ]
            }),
            &Health::new(),
        );
        let groups: Vec<_> = slices
            .iter()
            .map(|s| (port_names(s), addresses(s)))
            .collect();
        assert_eq!(groups.len(), 3);
        assert!(groups.contains(&(
            vec!["https".into()],
            vec!["192.0.2.2".into(), "192.0.2.4".into()]
        )));
        assert!(groups.contains(&(vec!["metrics".into()], vec!["192.0.2.3".into()])));
        assert!(groups.contains(&(
            vec!["https".into(), "metrics".into()],
            vec!["192.0.2.1".into()]
        )));
        let names: BTreeSet<_> = slices
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "every slice has its own name");
    }

    #[test]
    fn ipv6_addresses_go_to_ipv6_slices() {
        let slices = slices_for(
            json!({
                "ports": [{"name": "https", "port": 443}],
                "endpoints": [{"address": "2001:db8::1"}, {"address": "192.0.2.1"}]
            }),
            &Health::new(),
        );
        let types: Vec<_> = slices
            .iter()
            .map(|s| (s.address_type.as_str(), addresses(s)))
            .collect();
        assert_eq!(
            types,
            [
                ("IPv4", vec!["192.0.2.1".to_owned()]),
                ("IPv6", vec!["2001:db8::1".to_owned()])
            ]
        );
        assert!(
            slices[1]
                .metadata
                .name
                .as_ref()
                .unwrap()
                .starts_with("billing-db-v6-")
        );
    }

    #[test]
    fn two_hundred_fifty_addresses_split_into_slices_of_at_most_100() {
        let endpoints: Vec<_> = (0..250)
            .map(|i| json!({"address": format!("198.51.{}.{}", i / 200, 1 + i % 200)}))
            .collect();
        let slices = slices_for(
            json!({"ports": [{"name": "http", "port": 80}], "endpoints": endpoints}),
            &Health::new(),
        );
        let sizes: Vec<_> = slices.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let names: Vec<_> = slices
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert!(names[0].ends_with("-0") && names[1].ends_with("-1") && names[2].ends_with("-2"));
        let all: BTreeSet<_> = slices.iter().flat_map(addresses).collect();
        assert_eq!(all.len(), 250, "every address exactly once");
    }

    #[test]
    fn endpoint_conditions_follow_health_when_checks_exist() {
        let health = Health::from([
            ("192.0.2.1".parse().unwrap(), true),
            ("192.0.2.2".parse().unwrap(), false),
        ]);
        let slices = slices_for(
            json!({
                "ports": [{"name": "http", "port": 80}],
                "endpoints": [{"address": "192.0.2.1"}, {"address": "192.0.2.2"}, {"address": "192.0.2.3", "zone": "z1"}],
                "healthChecks": [{"name": "up", "tcp": {"port": "http"}}]
            }),
            &health,
        );
        let ready: Vec<_> = slices[0]
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().unwrap().ready.unwrap())
            .collect();
        assert_eq!(
            ready,
            [true, false, false],
            "a new address starts not ready"
        );
        assert_eq!(slices[0].endpoints[2].zone.as_deref(), Some("z1"));
    }

    #[test]
    fn the_same_input_gives_the_same_slices() {
        let input = json!({
            "ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 81}],
            "endpoints": [{"address": "192.0.2.3"}, {"address": "192.0.2.1", "ports": ["admin"]}, {"address": "2001:db8::1"}]
        });
        assert_eq!(
            slices_for(input.clone(), &Health::new()),
            slices_for(input, &Health::new())
        );
    }
}
