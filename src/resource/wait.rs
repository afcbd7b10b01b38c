//! What waiting for a registration means, for the API's long polls and the CLI alike.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ExternalServiceDocument, HealthState, Origin, ServiceHealth};

/// What to wait for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitFor {
    /// In the cluster and reconciled, at the current generation.
    Synced,
    /// Synced, and every address ready (or at least `minReady` of them).
    Ready,
    /// Gone.
    Deleted,
}

impl WaitFor {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "synced" => Some(Self::Synced),
            "ready" => Some(Self::Ready),
            "deleted" | "delete" => Some(Self::Deleted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "synced",
            Self::Ready => "ready",
            Self::Deleted => "deleted",
        }
    }
}

/// Why `document` does not meet `condition` yet, one reason a line; empty when it does.
/// `min_ready` is the addresses `ready` needs, all of them when `None`. With `health`,
/// an address that is not ready says what its checks found.
pub fn unmet(
    document: &ExternalServiceDocument,
    condition: WaitFor,
    min_ready: Option<u32>,
    health: Option<&ServiceHealth>,
) -> Vec<String> {
    let generation = document.metadata.generation.unwrap_or_default();
    let Some(status) = &document.status else {
        return vec!["no status yet".to_owned()];
    };
    let mut reasons = Vec::new();
    match condition {
        WaitFor::Deleted => return vec!["still registered".to_owned()],
        WaitFor::Synced | WaitFor::Ready => {}
    }
    if status.origin == Origin::Api && status.mirrored_generation != Some(generation) {
        reasons.push(match &status.mirror_error {
            Some(error) => format!("generation {generation} is not in the cluster: {error}"),
            None => format!("generation {generation} is not in the cluster yet"),
        });
    }
    let Some(cluster) = &status.cluster else {
        reasons.push("the controller has not reported on it yet".to_owned());
        return reasons;
    };
    if cluster.observed_generation != Some(generation) {
        reasons.push(format!(
            "the controller has not reconciled generation {generation} yet"
        ));
        return reasons;
    }
    match cluster.conditions.iter().find(|c| c.type_ == "Reconciled") {
        Some(reconciled) if reconciled.status == "True" => {}
        Some(reconciled) => reasons.push(format!(
            "not reconciled: {}: {}",
            reconciled.reason, reconciled.message
        )),
        None => reasons.push("not reconciled yet".to_owned()),
    }
    if condition == WaitFor::Ready {
        let ready = u32::try_from(cluster.ready_addresses).unwrap_or(0);
        let total = u32::try_from(cluster.total_addresses).unwrap_or(0);
        let wanted = min_ready.unwrap_or(total);
        if ready < wanted {
            reasons.push(format!(
                "{ready} of {total} addresses ready, {wanted} wanted"
            ));
            for address in cluster.addresses.iter().filter(|a| !a.ready) {
                let why = address
                    .message
                    .clone()
                    .or_else(|| health.and_then(|h| checks_found(h, &address.address)))
                    .unwrap_or_else(|| "not ready".to_owned());
                reasons.push(format!("{}: {why}", address.address));
            }
        }
    }
    reasons
}

