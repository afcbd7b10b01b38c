//! Documents in the shape of the original Go operator (`eso.crowdfox.com/v1alpha1`):
//! one `port`, a list of `ips`, `hosts` for an Ingress, Ingress annotations on the
//! resource itself and a kubelet-style `readinessProbe`. They convert into the current
//! shape; errors found afterwards are reported at the field the user actually wrote.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{
    DocumentMetadata, Endpoint, ExternalServiceDocument, ExternalServiceSpec, HealthCheck,
    HttpCheck, HttpHeader, HttpScheme, Ingress, IngressPath, IngressRule, PathType, PortRef,
    ServicePort, TcpCheck,
};

const LEGACY_GROUP: &str = "eso.crowdfox.com/";

/// Whether a parsed JSON body is in the original operator's shape: its `apiVersion`,
/// or a `spec` with `port`/`ips` and none of the current fields.
pub fn is_legacy(body: &serde_json::Value) -> bool {
    if let Some(api_version) = body.get("apiVersion").and_then(|v| v.as_str()) {
        return api_version.starts_with(LEGACY_GROUP);
    }
    let Some(spec) = body.get("spec").and_then(|s| s.as_object()) else {
        return false;
    };
    (spec.contains_key("port") || spec.contains_key("ips"))
        && !spec.contains_key("ports")
        && !spec.contains_key("endpoints")
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacyDocument {
    // Accepted and dropped: the converted document has its own.
    #[serde(default, rename = "apiVersion")]
    _api_version: Option<IgnoredAny>,
    #[serde(default, rename = "kind")]
    _kind: Option<IgnoredAny>,
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
    #[serde(default)]
    metadata: DocumentMetadata,
    spec: LegacySpec,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LegacySpec {
    port: i32,
    ips: Vec<String>,
    #[serde(default)]
    hosts: Vec<LegacyHost>,
    #[serde(default)]
    readiness_probe: Option<Probe>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LegacyHost {
    host: String,
    #[serde(default)]
    path: Option<String>,
}

/// The kubelet probe fields that make sense for an address outside the cluster.
/// `exec` and `tcpSocket.host` are left out on purpose: they are rejected as unknown.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Probe {
    #[serde(default)]
    http_get: Option<HttpGetAction>,
    #[serde(default)]
    tcp_socket: Option<TcpSocketAction>,
    #[serde(default)]
    initial_delay_seconds: Option<i32>,
    #[serde(default)]
    timeout_seconds: Option<i32>,
    #[serde(default)]
    period_seconds: Option<i32>,
    #[serde(default)]
    success_threshold: Option<i32>,
    #[serde(default)]
    failure_threshold: Option<i32>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HttpGetAction {
    port: PortRef,
    #[serde(default)]
    path: Option<String>,
    /// The original operator sent this as the `Host` header.
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    scheme: Option<HttpScheme>,
    #[serde(default)]
    http_headers: Vec<HttpHeader>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TcpSocketAction {
    port: PortRef,
}

/// Name given to the single port of a converted document.
fn legacy_port_name(port: i32) -> String {
    format!("port-{port}")
}

impl LegacyDocument {
    /// The same registration in the current shape.
    pub fn convert(self) -> ExternalServiceDocument {
        let LegacySpec {
            port,
            ips,
            hosts,
            readiness_probe,
        } = self.spec;
        let port_name = legacy_port_name(port);
        let mut metadata = self.metadata;

        let ingress = (!hosts.is_empty()).then(|| Ingress {
            class_name: None,
            // The original put the resource's annotations on its Ingress.
            annotations: std::mem::take(&mut metadata.annotations),
            rules: hosts
                .into_iter()
                .map(|host| IngressRule {
                    host: Some(host.host),
                    paths: vec![IngressPath {
                        path: match host.path {
                            Some(path) if !path.is_empty() => path,
                            _ => "/".to_owned(),
                        },
                        path_type: PathType::Prefix,
                        port: PortRef::Name(port_name.clone()),
                    }],
                })
                .collect(),
            tls: Vec::new(),
        });

        ExternalServiceDocument {
            api_version: super::API_VERSION.to_owned(),
            kind: super::KIND.to_owned(),
            metadata,
            spec: ExternalServiceSpec {
                ports: vec![ServicePort {
                    name: port_name,
                    port,
                    protocol: Default::default(),
                    app_protocol: None,
                }],
                endpoints: ips
                    .into_iter()
                    .map(|address| Endpoint {
                        address,
                        ports: None,
                        zone: None,
                    })
                    .collect(),
                health_checks: readiness_probe.map(convert_probe).into_iter().collect(),
                ingress,
            },
            status: None,
        }
    }

    /// Where a field of the converted document came from in the original one, so that
    /// errors name what the user wrote.
    pub fn original_pointer(converted: &str) -> String {
        const MAP: &[(&str, &str)] = &[
            ("/spec/ports/0/port", "/spec/port"),
            ("/spec/ports/0", "/spec/port"),
            ("/spec/ports", "/spec/port"),
            ("/spec/endpoints/*/address", "/spec/ips/*"),
            ("/spec/endpoints/*", "/spec/ips/*"),
            ("/spec/endpoints", "/spec/ips"),
            ("/spec/ingress/annotations", "/metadata/annotations"),
            ("/spec/ingress/rules/*/host", "/spec/hosts/*/host"),
            ("/spec/ingress/rules/*/paths/0/path", "/spec/hosts/*/path"),
            ("/spec/ingress/rules/*", "/spec/hosts/*"),
            ("/spec/ingress", "/spec/hosts"),
            (
                "/spec/healthChecks/0/http/headers",
                "/spec/readinessProbe/httpGet/httpHeaders",
            ),
            ("/spec/healthChecks/0/http", "/spec/readinessProbe/httpGet"),
            ("/spec/healthChecks/0/tcp", "/spec/readinessProbe/tcpSocket"),
            ("/spec/healthChecks/0", "/spec/readinessProbe"),
        ];
        for (from, to) in MAP {
            if let Some((index, rest)) = match_prefix(converted, from) {
                let mapped = match index {
                    Some(index) => to.replace('*', index),
                    None => (*to).to_owned(),
                };
                return format!("{mapped}{rest}");
            }
        }
        converted.to_owned()
    }
}

/// Matches `pointer` against `pattern` where one `*` stands for an array index; returns
/// the index and the unmatched rest (which starts at a segment boundary).
fn match_prefix<'a>(pointer: &'a str, pattern: &str) -> Option<(Option<&'a str>, &'a str)> {
    let (head, tail) = match pattern.split_once('*') {
        Some((head, tail)) => (head, Some(tail)),
        None => (pattern, None),
    };
    let after_head = pointer.strip_prefix(head)?;
    let (index, rest) = match tail {
        Some(tail) => {
            let end = after_head.find('/').unwrap_or(after_head.len());
            let (index, after_index) = after_head.split_at(end);
            (Some(index), after_index.strip_prefix(tail)?)
        }
        None => (None, after_head),
    };
    (rest.is_empty() || rest.starts_with('/')).then_some((index, rest))
}

fn convert_probe(probe: Probe) -> HealthCheck {
    let Probe {
        http_get,
        tcp_socket,
        initial_delay_seconds,
        timeout_seconds,
        period_seconds,
        success_threshold,
        failure_threshold,
    } = probe;
    HealthCheck {
        name: "readiness".to_owned(),
        http: http_get.map(|http| {
            // A `Host` entry among the headers is what kubelet users write for the
            // virtual host; the original also took `host` for it.
            let (host_headers, headers): (Vec<_>, Vec<_>) = http
                .http_headers
                .into_iter()
                .partition(|header| header.name.eq_ignore_ascii_case("host"));
            let scheme = http.scheme.unwrap_or_default();
            HttpCheck {
                port: http.port,
                path: http
                    .path
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".to_owned()),
                scheme,
                host: http
                    .host
                    .or_else(|| host_headers.into_iter().next().map(|h| h.value)),
                headers,
                expected_statuses: vec!["200-399".to_owned()],
                // Kubelet never verifies an HTTPS probe's certificate; a migrated probe
                // against a self-signed backend must keep passing.
                insecure_skip_verify: scheme == HttpScheme::Https,
            }
        }),
        tcp: tcp_socket.map(|tcp| TcpCheck { port: tcp.port }),
        grpc: None,
        period_seconds: period_seconds.unwrap_or(10),
        timeout_seconds: timeout_seconds.unwrap_or(1),
        initial_delay_seconds: initial_delay_seconds.unwrap_or(0),
        success_threshold: success_threshold.unwrap_or(1),
        failure_threshold: failure_threshold.unwrap_or(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> serde_json::Value {
        let path = format!("{}/tests/samples/legacy/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("sample readable");
        serde_saphyr::from_str(&text).expect("sample is YAML")
    }

    fn convert(value: serde_json::Value) -> ExternalServiceDocument {
        assert!(is_legacy(&value));
        serde_json::from_value::<LegacyDocument>(value)
            .expect("legacy shape")
            .convert()
    }

    #[test]
    fn complex_sample_becomes_one_port_two_endpoints_four_rules_and_an_http_check() {
        let document = convert(sample("complex.yaml"));
        let spec = &document.spec;
        assert_eq!(spec.ports.len(), 1);
        assert_eq!(
            (spec.ports[0].name.as_str(), spec.ports[0].port),
            ("port-80", 80)
        );
        let addresses: Vec<_> = spec.endpoints.iter().map(|e| e.address.as_str()).collect();
        assert_eq!(addresses, ["10.0.100.10", "10.0.100.11"]);
        let ingress = spec.ingress.as_ref().expect("hosts make an ingress");
        assert_eq!(ingress.rules.len(), 4);
        assert!(ingress.rules.iter().all(|r| r.paths[0].path == "/"));
        assert_eq!(
            ingress
                .annotations
                .get("traefik.ingress.kubernetes.io/preserve-host"),
            Some(&"true".to_owned())
        );
        assert!(document.metadata.annotations.is_empty());
        let check = &spec.health_checks[0];
        let http = check.http.as_ref().expect("httpGet becomes http");
        assert_eq!(http.port, PortRef::Number(8080));
        assert_eq!(http.path, "/healthcheck");
        assert_eq!(http.host.as_deref(), Some("www.mydomain.com"));
        assert_eq!(http.headers[0].name, "X-Forwarded-Proto");
        assert_eq!((check.success_threshold, check.failure_threshold), (2, 3));
        assert_eq!((check.period_seconds, check.timeout_seconds), (10, 2));
    }

    #[test]
    fn tcp_sample_without_hosts_has_no_ingress_and_a_tcp_check() {
        let document = convert(sample("tcp-probe.yaml"));
        assert!(document.spec.ingress.is_none());
        let check = &document.spec.health_checks[0];
        assert_eq!(
            check.tcp.as_ref().map(|t| &t.port),
            Some(&PortRef::Number(9090))
        );
        assert_eq!(check.initial_delay_seconds, 30);
    }

    #[test]
    fn https_probes_skip_verification_as_kubelet_does_and_http_ones_need_none() {
        let probe = |scheme: &str| {
            let mut value = sample("tcp-probe.yaml");
            value["spec"]["readinessProbe"] =
                serde_json::json!({"httpGet": {"port": 8443, "path": "/ready", "scheme": scheme}});
            let document = convert(value);
            let http = document.spec.health_checks[0].http.clone();
            http.expect("httpGet becomes http")
        };
        let https = probe("HTTPS");
        assert_eq!(
            (https.scheme, https.insecure_skip_verify),
            (HttpScheme::Https, true)
        );
        let http = probe("HTTP");
        assert_eq!(
            (http.scheme, http.insecure_skip_verify),
            (HttpScheme::Http, false)
        );
    }

    #[test]
    fn current_shape_is_not_legacy() {
        let value = serde_json::json!({"spec": {"ports": [], "endpoints": []}});
        assert!(!is_legacy(&value));
        let value = serde_json::json!({"apiVersion": "extsvc.dev/v1alpha1", "spec": {"port": 80}});
        assert!(!is_legacy(&value));
    }

    #[test]
    fn errors_in_converted_fields_point_at_the_original_fields() {
        let cases = [
            ("/spec/ports/0/port", "/spec/port"),
            ("/spec/endpoints/1/address", "/spec/ips/1"),
            ("/spec/ingress/rules/3/host", "/spec/hosts/3/host"),
            ("/spec/ingress/rules/2/paths/0/path", "/spec/hosts/2/path"),
            (
                "/spec/ingress/annotations/a~1b",
                "/metadata/annotations/a~1b",
            ),
            (
                "/spec/healthChecks/0/http/headers/1/name",
                "/spec/readinessProbe/httpGet/httpHeaders/1/name",
            ),
            (
                "/spec/healthChecks/0/timeoutSeconds",
                "/spec/readinessProbe/timeoutSeconds",
            ),
            ("/metadata/name", "/metadata/name"),
        ];
        for (converted, original) in cases {
            assert_eq!(
                LegacyDocument::original_pointer(converted),
                original,
                "{converted}"
            );
        }
    }
}
