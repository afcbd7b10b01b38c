//! Kubernetes: names shared by every writer, the CRD, the client, leader election, and
//! the mirror that carries registrations from PostgreSQL into `ExternalService`s.

pub mod client;
pub mod cluster_ranges;
pub mod crd;
pub mod leader;
pub mod mirror;

/// Label on every object we create.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "extsvc";
/// Label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller of an EndpointSlice, so others leave ours alone.
pub const ENDPOINT_SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const ENDPOINT_SLICE_MANAGED_BY: &str = "controller.extsvc.dev";
/// Label that keeps a cluster's EndpointSlice mirroring away from our legacy Endpoints.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Field manager of the controller: children and `ExternalService` status.
pub const CONTROLLER_MANAGER: &str = "extsvc-controller";
/// Field manager of the mirror: `ExternalService`s made from registrations.
pub const MIRROR_MANAGER: &str = "extsvc-mirror";
/// Annotation on an `ExternalService` made from a registration: the registration's uid.
/// One without it was made in the cluster (e.g. with kubectl).
pub const REGISTRATION_ANNOTATION: &str = "extsvc.dev/registration-uid";
/// Annotation on an `ExternalService` made from a registration: the installation (the
/// database) it came from. Another installation's resources are neither overwritten nor
/// deleted.
pub const INSTALLATION_ANNOTATION: &str = "extsvc.dev/installation";

/// An `Api` over one namespace, or over all of them.
pub fn scoped_api<K>(client: kube::Client, namespace: Option<&str>) -> kube::Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => kube::Api::namespaced(client, namespace),
        None => kube::Api::all(client),
    }
}