/// What the checks of `address` found that keeps it from being ready: each failing
/// check's last error, or that none has been probed yet.
fn checks_found(health: &ServiceHealth, address: &str) -> Option<String> {
    let checks = &health
        .addresses
        .iter()
        .find(|a| a.address == address)?
        .checks;
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.state != HealthState::Ready)
        .map(|c| match (&c.last_error, c.state) {
            (Some(error), _) => format!("{}: {error}", c.name),
            (None, HealthState::Unknown) => format!("{}: not probed yet", c.name),
            (None, _) => format!("{}: not ready", c.name),
        })
        .collect();
    (!failing.is_empty()).then(|| failing.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(status: serde_json::Value) -> ExternalServiceDocument {
        serde_json::from_value(json!({
            "apiVersion": "extsvc.dev/v1alpha1", "kind": "ExternalService",
            "metadata": {"name": "db", "namespace": "ns", "generation": 2},
            "spec": {"ports": [{"name": "pg", "port": 5432}], "endpoints": []},
            "status": status,
        }))
        .unwrap()
    }

    fn reconciled(observed: i64, ready: i32, total: i32) -> serde_json::Value {
        // The cluster's status is flattened into the document's.
        json!({
            "origin": "api", "mirroredGeneration": 2,
            "observedGeneration": observed,
            "conditions": [{"type": "Reconciled", "status": "True", "reason": "ChildrenApplied", "lastTransitionTime": "2026-12-01T00:00:00Z"}],
            "readyAddresses": ready, "totalAddresses": total,
            "addresses": [
                {"address": "192.0.2.1", "ready": true},
                {"address": "192.0.2.2", "ready": false, "message": "maintenance: kernel upgrade"}
            ]
        })
    }

    #[test]
    fn synced_needs_the_current_generation_mirrored_and_reconciled() {
        let not_mirrored = document(json!({"origin": "api", "mirroredGeneration": 1}));
        assert_eq!(
            unmet(&not_mirrored, WaitFor::Synced, None, None),
            [
                "generation 2 is not in the cluster yet",
                "the controller has not reconciled generation 2 yet"
            ]
        );
        let old = document(reconciled(1, 2, 2));
        assert_eq!(
            unmet(&old, WaitFor::Synced, None, None),
            ["the controller has not reconciled generation 2 yet"]
        );
        assert!(unmet(&document(reconciled(2, 1, 2)), WaitFor::Synced, None, None).is_empty());
    }

    #[test]
    fn ready_needs_every_address_or_the_minimum_asked() {
        let half = document(reconciled(2, 1, 2));
        assert_eq!(
            unmet(&half, WaitFor::Ready, None, None),
            [
                "1 of 2 addresses ready, 2 wanted",
                "192.0.2.2: maintenance: kernel upgrade"
            ]
        );
        assert!(unmet(&half, WaitFor::Ready, Some(1), None).is_empty());
        assert!(unmet(&document(reconciled(2, 2, 2)), WaitFor::Ready, None, None).is_empty());
    }

    #[test]
    fn a_failed_reconcile_says_why() {
        let mut status = reconciled(2, 0, 0);
        status["conditions"][0] = json!({"type": "Reconciled", "status": "False", "reason": "NameConflict", "message": "Service ns/db is not ours", "lastTransitionTime": "2026-12-01T00:00:00Z"});
        assert_eq!(
            unmet(&document(status), WaitFor::Synced, None, None),
            ["not reconciled: NameConflict: Service ns/db is not ours"]
        );
    }

    #[test]
    fn an_address_not_ready_says_what_its_checks_found() {
        let mut status = reconciled(2, 1, 3);
        status["addresses"] = json!([
            {"address": "192.0.2.1", "ready": true},
            {"address": "192.0.2.2", "ready": false},
            {"address": "192.0.2.3", "ready": false}
        ]);
        let health: ServiceHealth = serde_json::from_value(json!({
            "namespace": "ns", "name": "db", "readyAddresses": 1, "totalAddresses": 3,
            "addresses": [
                {"address": "192.0.2.2", "state": "notReady", "checks": [
                    {"name": "web", "port": 443, "state": "notReady", "lastError": "connection refused", "consecutiveSuccesses": 0, "consecutiveFailures": 3},
                    {"name": "tcp", "port": 5432, "state": "ready", "consecutiveSuccesses": 3, "consecutiveFailures": 0}
                ]},
                {"address": "192.0.2.3", "state": "unknown", "checks": [
                    {"name": "web", "port": 443, "state": "unknown", "consecutiveSuccesses": 0, "consecutiveFailures": 0}
                ]}
            ]
        }))
        .unwrap();
        assert_eq!(
            unmet(&document(status), WaitFor::Ready, None, Some(&health)),
            [
                "1 of 3 addresses ready, 3 wanted",
                "192.0.2.2: web: connection refused",
                "192.0.2.3: web: not probed yet"
            ]
        );
    }
}
