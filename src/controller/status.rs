//! The status the controller publishes on the `ExternalService`.

use crate::domain::ServiceSpec;
use crate::resource::{AddressStatus, Condition, ExternalServiceStatus};

use super::addresses::Published;

pub const READY: &str = "Ready";
pub const RECONCILED: &str = "Reconciled";

/// How far the last reconcile got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every child matches the spec.
    Applied,
    /// Applying a child failed; the message says which and why.
    Failed(String),
    /// Someone else's object holds a child's name; the message says which.
    NameConflict(String),
}

/// The status for a valid spec. Conditions keep their transition time while their
/// status does not change, so an unchanged world yields an identical status.
pub fn desired_status(
    previous: Option<&ExternalServiceStatus>,
    generation: Option<i64>,
    spec: &ServiceSpec,
    published: &Published,
    outcome: &Outcome,
    now: &str,
) -> ExternalServiceStatus {
    let addresses = address_statuses(published);
    let ready = addresses.iter().filter(|a| a.ready).count();
    let total = addresses.len();
    let checked = !spec.health_checks().is_empty();
    let (status, reason, message) = ready_condition(ready, total, checked);
    let ready_condition = condition(previous, READY, status, reason, message, generation, now);
    let (status, reason, message) = reconciled_condition(outcome);
    let reconciled = condition(
        previous, RECONCILED, status, reason, message, generation, now,
    );
    ExternalServiceStatus {
        observed_generation: generation,
        conditions: vec![ready_condition, reconciled],
        ready: Some(format!("{ready}/{total}")),
        ports: Some(ports_summary(spec)),
        ready_addresses: i32::try_from(ready).unwrap_or(i32::MAX),
        total_addresses: i32::try_from(total).unwrap_or(i32::MAX),
        addresses,
    }
}

/// Every published IP, then every name that resolves to nothing (never ready).
fn address_statuses(published: &Published) -> Vec<AddressStatus> {
    let ips = published.addresses.iter().map(|a| AddressStatus {
        address: a.ip.to_string(),
        resolved_from: a.resolved_from.as_ref().map(ToString::to_string),
        ready: a.ready,
        message: a.note.clone(),
    });
    let unresolved = published.unresolved.iter().map(|u| AddressStatus {
        address: u.name.to_string(),
        resolved_from: None,
        ready: false,
        message: Some(u.reason.clone()),
    });
    ips.chain(unresolved).collect()
}

/// `Ready`: true while any address is; its message counts them.
fn ready_condition(
    ready: usize,
    total: usize,
    checked: bool,
) -> (&'static str, &'static str, String) {
    let (status, reason) = match ready {
        0 => ("False", "NoAddressReady"),
        n if n == total => ("True", "AllAddressesReady"),
        _ => ("True", "SomeAddressesReady"),
    };
    let message = if checked && ready < total {
        format!(
            "{ready} of {total} addresses ready; the others have not passed their health checks"
        )
    } else {
        format!("{ready} of {total} addresses ready")
    };
    (status, reason, message)
}

/// `Reconciled`: whether every child was applied.
fn reconciled_condition(outcome: &Outcome) -> (&'static str, &'static str, String) {
    match outcome {
        Outcome::Applied => (
            "True",
            "ChildrenApplied",
            "Service, EndpointSlices, Endpoints and Ingress match the spec".to_owned(),
        ),
        Outcome::Failed(message) => ("False", "ApplyFailed", message.clone()),
        Outcome::NameConflict(message) => ("False", "NameConflict", message.clone()),
    }
}

