//! The headless Service: a stable name with every declared port and no selector, so that
//! the endpoints published next to it are the only backends.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec as ServiceObjectSpec};

use crate::domain::ServiceSpec;

use super::owner::Owner;

pub fn desired_service(owner: &Owner, spec: &ServiceSpec) -> Service {
    Service {
        metadata: owner.child_meta(&owner.name, &[]),
        spec: Some(ServiceObjectSpec {
            cluster_ip: Some("None".to_owned()),
            type_: Some("ClusterIP".to_owned()),
            ports: Some(
                spec.ports()
                    .iter()
                    .map(|port| ServicePort {
                        name: Some(port.name.to_string()),
                        port: i32::from(port.number.get()),
                        protocol: Some(protocol(port.protocol).to_owned()),
                        app_protocol: port.app_protocol.clone(),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceObjectSpec::default()
        }),
        status: None,
    }
}

pub(super) fn protocol(protocol: crate::resource::Protocol) -> &'static str {
    match protocol {
        crate::resource::Protocol::Tcp => "TCP",
        crate::resource::Protocol::Udp => "UDP",
        crate::resource::Protocol::Sctp => "SCTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{owner, spec};

    #[test]
    fn service_is_headless_without_selector_and_lists_every_port() {
        let spec = spec(serde_json::json!({
            "ports": [
                {"name": "https", "port": 443, "appProtocol": "https"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ],
            "endpoints": [{"address": "192.0.2.1"}]
        }));
        let service = desired_service(&owner(), &spec);
        let object = service.spec.unwrap();
        assert_eq!(object.cluster_ip.as_deref(), Some("None"));
        assert!(object.selector.is_none());
        let ports: Vec<_> = object
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap(), p.app_protocol))
            .collect();
        assert_eq!(
            ports,
            [
                (
                    "https".to_owned(),
                    443,
                    "TCP".to_owned(),
                    Some("https".to_owned())
                ),
                ("dns".to_owned(), 53, "UDP".to_owned(), None)
            ]
        );
        let meta = service.metadata;
        assert_eq!(meta.name.as_deref(), Some("billing-db"));
        assert_eq!(meta.namespace.as_deref(), Some("payments"));
        assert_eq!(
            meta.labels.unwrap()["app.kubernetes.io/managed-by"],
            "extsvc"
        );
        assert_eq!(meta.owner_references.unwrap()[0].controller, Some(true));
    }
}
