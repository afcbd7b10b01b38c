//! The whole document as the API reads and writes it: the same shape as the custom
//! resource, so one YAML file works with the API, the CLI and kubectl.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{API_VERSION, ExternalServiceSpec, ExternalServiceStatus, KIND, LIST_KIND};

/// An `ExternalService` registration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalServiceDocument {
    #[serde(default = "api_version")]
    #[schema(example = "extsvc.dev/v1alpha1")]
    pub api_version: String,
    #[serde(default = "kind")]
    #[schema(example = "ExternalService")]
    pub kind: String,
    #[serde(default)]
    pub metadata: DocumentMetadata,
    pub spec: ExternalServiceSpec,
    /// Set by the server; ignored on input so that a document read back can be sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub status: Option<DocumentStatus>,
}

fn api_version() -> String {
    API_VERSION.to_owned()
}
fn kind() -> String {
    KIND.to_owned()
}

/// Object metadata, as in Kubernetes. `uid`, `generation`, `resourceVersion` and
/// `creationTimestamp` are set by the server and ignored on input.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentMetadata {
    /// DNS-1123 label; on PUT it defaults to the name in the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "billing-db")]
    pub name: Option<String>,
    /// DNS-1123 label; defaults to the namespace in the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "payments")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub uid: Option<String>,
    /// Bumped only when `spec` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub generation: Option<i64>,
    /// Bumped on every change; the `ETag` of the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only, example = "2026-11-27T22:50:29Z")]
    pub creation_timestamp: Option<String>,
}

/// What the server knows about a registration beyond what was written: where it came
/// from, whether it reached the cluster, and the status the controller published there.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentStatus {
    /// Where the registration was made; `cluster` ones are read-only here. Defaults on
    /// input, so that a resource exported with kubectl (whose status has none) is
    /// accepted; the whole status is ignored there.
    #[serde(default)]
    pub origin: Origin,
    /// The `generation` last written to the cluster as an `ExternalService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrored_generation: Option<i64>,
    /// Why the last attempt to write it to the cluster failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_error: Option<String>,
    /// The status of the `ExternalService` in the cluster.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ExternalServiceStatus>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Registered through this API; PostgreSQL holds the spec.
    #[default]
    Api,
    /// Created directly in Kubernetes (e.g. with kubectl).
    Cluster,
}

/// One page of registrations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalServiceList {
    #[schema(example = "extsvc.dev/v1alpha1")]
    pub api_version: String,
    #[schema(example = "ExternalServiceList")]
    pub kind: String,
    pub metadata: ListMetadata,
    pub items: Vec<ExternalServiceDocument>,
}

impl ExternalServiceList {
    pub fn new(items: Vec<ExternalServiceDocument>, continue_token: Option<String>) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: LIST_KIND.to_owned(),
            metadata: ListMetadata { continue_token },
            items,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
pub struct ListMetadata {
    /// Pass as `continue` to get the next page; absent on the last page.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}
