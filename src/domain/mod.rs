//! Validated values. Wire documents (`crate::resource`) are parsed into these types;
//! a value of one of them is known to be valid, so nothing downstream re-checks it.

mod address;
mod health_check;
mod ingress;
mod invalid;
mod label_selector;
mod metadata;
mod name;
mod policy;
mod port;
mod registration;
mod spec;

pub use address::{Address, Endpoint, check_routable};
pub use health_check::{HealthCheck, HttpProbe, Probe, StatusRanges, Timing, TlsOptions};
pub use ingress::{Ingress, IngressPath, IngressRule, IngressTls};
pub use invalid::{Errors, FieldError, FirstSeen, Invalid, Pointer, ValidationErrors};
pub use label_selector::{Conjuncts, LabelSelector, Operator, Requirement};
pub use metadata::ServiceKey;
pub use name::{DnsLabel, DnsSubdomain, LabelValue, PortName, QualifiedName, ServiceName};
pub use policy::{
    AddressPolicy, IngressPolicy, MAX_HOST_PATTERNS, Policies, check_host_pattern,
    check_ingress_hosts, cidrs,
};
pub use port::{CheckPort, PortNumber, ServicePort};
pub use registration::Registration;
pub use spec::ServiceSpec;
