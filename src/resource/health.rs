//! Health as the API shows it: per service, per address, per check.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the probe engine knows about one service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    pub namespace: String,
    pub name: String,
    pub ready_addresses: u32,
    pub total_addresses: u32,
    pub addresses: Vec<AddressHealth>,
    /// When the engine last changed this report (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// Readiness of an address or of one check on it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum HealthState {
    Ready,
    NotReady,
    /// Not probed enough yet to tell.
    #[default]
    Unknown,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressHealth {
    /// An IP, or a DNS name that resolves to nothing (then never ready).
    pub address: String,
    /// Ready when every check on the address is ready (or none applies to it).
    pub state: HealthState,
    /// Why an address is not probed, e.g. a DNS name that does not resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckHealth>,
    /// Out of rotation for maintenance (not ready whatever its checks say) until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<super::MaintenanceWindow>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckHealth {
    pub name: String,
    pub port: u16,
    pub state: HealthState,
    /// `success` or `failure`; absent before the first probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<ProbeResult>,
    /// Why the last probe failed, e.g. `connection refused`, `timeout after 1s`, `status 503`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<f64>,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProbeResult {
    Success,
    Failure,
}

/// One readiness change of one check on one address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthTransition {
    pub address: String,
    pub check: String,
    pub from: HealthState,
    pub to: HealthState,
    /// The probe result that caused it, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub time: String,
}

/// The last transitions of a service, newest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthHistory {
    pub namespace: String,
    pub name: String,
    pub transitions: Vec<HealthTransition>,
}

/// Services and their health, for `GET /api/v1/health`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthList {
    pub items: Vec<ServiceHealth>,
    /// Pass as `continue` to get the next page; absent on the last page.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}
