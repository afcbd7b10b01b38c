//! The Ingress (networking.k8s.io/v1) in front of the Service, when the spec asks for one.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use crate::domain::ServiceSpec;
use crate::resource::PathType;

use super::owner::Owner;

pub fn desired_ingress(owner: &Owner, spec: &ServiceSpec) -> Option<Ingress> {
    let ingress = spec.ingress()?;
    let mut metadata = owner.child_meta(&owner.name, &[]);
    if !ingress.annotations.is_empty() {
        metadata.annotations = Some(ingress.annotations.clone());
    }
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: ingress.class_name.as_ref().map(ToString::to_string),
            rules: Some(
                ingress
                    .rules
                    .iter()
                    .map(|rule| IngressRule {
                        host: rule.host.clone(),
                        http: Some(HTTPIngressRuleValue {
                            paths: rule
                                .paths
                                .iter()
                                .map(|path| HTTPIngressPath {
                                    path: Some(path.path.clone()),
                                    path_type: path_type(path.path_type).to_owned(),
                                    backend: IngressBackend {
                                        service: Some(IngressServiceBackend {
                                            name: owner.name.clone(),
                                            port: Some(ServiceBackendPort {
                                                name: Some(path.port.to_string()),
                                                number: None,
                                            }),
                                        }),
                                        resource: None,
                                    },
                                })
                                .collect(),
                        }),
                    })
                    .collect(),
            ),
            tls: (!ingress.tls.is_empty()).then(|| {
                ingress
                    .tls
                    .iter()
                    .map(|tls| IngressTLS {
                        hosts: (!tls.hosts.is_empty()).then(|| tls.hosts.clone()),
                        secret_name: tls.secret_name.as_ref().map(ToString::to_string),
                    })
                    .collect()
            }),
            default_backend: None,
        }),
        status: None,
    })
}

fn path_type(path_type: PathType) -> &'static str {
    match path_type {
        PathType::Prefix => "Prefix",
        PathType::Exact => "Exact",
        PathType::ImplementationSpecific => "ImplementationSpecific",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{owner, spec};
    use serde_json::json;

    #[test]
    fn no_ingress_in_the_spec_means_no_ingress() {
        let spec = spec(
            json!({"ports": [{"name": "http", "port": 80}], "endpoints": [{"address": "192.0.2.1"}]}),
        );
        assert!(desired_ingress(&owner(), &spec).is_none());
    }

    #[test]
    fn ingress_routes_every_host_and_path_to_the_named_port() {
        let spec = spec(json!({
            "ports": [{"name": "http", "port": 80}, {"name": "api", "port": 8080}],
            "endpoints": [{"address": "192.0.2.1"}],
            "ingress": {
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/"},
                "rules": [
                    {"host": "a.example.com", "paths": [{"path": "/", "port": "http"}, {"path": "/api", "pathType": "Exact", "port": 8080}]},
                    {"paths": [{"port": "http"}]}
                ],
                "tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}]
            }
        }));

        let ingress = desired_ingress(&owner(), &spec).expect("an ingress");

        let annotations = ingress.metadata.annotations.unwrap();
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/rewrite-target"],
            "/"
        );
        let object = ingress.spec.unwrap();
        assert_eq!(object.ingress_class_name.as_deref(), Some("nginx"));
        let rules = object.rules.unwrap();
        assert_eq!(rules[0].host.as_deref(), Some("a.example.com"));
        let routes: Vec<_> = rules[0]
            .http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| {
                let backend = p.backend.service.as_ref().unwrap();
                (
                    p.path.clone().unwrap(),
                    p.path_type.clone(),
                    backend.name.clone(),
                    backend.port.clone().unwrap().name.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                (
                    "/".to_owned(),
                    "Prefix".to_owned(),
                    "billing-db".to_owned(),
                    "http".to_owned()
                ),
                (
                    "/api".to_owned(),
                    "Exact".to_owned(),
                    "billing-db".to_owned(),
                    "api".to_owned()
                )
            ],
            "a numeric port is routed by its declared name"
        );
        assert_eq!(rules[1].host, None);
        let tls = object.tls.unwrap();
        assert_eq!(tls[0].secret_name.as_deref(), Some("a-tls"));
    }
}
