//! Legacy v1 Endpoints, for clients that still read them: one subset per set of ports,
//! ready and not-ready addresses apart. Labelled so a real cluster's EndpointSlice
//! mirroring controller does not publish a duplicate of our own slices.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};

use crate::domain::{PortName, ServiceSpec};
use crate::k8s::SKIP_MIRROR_LABEL;

use super::addresses::PublishedAddress;
use super::owner::Owner;
use super::service::protocol;

pub fn desired_endpoints(
    owner: &Owner,
    spec: &ServiceSpec,
    addresses: &[PublishedAddress],
) -> Endpoints {
    let mut subsets: BTreeMap<
        &BTreeSet<PortName>,
        (Vec<&PublishedAddress>, Vec<&PublishedAddress>),
    > = BTreeMap::new();
    for address in addresses {
        let (ready, not_ready) = subsets.entry(&address.ports).or_default();
        if address.ready { ready } else { not_ready }.push(address);
    }
    let list = |members: Vec<&PublishedAddress>| {
        let mut ips: Vec<_> = members.iter().map(|a| a.ip).collect();
        ips.sort();
        (!ips.is_empty()).then(|| {
            ips.into_iter()
                .map(|ip| EndpointAddress {
                    ip: ip.to_string(),
                    ..EndpointAddress::default()
                })
                .collect()
        })
    };
    Endpoints {
        metadata: owner.child_meta(&owner.name, &[(SKIP_MIRROR_LABEL, "true")]),
        subsets: Some(
            subsets
                .into_iter()
                .map(|(ports, (ready, not_ready))| EndpointSubset {
                    addresses: list(ready),
                    not_ready_addresses: list(not_ready),
                    ports: Some(
                        spec.ports()
                            .iter()
                            .filter(|port| ports.contains(&port.name))
                            .map(|port| EndpointPort {
                                name: Some(port.name.to_string()),
                                port: i32::from(port.number.get()),
                                protocol: Some(protocol(port.protocol).to_owned()),
                                app_protocol: port.app_protocol.clone(),
                            })
                            .collect(),
                    ),
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::addresses::{Health, Resolutions, publish};
    use crate::controller::fixtures::{owner, spec};
    use serde_json::json;

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn legacy_endpoints_have_one_subset_per_port_set_with_not_ready_addresses_apart() {
        let spec = spec(json!({
            "ports": [{"name": "https", "port": 443}, {"name": "metrics", "port": 9100}],
            "endpoints": [
                {"address": "192.0.2.1"},
                {"address": "192.0.2.2"},
                {"address": "2001:db8::3", "ports": ["metrics"]}
            ],
            "healthChecks": [{"name": "up", "tcp": {"port": 9100}}]
        }));
        let health = Health::from([
            ("192.0.2.1".parse().unwrap(), true),
            ("2001:db8::3".parse().unwrap(), true),
        ]);
        let published = publish(&spec, &Resolutions::new(), &health);

        let endpoints = desired_endpoints(&owner(), &spec, &published.addresses);

        let subsets = endpoints.subsets.unwrap();
        assert_eq!(subsets.len(), 2);
        let both = subsets
            .iter()
            .find(|s| s.ports.as_ref().unwrap().len() == 2)
            .unwrap();
        assert_eq!(ips(&both.addresses), ["192.0.2.1"]);
        assert_eq!(ips(&both.not_ready_addresses), ["192.0.2.2"]);
        let metrics = subsets
            .iter()
            .find(|s| s.ports.as_ref().unwrap().len() == 1)
            .unwrap();
        assert_eq!(ips(&metrics.addresses), ["2001:db8::3"]);
        assert!(metrics.not_ready_addresses.is_none());
        let labels = endpoints.metadata.labels.unwrap();
        assert_eq!(labels["endpointslice.kubernetes.io/skip-mirror"], "true");
        assert_eq!(endpoints.metadata.name.as_deref(), Some("billing-db"));
    }
}
