//! The `ExternalService` document: one schema for the REST API, the CLI and the
//! Kubernetes custom resource. These are wire types (what users write); `crate::domain`
//! parses them into validated values.

mod document;
mod events;
mod health;
mod legacy;
mod spec;
mod status;
mod wait;

pub use document::{
    DocumentMetadata, DocumentStatus, ExternalServiceDocument, ExternalServiceList, ListMetadata,
    Origin,
};
pub use events::{MaintenanceList, MaintenanceRequest, MaintenanceWindow, ServiceEvent};
pub use health::{
    AddressHealth, CheckHealth, HealthHistory, HealthList, HealthState, HealthTransition,
    ProbeResult, ServiceHealth,
};
pub use legacy::{LegacyDocument, is_legacy};
pub use spec::{
    Endpoint, ExternalService, ExternalServiceSpec, GrpcCheck, HealthCheck, HttpCheck, HttpHeader,
    HttpScheme, Ingress, IngressPath, IngressRule, IngressTls, PathType, PortRef, Protocol,
    ServicePort, TcpCheck,
};
pub use status::{AddressStatus, Condition, ExternalServiceStatus};
pub use wait::{WaitFor, unmet};

/// API group of the custom resource.
pub const GROUP: &str = "extsvc.dev";
/// `apiVersion` of documents and custom resources.
pub const API_VERSION: &str = "extsvc.dev/v1alpha1";
/// `kind` of a single document.
pub const KIND: &str = "ExternalService";
/// `kind` of a list of documents.
pub const LIST_KIND: &str = "ExternalServiceList";
