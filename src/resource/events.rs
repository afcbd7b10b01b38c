//! What the event streams and maintenance endpoints exchange.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One thing that happened to a registration, as an event stream carries it (the
/// `data:` of a server-sent event whose `event:` is `type` and whose `id:` is `id`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    /// Where the event stands in the stream; send it back as `Last-Event-ID`.
    #[schema(example = "7514-210")]
    pub id: String,
    /// When it was recorded (RFC 3339).
    pub time: String,
    pub namespace: String,
    pub name: String,
    /// `Registered`, `SpecChanged`, `Mirrored`, `MirrorFailed`, `Reconciled`,
    /// `NameConflict`, `ReconcileFailed`, `AddressReady`, `AddressNotReady`,
    /// `AddressRemoved`, `CheckReady`, `CheckNotReady`, `MaintenanceStarted`,
    /// `MaintenanceEnded`, `Deleted` or `RemovedFromCluster`.
    #[serde(rename = "type")]
    #[schema(example = "AddressReady")]
    pub type_: String,
    /// The generation it concerns, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// What the type says more: the address, the check, the reason, the error.
    #[schema(value_type = Object, example = json!({"address": "192.0.2.10", "ready": true}))]
    pub detail: serde_json::Value,
}

/// Take addresses out of rotation until a time, without touching the spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// IPs or DNS names among the service's endpoints (a name covers every IP it
    /// resolves to); 1-100.
    #[schema(example = json!(["192.0.2.10"]))]
    pub addresses: Vec<String>,
    /// Why, as people will read it in status, health and events; 1-256 characters.
    #[schema(example = "kernel upgrade")]
    pub reason: String,
    /// When the addresses go back into rotation by themselves (RFC 3339), within 30 days.
    #[schema(example = "2026-12-01T18:00:00Z")]
    pub until: String,
}

/// One address out of rotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    #[schema(example = "192.0.2.10")]
    pub address: String,
    #[schema(example = "kernel upgrade")]
    pub reason: String,
    /// RFC 3339.
    pub since: String,
    /// RFC 3339.
    #[schema(example = "2026-12-01T18:00:00Z")]
    pub until: String,
    /// Who started it.
    pub by: String,
}

/// The maintenance windows of a service that are in force.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceList {
    pub namespace: String,
    pub name: String,
    pub items: Vec<MaintenanceWindow>,
}
