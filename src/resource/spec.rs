//! `spec` of an `ExternalService`, as users write it.
//!
//! Defaults are filled in by deserialisation, so a document read back shows every
//! value in effect. Structural limits live in the schema (CRD and OpenAPI); rules that
//! span fields are checked by `crate::domain`.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use super::ExternalServiceStatus;

/// A backend outside the cluster: the ports it serves, the addresses it serves them
/// on, how to tell whether an address is healthy, and an optional Ingress in front.
// clippy reads the `type_ = "string"` of two printer columns as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema, ToSchema)]
#[kube(
    group = "extsvc.dev",
    version = "v1alpha1",
    kind = "ExternalService",
    namespaced,
    shortname = "exsvc",
    status = "ExternalServiceStatus",
    doc = "A backend outside the cluster, made usable inside it as a Service",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(name = "Ports", type_ = "string", json_path = ".status.ports"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!has(self.healthChecks) || self.healthChecks.all(c, [has(c.http) ? c.http.port : (has(c.tcp) ? c.tcp.port : c.grpc.port)].all(p, type(p) == int || self.ports.exists(q, q.name == p)))").message("a health check's port must name a port in spec.ports or be a number")
)]
pub struct ExternalServiceSpec {
    /// Named ports the backend serves. At least one.
    #[schema(min_items = 1, max_items = 100)]
    #[schemars(length(min = 1, max = 100), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<ServicePort>,
    /// Addresses of the backend. At least one, no duplicates.
    #[schema(min_items = 1, max_items = 1000)]
    #[schemars(length(min = 1, max = 1000), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["address"]))]
    pub endpoints: Vec<Endpoint>,
    /// Checks that must all pass for an address to be ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub health_checks: Vec<HealthCheck>,
    /// An Ingress routing to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
}

/// One named port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// IANA service name: lowercase letters, digits and `-`, at most 15 characters.
    #[schema(
        example = "https",
        min_length = 1,
        max_length = 15,
        pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
    )]
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Port number, 1-65535.
    #[schema(example = 443, minimum = 1, maximum = 65535)]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default)]
    pub protocol: Protocol,
    /// Application protocol, e.g. `http`, `kubernetes.io/h2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// Transport protocol of a port.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema, ToSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// One address of the backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// An IPv4 address, an IPv6 address or a DNS name.
    #[schema(example = "192.0.2.10", min_length = 1, max_length = 253)]
    #[schemars(length(min = 1, max = 253))]
    pub address: String,
    /// Names of the ports this address serves; all ports when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 100)]
    #[schemars(length(min = 1, max = 100))]
    pub ports: Option<Vec<String>>,
    /// Topology zone of the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// A check run against every address that serves its port. Exactly one of `http`,
/// `tcp` and `grpc`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("[has(self.http), has(self.tcp), has(self.grpc)].filter(x, x).size() == 1").message("must set exactly one of http, tcp and grpc"),
    validation = Rule::new("self.timeoutSeconds <= self.periodSeconds").message("timeoutSeconds must not be above periodSeconds")
)]
pub struct HealthCheck {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcCheck>,
    /// Seconds between two probes.
    #[serde(default = "default_period_seconds")]
    #[schema(default = 10, minimum = 1, maximum = 3600)]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: i32,
    /// Seconds before a probe counts as failed; not above `periodSeconds`, at most 60 (a
    /// probe holds one of its service's share of the probes that run at once).
    #[serde(default = "default_timeout_seconds")]
    #[schema(default = 1, minimum = 1, maximum = 60)]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: i32,
    /// Seconds to wait before the first probe of a new address.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3600)]
    #[schemars(range(min = 0, max = 3600))]
    pub initial_delay_seconds: i32,
    /// Consecutive successes that make a not-ready address ready.
    #[serde(default = "default_success_threshold")]
    #[schema(default = 1, minimum = 1, maximum = 100)]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: i32,
    /// Consecutive failures that make a ready address not ready.
    #[serde(default = "default_failure_threshold")]
    #[schema(default = 3, minimum = 1, maximum = 100)]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
}

fn default_period_seconds() -> i32 {
    10
}
fn default_timeout_seconds() -> i32 {
    1
}
fn default_success_threshold() -> i32 {
    1
}
fn default_failure_threshold() -> i32 {
    3
}

/// An HTTP(S) GET that passes on an expected status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!has(self.insecureSkipVerify) || !self.insecureSkipVerify || (has(self.scheme) && self.scheme == 'HTTPS')").message("insecureSkipVerify applies only to scheme HTTPS")
)]
pub struct HttpCheck {
    pub port: PortRef,
    #[serde(default = "default_path")]
    #[schema(default = "/")]
    pub path: String,
    #[serde(default)]
    pub scheme: HttpScheme,
    /// `Host` header, and the TLS server name for HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    /// Status codes or ranges (`"200"`, `"200-399"`) that count as success.
    #[serde(default = "default_expected_statuses")]
    #[schema(default = json!(["200-399"]))]
    pub expected_statuses: Vec<String>,
    /// Accept any server certificate (HTTPS only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_skip_verify: bool,
}

fn default_path() -> String {
    "/".to_owned()
}
fn default_expected_statuses() -> Vec<String> {
    vec!["200-399".to_owned()]
}
fn is_false(value: &bool) -> bool {
    !value
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema, ToSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpScheme {
    #[default]
    Http,
    Https,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    /// A header name (RFC 9110 token); not `Host` (use `host`) nor a framing or
    /// hop-by-hop header (`Content-Length`, `Transfer-Encoding`, `Connection`, ...).
    #[schema(min_length = 1, max_length = 128)]
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Printable ASCII, spaces and tabs.
    #[schema(max_length = 4096)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// A TCP connect.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpCheck {
    pub port: PortRef,
}

/// A `grpc.health.v1.Health/Check` call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcCheck {
    pub port: PortRef,
    /// Service name sent in the request; the server's overall health when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// A port given by its name in `spec.ports` or by number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortRef {
    Number(i64),
    Name(String),
}

impl Serialize for PortRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(number) => serializer.serialize_i64(*number),
            Self::Name(name) => serializer.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PortRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a port number or a port name")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortRef, E> {
                Ok(PortRef::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortRef, E> {
                i64::try_from(v)
                    .map(PortRef::Number)
                    .map_err(|_| E::custom("port number out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortRef, E> {
                Ok(PortRef::Name(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for PortRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A port given by its name in spec.ports or by number.",
            "x-kubernetes-int-or-string": true,
            // Each applies to its own type: a number is 1-65535, a name is not empty.
            "minimum": 1,
            "maximum": 65535,
            "minLength": 1,
        })
    }
}

impl utoipa::PartialSchema for PortRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(65535)),
            )
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("A port given by its name in spec.ports or by number."))
            .into()
    }
}

impl ToSchema for PortRef {}

/// An Ingress (networking.k8s.io/v1) in front of the backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Annotations put on the Ingress object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[schemars(length(min = 1, max = 100))]
    pub rules: Vec<IngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<IngressTls>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// Host name (`*.` wildcards allowed); every host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[schemars(length(min = 1))]
    pub paths: Vec<IngressPath>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressPath {
    #[serde(default = "default_path")]
    #[schema(default = "/")]
    pub path: String,
    #[serde(default)]
    pub path_type: PathType,
    /// The port of this service that receives the traffic.
    pub port: PortRef,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema, ToSchema,
)]
pub enum PathType {
    #[default]
    Prefix,
    Exact,
    ImplementationSpecific,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressTls {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}
