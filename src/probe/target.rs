//! What to probe: every check on every address that serves the check's port.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use crate::domain::{CheckPort, DnsSubdomain, HealthCheck, PortName, ServiceSpec};

/// One check on one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub ip: IpAddr,
    /// The DNS name the address was resolved from, if any.
    pub resolved_from: Option<DnsSubdomain>,
    pub port: u16,
    pub check: Arc<HealthCheck>,
}

/// An address to probe: its IP, the DNS name it came from, and the ports it serves.
pub struct ProbedAddress<'a> {
    pub ip: IpAddr,
    pub resolved_from: Option<&'a DnsSubdomain>,
    pub ports: &'a BTreeSet<PortName>,
}

/// The targets of a service. A check on a declared port runs on the addresses serving
/// that port; a check on a number that is no declared port (a separate health port)
/// runs on every address.
pub fn probe_targets<'a>(
    spec: &ServiceSpec,
    addresses: impl IntoIterator<Item = ProbedAddress<'a>>,
) -> Vec<ProbeTarget> {
    let checks: Vec<Arc<HealthCheck>> =
        spec.health_checks().iter().cloned().map(Arc::new).collect();
    let serves = |ports: &BTreeSet<PortName>, check: &HealthCheck| match check.probe.port() {
        CheckPort::Declared(name, _) => ports.contains(name),
        CheckPort::Number(number) => match spec.ports().iter().find(|p| p.number == *number) {
            Some(declared) => ports.contains(&declared.name),
            None => true,
        },
    };
    let mut targets = Vec::new();
    for address in addresses {
        for check in &checks {
            if serves(address.ports, check) {
                targets.push(ProbeTarget {
                    ip: address.ip,
                    resolved_from: address.resolved_from.cloned(),
                    port: check.probe.port().number().get(),
                    check: check.clone(),
                });
            }
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ServiceSpec;
    use crate::resource::ExternalServiceSpec;
    use serde_json::json;

    #[test]
    fn checks_run_on_the_addresses_serving_their_port() {
        let wire: ExternalServiceSpec = serde_json::from_value(json!({
            "ports": [{"name": "https", "port": 443}, {"name": "metrics", "port": 9100}],
            "endpoints": [{"address": "192.0.2.1"}, {"address": "192.0.2.2", "ports": ["metrics"]}],
            "healthChecks": [
                {"name": "web", "http": {"port": "https"}},
                {"name": "scrape", "tcp": {"port": 9100}},
                {"name": "side", "tcp": {"port": 8081}}
            ]
        }))
        .unwrap();
        let spec = ServiceSpec::parse(&wire).unwrap();
        let all: BTreeSet<PortName> = spec.ports().iter().map(|p| p.name.clone()).collect();
        let metrics: BTreeSet<PortName> = [PortName::parse("metrics").unwrap()].into();
        let address = |ip: &str, ports| ProbedAddress {
            ip: ip.parse().unwrap(),
            resolved_from: None,
            ports,
        };
        let addresses = [address("192.0.2.1", &all), address("192.0.2.2", &metrics)];

        let targets: Vec<_> = probe_targets(&spec, addresses)
            .into_iter()
            .map(|t| (t.ip.to_string(), t.check.name.to_string(), t.port))
            .collect();

        assert_eq!(
            targets,
            [
                ("192.0.2.1".to_owned(), "web".to_owned(), 443),
                ("192.0.2.1".to_owned(), "scrape".to_owned(), 9100),
                ("192.0.2.1".to_owned(), "side".to_owned(), 8081),
                ("192.0.2.2".to_owned(), "scrape".to_owned(), 9100),
                ("192.0.2.2".to_owned(), "side".to_owned(), 8081),
            ]
        );
    }
}
