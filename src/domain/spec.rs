//! A whole validated `spec`: the input of every desired-state builder.

use std::collections::BTreeSet;

use crate::resource;

use super::{
    Address, Endpoint, Errors, FirstSeen, HealthCheck, Ingress, Invalid, LabelValue, Pointer,
    PortName, PortNumber, ServicePort, ValidationErrors,
};

/// EndpointSlices carry at most 100 ports.
const MAX_PORTS: usize = 100;
/// Kubernetes truncates legacy Endpoints beyond 1000 addresses.
const MAX_ENDPOINTS: usize = 1000;
const MAX_HEALTH_CHECKS: usize = 16;

/// A spec whose every rule holds: ports are unique, every address and check names
/// declared ports, timings are consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    ports: Vec<ServicePort>,
    endpoints: Vec<Endpoint>,
    health_checks: Vec<HealthCheck>,
    ingress: Option<Ingress>,
}

impl ServiceSpec {
    /// Parses `spec`, reporting errors under `/spec`.
    pub fn parse(spec: &resource::ExternalServiceSpec) -> Result<Self, ValidationErrors> {
        let mut errors = Errors::default();
        let parsed = Self::parse_at(spec, &Pointer::root().field("spec"), &mut errors);
        errors.finish(parsed)
    }

    pub(super) fn parse_at(
        spec: &resource::ExternalServiceSpec,
        at: &Pointer,
        errors: &mut Errors,
    ) -> Option<Self> {
        let (ports, every_port_valid) = parse_ports(&spec.ports, &at.field("ports"), errors)?;
        let endpoints = parse_endpoints(&spec.endpoints, &ports, &at.field("endpoints"), errors);

        let checks_at = at.field("healthChecks");
        if spec.health_checks.len() > MAX_HEALTH_CHECKS {
            errors.add(
                &checks_at,
                Invalid::TooMany {
                    max: MAX_HEALTH_CHECKS,
                },
            );
        }
        let mut check_names = FirstSeen::default();
        let health_checks: Vec<_> = spec
            .health_checks
            .iter()
            .enumerate()
            .map(|(i, check)| {
                let at = checks_at.index(i);
                let name_at = at.field("name");
                errors.check(&name_at, check_names.check(check.name.as_str(), &name_at));
                HealthCheck::parse(check, &ports, &at, errors)
            })
            .collect();

        let ingress = match &spec.ingress {
            Some(ingress) => {
                Ingress::parse(ingress, &ports, &at.field("ingress"), errors).map(Some)
            }
            None => Some(None),
        };
        every_port_valid.then_some(())?;
        Some(Self {
            ports,
            endpoints: endpoints?,
            health_checks: health_checks.into_iter().collect::<Option<_>>()?,
            ingress: ingress?,
        })
    }

