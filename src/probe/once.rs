//! One probe of every check on every address of a spec, for a dry run: a pipeline learns
//! that a backend is unreachable before it registers it. Nothing is kept; thresholds do
//! not apply (one success reads ready, one failure not ready).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;

use crate::domain::{Address, ServiceKey, ServiceSpec};
use crate::resource::{AddressHealth, CheckHealth, HealthState, ProbeResult, ServiceHealth};

use super::check::{self, Dialer};
use super::state::address_state;
use super::target::{ProbedAddress, probe_targets};

/// The longest a DNS name may take to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Probes running at once for one dry run.
const AT_ONCE: usize = 32;
/// IPs of one DNS name probed, at most.
const IPS_PER_NAME: usize = 16;
/// Addresses probed, at most (as many as a service publishes); the rest are reported.
const MAX_ADDRESSES: usize = 1000;
/// DNS names looked up at once.
const LOOKUPS_AT_ONCE: usize = 8;

/// Probes every check of `spec` once on every address its namespace may use, within
/// `budget` overall: a probe that has not started when it runs out reports so.
pub async fn probe_once(
    key: &ServiceKey,
    spec: &ServiceSpec,
    dialer: &Dialer,
    budget: Duration,
) -> ServiceHealth {
    let deadline = tokio::time::Instant::now() + budget;
    let namespace = key.namespace.as_ref();
    let mut addresses: Vec<AddressHealth> = Vec::new();
    let mut probed: Vec<(IpAddr, Option<crate::domain::DnsSubdomain>, _)> = Vec::new();
    let mut skipped = 0;
    // Every name is looked up side by side, within the same budget as the probes.
    let lookups: Vec<_> = futures::stream::iter(spec.endpoints())
        .map(|endpoint| async move {
            let found = match &endpoint.address {
                Address::Ip(ip) => Ok(vec![*ip]),
                Address::Dns(name) => tokio::time::timeout_at(deadline, lookup(name.as_ref()))
                    .await
                    .unwrap_or_else(|_| Err("not resolved: the dry run's time ran out".to_owned())),
            };
            (endpoint, found)
        })
        .buffered(LOOKUPS_AT_ONCE)
        .collect()
        .await;
    for (endpoint, found) in lookups {
        let ips = match found {
            Ok(ips) if !ips.is_empty() => ips,
            other => {
                let why = other
                    .err()
                    .unwrap_or_else(|| "resolves to no address".to_owned());
                addresses.push(unprobed(&endpoint.address.to_string(), why));
                continue;
            }
        };
        let name = match &endpoint.address {
            Address::Dns(name) => Some(name.clone()),
            Address::Ip(_) => None,
        };
        for ip in ips.into_iter().take(IPS_PER_NAME) {
            if probed.len() >= MAX_ADDRESSES {
                skipped += 1;
                continue;
            }
            match dialer.policy.check_in(namespace, ip) {
                Ok(()) => probed.push((ip, name.clone(), endpoint.ports.clone())),
                Err(why) => addresses.push(unprobed(&ip.to_string(), format!("not probed: {why}"))),
            }
        }
    }
    if skipped > 0 {
        addresses.push(unprobed(
            &format!("{skipped} more"),
            format!("not probed: a dry run probes {MAX_ADDRESSES} addresses at most"),
        ));
    }
    let targets = probe_targets(
        spec,
        probed.iter().map(|(ip, name, ports)| ProbedAddress {
            ip: *ip,
            resolved_from: name.as_ref(),
            ports,
        }),
    );
    let results: Vec<_> = futures::stream::iter(targets)
        .map(|target| async move {
            let outcome = tokio::time::timeout_at(deadline, check::run(&target, dialer)).await;
            (target, outcome.map(|(outcome, _)| outcome))
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut checks: BTreeMap<IpAddr, Vec<CheckHealth>> =
        probed.iter().map(|(ip, _, _)| (*ip, Vec::new())).collect();
    for (target, outcome) in results {
        let (state, result, error, latency) = match outcome {
            Ok(outcome) if outcome.success => (
                HealthState::Ready,
                Some(ProbeResult::Success),
                None,
                Some(outcome.latency.as_secs_f64() * 1000.0),
            ),
            Ok(outcome) => (
                HealthState::NotReady,
                Some(ProbeResult::Failure),
                outcome.error,
                Some(outcome.latency.as_secs_f64() * 1000.0),
            ),
            Err(_) => (
                HealthState::Unknown,
                None,
                Some(format!(
                    "not probed: the dry run's {} s ran out",
                    budget.as_secs()
                )),
                None,
            ),
        };
        checks.entry(target.ip).or_default().push(CheckHealth {
            name: target.check.name.to_string(),
            port: target.port,
            state,
            consecutive_successes: u32::from(state == HealthState::Ready),
            consecutive_failures: u32::from(state == HealthState::NotReady),
            last_result: result,
            last_error: error,
            last_latency_ms: latency,
            last_probe_time: None,
            last_transition_time: None,
        });
    }
    for (ip, mut checks) in checks {
        checks.sort_by(|a, b| a.name.cmp(&b.name));
        addresses.push(AddressHealth {
            address: ip.to_string(),
            state: address_state(checks.iter().map(|c| c.state)),
            message: None,
            checks,
            maintenance: None,
        });
    }
    let ready = addresses
        .iter()
        .filter(|a| a.state == HealthState::Ready)
        .count();
    ServiceHealth {
        namespace: namespace.to_owned(),
        name: key.name.to_string(),
        ready_addresses: u32::try_from(ready).unwrap_or(u32::MAX),
        total_addresses: u32::try_from(addresses.len()).unwrap_or(u32::MAX),
        addresses,
        updated_at: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    }
}

fn unprobed(address: &str, why: String) -> AddressHealth {
    AddressHealth {
        address: address.to_owned(),
        state: HealthState::NotReady,
        message: Some(why),
        checks: Vec::new(),
        maintenance: None,
    }
}

async fn lookup(name: &str) -> Result<Vec<IpAddr>, String> {
    let absolute = format!("{name}.");
    match tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((absolute.as_str(), 0)),
    )
    .await
    {
        Ok(Ok(found)) => {
            let mut ips: Vec<IpAddr> = found.map(|socket| socket.ip()).collect();
            ips.sort();
            ips.dedup();
            Ok(ips)
        }
        Ok(Err(error)) => Err(format!("does not resolve: {error}")),
        Err(_) => Err(format!(
            "lookup timed out after {}s",
            LOOKUP_TIMEOUT.as_secs()
        )),
    }
}