/// The ports as `kubectl get` shows them: `https:443/TCP,metrics:9100/TCP`.
fn ports_summary(spec: &ServiceSpec) -> String {
    spec.ports()
        .iter()
        .map(|p| {
            format!(
                "{}:{}/{}",
                p.name,
                p.number,
                super::service::protocol(p.protocol)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The status for a spec that does not validate: the children stay as they were, and
/// `Reconciled` says why.
pub fn invalid_status(
    previous: Option<&ExternalServiceStatus>,
    generation: Option<i64>,
    message: String,
    now: &str,
) -> ExternalServiceStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let reconciled = condition(
        previous,
        RECONCILED,
        "False",
        "InvalidSpec",
        message,
        generation,
        now,
    );
    status.conditions.retain(|c| c.type_ != RECONCILED);
    status.conditions.push(reconciled);
    status.observed_generation = generation;
    status
}

fn condition(
    previous: Option<&ExternalServiceStatus>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// Addresses whose readiness changed since `previous`, with their new readiness. A new
/// address is not a change: its first state is in the status, not worth an event.
pub fn readiness_changes(
    previous: Option<&ExternalServiceStatus>,
    current: &ExternalServiceStatus,
) -> Vec<(String, bool)> {
    current
        .addresses
        .iter()
        .filter(|now| {
            let before =
                previous.and_then(|p| p.addresses.iter().find(|a| a.address == now.address));
            before.is_some_and(|before| before.ready != now.ready)
        })
        .map(|a| (a.address.clone(), a.ready))
        .collect()
}

/// The addresses an Event names one by one; the rest are counted.
const EVENT_ADDRESSES: usize = 10;

/// One Event for all the readiness changes of a reconcile, however many addresses flip:
/// whether any went not ready (a warning), and which, e.g. `not ready: 192.0.2.1;
/// ready: 192.0.2.2 and 3 more`.
pub fn readiness_event(changes: &[(String, bool)]) -> Option<(bool, String)> {
    if changes.is_empty() {
        return None;
    }
    let list = |ready: bool| {
        let addresses: Vec<&str> = changes
            .iter()
            .filter(|(_, r)| *r == ready)
            .map(|(address, _)| address.as_str())
            .collect();
        let named = addresses.len().min(EVENT_ADDRESSES);
        let mut text = addresses[..named].join(", ");
        if addresses.len() > named {
            text.push_str(&format!(" and {} more", addresses.len() - named));
        }
        (!addresses.is_empty()).then(|| {
            let state = if ready { "ready" } else { "not ready" };
            format!("{state}: {text}")
        })
    };
    let lost = list(false);
    let warning = lost.is_some();
    let note = [lost, list(true)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
    Some((warning, note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::addresses::{Health, Resolutions, publish};
    use crate::controller::fixtures::spec;
    use serde_json::json;

    #[test]
    fn many_flips_make_one_event() {
        assert_eq!(readiness_event(&[]), None);
        assert_eq!(
            readiness_event(&[("192.0.2.1".to_owned(), true)]),
            Some((false, "ready: 192.0.2.1".to_owned()))
        );
        let mut changes: Vec<(String, bool)> =
            (1..=25).map(|i| (format!("192.0.2.{i}"), false)).collect();
        changes.push(("2001:db8::1".to_owned(), true));
        let (warning, note) = readiness_event(&changes).unwrap();
        assert!(warning);
        assert_eq!(
            note,
            "not ready: 192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, 192.0.2.5, 192.0.2.6, \
             192.0.2.7, 192.0.2.8, 192.0.2.9, 192.0.2.10 and 15 more; ready: 2001:db8::1"
        );
    }

    fn status_with(
        health: &Health,
        previous: Option<&ExternalServiceStatus>,
        now: &str,
    ) -> ExternalServiceStatus {
        let spec = spec(json!({
            "ports": [{"name": "https", "port": 443}, {"name": "dns", "port": 53, "protocol": "UDP"}],
            "endpoints": [{"address": "192.0.2.1"}, {"address": "192.0.2.2"}, {"address": "nowhere.example.com"}],
            "healthChecks": [{"name": "up", "tcp": {"port": "https"}}]
        }));
        let published = publish(&spec, &Resolutions::new(), health);
        desired_status(previous, Some(3), &spec, &published, &Outcome::Applied, now)
    }

    #[test]
    fn status_counts_ready_addresses_and_lists_every_address() {
        let health = Health::from([("192.0.2.1".parse().unwrap(), true)]);
        let status = status_with(&health, None, "2026-01-01T00:00:00Z");
        assert_eq!(status.ready.as_deref(), Some("1/3"));
        assert_eq!(status.ports.as_deref(), Some("https:443/TCP,dns:53/UDP"));
        assert_eq!((status.ready_addresses, status.total_addresses), (1, 3));
        assert_eq!(status.observed_generation, Some(3));
        let unresolved = status
            .addresses
            .iter()
            .find(|a| a.address == "nowhere.example.com")
            .unwrap();
        assert_eq!(unresolved.message.as_deref(), Some("not resolved yet"));
        let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "SomeAddressesReady")
        );
    }

    #[test]
    fn an_unchanged_world_gives_an_identical_status() {
        let health = Health::from([("192.0.2.1".parse().unwrap(), true)]);
        let first = status_with(&health, None, "2026-01-01T00:00:00Z");
        let second = status_with(&health, Some(&first), "2026-01-01T00:05:00Z");
        assert_eq!(first, second);
    }

    #[test]
    fn a_condition_changing_status_gets_a_new_transition_time() {
        let first = status_with(&Health::new(), None, "2026-01-01T00:00:00Z");
        let health = Health::from([("192.0.2.1".parse().unwrap(), true)]);
        let second = status_with(&health, Some(&first), "2026-01-01T00:05:00Z");
        let ready = |s: &ExternalServiceStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == READY)
                .unwrap()
                .clone()
        };
        assert_eq!(ready(&first).status, "False");
        assert_eq!(ready(&second).last_transition_time, "2026-01-01T00:05:00Z");
        assert_eq!(
            readiness_changes(Some(&first), &second),
            [("192.0.2.1".to_owned(), true)]
        );
    }

    #[test]
    fn an_invalid_spec_keeps_the_last_addresses_and_says_why() {
        let previous = status_with(&Health::new(), None, "2026-01-01T00:00:00Z");
        let status = invalid_status(
            Some(&previous),
            Some(4),
            "/spec/ports/0/port: must be between 1 and 65535".to_owned(),
            "t",
        );
        let reconciled = status
            .conditions
            .iter()
            .find(|c| c.type_ == RECONCILED)
            .unwrap();
        assert_eq!(
            (reconciled.status.as_str(), reconciled.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert_eq!(status.addresses, previous.addresses);
        assert_eq!(status.observed_generation, Some(4));
    }
}