    pub fn ports(&self) -> &[ServicePort] {
        &self.ports
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn health_checks(&self) -> &[HealthCheck] {
        &self.health_checks
    }

    pub fn ingress(&self) -> Option<&Ingress> {
        self.ingress.as_ref()
    }
}

/// Parses the declared ports into those that are valid, and whether all were. The rest
/// of the spec is checked against the valid ones, so that one bad port does not hide the
/// errors elsewhere; references to a refused port are not reported again. Without a
/// usable list (empty, too long) nothing else can be checked.
fn parse_ports(
    ports: &[resource::ServicePort],
    at: &Pointer,
    errors: &mut Errors,
) -> Option<(Vec<ServicePort>, bool)> {
    if ports.is_empty() {
        errors.add(at, Invalid::Empty);
        return None;
    }
    if ports.len() > MAX_PORTS {
        errors.add(at, Invalid::TooMany { max: MAX_PORTS });
        return None;
    }
    let mut names = FirstSeen::default();
    let mut numbers = FirstSeen::default();
    let mut valid = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().enumerate() {
        let at = at.index(i);
        let errors_before = errors.len();
        let name = errors.check(&at.field("name"), PortName::parse(&port.name));
        let number = errors.check(&at.field("port"), PortNumber::parse(port.port.into()));
        let app_protocol = match &port.app_protocol {
            Some(app) => errors
                .check(&at.field("appProtocol"), super::QualifiedName::parse(app))
                .map(|_| Some(app.clone())),
            None => Some(None),
        };
        let (name_at, port_at) = (at.field("name"), at.field("port"));
        errors.check(&name_at, names.check(port.name.as_str(), &name_at));
        errors.check(
            &port_at,
            numbers.check((port.port, port.protocol), &port_at),
        );
        match (name, number, app_protocol) {
            (Some(name), Some(number), Some(app_protocol)) if errors.len() == errors_before => {
                valid.push(ServicePort {
                    name,
                    number,
                    protocol: port.protocol,
                    app_protocol,
                });
            }
            _ => errors.refuse_port(&port.name, port.port),
        }
    }
    let every_port_valid = valid.len() == ports.len();
    Some((valid, every_port_valid))
}

fn parse_endpoints(
    endpoints: &[resource::Endpoint],
    ports: &[ServicePort],
    at: &Pointer,
    errors: &mut Errors,
) -> Option<Vec<Endpoint>> {
    if endpoints.is_empty() {
        errors.add(at, Invalid::Empty);
        return None;
    }
    if endpoints.len() > MAX_ENDPOINTS {
        errors.add(at, Invalid::TooMany { max: MAX_ENDPOINTS });
        return None;
    }
    let all_ports: BTreeSet<PortName> = ports.iter().map(|p| p.name.clone()).collect();
    let mut seen = FirstSeen::default();
    let parsed: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(i, endpoint)| {
            let at = at.index(i);
            let address = errors.check(&at.field("address"), Address::parse(&endpoint.address));
            if let Some(address) = &address {
                let address_at = at.field("address");
                errors.check(&address_at, seen.check(address.clone(), &address_at));
            }
            let served = match &endpoint.ports {
                None => Some(all_ports.clone()),
                Some(names) => parse_port_subset(names, &all_ports, &at.field("ports"), errors),
            };
            let zone = match &endpoint.zone {
                Some(zone) => errors
                    .check(&at.field("zone"), LabelValue::parse(zone))
                    .map(Some),
                None => Some(None),
            };
            Some(Endpoint {
                address: address?,
                ports: served?,
                zone: zone?,
            })
        })
        .collect();
    parsed.into_iter().collect()
}

fn parse_port_subset(
    names: &[String],
    declared: &BTreeSet<PortName>,
    at: &Pointer,
    errors: &mut Errors,
) -> Option<BTreeSet<PortName>> {
    if names.is_empty() {
        errors.add(
            at,
            Invalid::Rule("must name at least one port; leave it out to serve every port"),
        );
        return None;
    }
    let mut seen = FirstSeen::default();
    let mut subset = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        let at = at.index(i);
        if errors.check(&at, seen.check(name.as_str(), &at)).is_none() {
            continue;
        }
        match declared.iter().find(|p| p.as_ref() == name) {
            Some(port) => {
                subset.insert(port.clone());
            }
            None => errors.add(&at, Invalid::UnknownPort(name.clone())),
        }
    }
    (subset.len() == names.len()).then_some(subset)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn base() -> Value {
        json!({
            "ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}],
            "endpoints": [
                {"address": "192.0.2.10"},
                {"address": "2001:db8::10", "ports": ["http"], "zone": "zone-a"},
                {"address": "db.example.com"}
            ],
            "healthChecks": [
                {"name": "web", "http": {"port": "http", "path": "/healthz"}},
                {"name": "admin", "tcp": {"port": 9000}}
            ],
            "ingress": {"rules": [{"host": "db.example.com", "paths": [{"path": "/", "port": "http"}]}]}
        })
    }

    fn parse(spec: Value) -> Result<ServiceSpec, Vec<String>> {
        let wire: resource::ExternalServiceSpec =
            serde_json::from_value(spec).expect("well-formed spec");
        ServiceSpec::parse(&wire).map_err(|e| e.0.into_iter().map(|e| e.pointer).collect())
    }

    /// The base spec with `value` set at the JSON pointer `at` (whose parent exists).
    fn with(at: &str, value: Value) -> Value {
        let mut spec = base();
        let (parent, key) = at.rsplit_once('/').expect("a pointer");
        match spec
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{parent} exists in base"))
        {
            Value::Object(map) => {
                map.insert(key.to_owned(), value);
            }
            Value::Array(items) => items[key.parse::<usize>().expect("an index")] = value,
            _ => panic!("{parent} is a container"),
        }
        spec
    }

    #[test]
    fn a_multi_port_spec_with_subsets_checks_and_ingress_parses() {
        let spec = parse(base()).expect("valid");
        assert_eq!(spec.ports().len(), 2);
        assert_eq!(
            spec.endpoints()[0].ports.len(),
            2,
            "no ports means every port"
        );
        assert_eq!(spec.endpoints()[1].ports.len(), 1);
        assert_eq!(
            spec.health_checks()[0].timing.period(),
            std::time::Duration::from_secs(10)
        );
        assert_eq!(
            spec.ingress().map(|i| i.rules[0].paths[0].port.as_ref()),
            Some("http")
        );
    }

    #[test]
    fn an_invalid_port_does_not_hide_errors_elsewhere_nor_make_its_references_unknown() {
        let mut spec = with("/ports/1/port", json!(0));
        spec["endpoints"][0]["address"] = json!("not an address!");
        spec["endpoints"][1]["ports"] = json!(["admin", "nope"]);
        spec["healthChecks"][1]["tcp"]["port"] = json!("admin");
        spec["ingress"]["rules"] = json!([]);
        assert_eq!(
            parse(spec).unwrap_err(),
            [
                "/spec/ports/1/port",
                "/spec/endpoints/0/address",
                "/spec/endpoints/1/ports/1",
                "/spec/ingress/rules"
            ]
        );
    }

    #[test]
    fn every_invalid_field_is_reported_at_its_pointer() {
        let cases: Vec<(Value, &[&str])> = vec![
            (with("/ports", json!([])), &["/spec/ports"]),
            (with("/ports/0/port", json!(0)), &["/spec/ports/0/port"]),
            (with("/ports/0/port", json!(65536)), &["/spec/ports/0/port"]),
            (
                with("/ports/1/name", json!("HTTP")),
                &["/spec/ports/1/name"],
            ),
            (
                with("/ports/1/name", json!("http")),
                &["/spec/ports/1/name"],
            ),
            (with("/ports/1/port", json!(80)), &["/spec/ports/1/port"]),
            (
                with("/ports/0/appProtocol", json!("not valid")),
                &["/spec/ports/0/appProtocol"],
            ),
            (with("/endpoints", json!([])), &["/spec/endpoints"]),
            (
                with("/endpoints/0/address", json!("300.0.0.1")),
                &["/spec/endpoints/0/address"],
            ),
            (
                with("/endpoints/0/address", json!("127.0.0.1")),
                &["/spec/endpoints/0/address"],
            ),
            (
                with("/endpoints/2/address", json!("192.0.2.10")),
                &["/spec/endpoints/2/address"],
            ),
            (
                with("/endpoints/2/address", json!("2001:DB8::10")),
                &["/spec/endpoints/2/address"],
            ),
            (
                with("/endpoints/1/ports", json!([])),
                &["/spec/endpoints/1/ports"],
            ),
            (
                with("/endpoints/1/ports", json!(["nope"])),
                &["/spec/endpoints/1/ports/0"],
            ),
            (
                with("/endpoints/1/ports", json!(["http", "http"])),
                &["/spec/endpoints/1/ports/1"],
            ),
            (
                with("/endpoints/1/zone", json!("bad zone")),
                &["/spec/endpoints/1/zone"],
            ),
            (
                with("/healthChecks/0/name", json!("admin")),
                &["/spec/healthChecks/1/name"],
            ),
            (
                with("/healthChecks/0/http/port", json!("nope")),
                &["/spec/healthChecks/0/http/port"],
            ),
            (
                with("/healthChecks/0/http/path", json!("healthz")),
                &["/spec/healthChecks/0/http/path"],
            ),
            (
                with("/healthChecks/0/http/expectedStatuses", json!(["2xx"])),
                &["/spec/healthChecks/0/http/expectedStatuses"],
            ),
            (
                with("/healthChecks/0/http/insecureSkipVerify", json!(true)),
                &["/spec/healthChecks/0/http/insecureSkipVerify"],
            ),
            (
                with("/healthChecks/1/tcp/port", json!(0)),
                &["/spec/healthChecks/1/tcp/port"],
            ),
            (
                with("/healthChecks/1/timeoutSeconds", json!(11)),
                &["/spec/healthChecks/1/timeoutSeconds"],
            ),
            (
                // Within periodSeconds, but a probe holds a turn a minute at most.
                {
                    let mut spec = with("/healthChecks/1/timeoutSeconds", json!(61));
                    spec["healthChecks"][1]["periodSeconds"] = json!(600);
                    spec
                },
                &["/spec/healthChecks/1/timeoutSeconds"],
            ),
            (
                with("/healthChecks/1/periodSeconds", json!(0)),
                &["/spec/healthChecks/1/periodSeconds"],
            ),
            (
                with("/healthChecks/1/failureThreshold", json!(0)),
                &["/spec/healthChecks/1/failureThreshold"],
            ),
            (
                with("/healthChecks/1/http", json!({"port": 1})),
                &["/spec/healthChecks/1"],
            ),
            (with("/ingress/rules", json!([])), &["/spec/ingress/rules"]),
            (
                with("/ingress/rules/0/host", json!("10.0.0.1")),
                &["/spec/ingress/rules/0/host"],
            ),
            (
                with("/ingress/rules/0/paths/0/port", json!(8080)),
                &["/spec/ingress/rules/0/paths/0/port"],
            ),
            (
                with("/ingress/rules/0/paths/0/path", json!("x")),
                &["/spec/ingress/rules/0/paths/0/path"],
            ),
            (
                with("/ingress/className", json!("Bad")),
                &["/spec/ingress/className"],
            ),
        ];
        for (spec, expected) in cases {
            let got = parse(spec.clone()).expect_err(&spec.to_string());
            assert_eq!(got, expected, "{spec}");
        }
    }

    #[test]
    fn independent_errors_are_all_reported() {
        let mut spec = with("/endpoints/0/address", json!("nope.."));
        spec["healthChecks"][1]["tcp"]["port"] = json!("nope");
        spec["ingress"]["rules"][0]["host"] = json!("-bad");
        let got = parse(spec).unwrap_err();
        assert_eq!(
            got,
            [
                "/spec/endpoints/0/address",
                "/spec/healthChecks/1/tcp/port",
                "/spec/ingress/rules/0/host"
            ]
        );
    }

    #[test]
    fn checks_and_ingress_cannot_use_udp_ports() {
        let mut spec = base();
        spec["ports"][1]["protocol"] = json!("UDP");
        spec["healthChecks"][1]["tcp"]["port"] = json!("admin");
        spec["ingress"]["rules"][0]["paths"][0]["port"] = json!("admin");
        let got = parse(spec).unwrap_err();
        assert_eq!(
            got,
            [
                "/spec/healthChecks/1/tcp/port",
                "/spec/ingress/rules/0/paths/0/port"
            ]
        );
    }
}
