//! Building targets from a validated spec, running an engine, and waiting for it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use extsvc::domain::{AddressPolicy, DnsLabel, PortName, ServiceKey, ServiceName, ServiceSpec};
use extsvc::probe::{
    DEFAULT_MAX_IN_FLIGHT, Dialer, Engine, ProbeTarget, ProbedAddress, Tls, probe_targets,
};
use extsvc::resource::{CheckHealth, ExternalServiceSpec, ServiceHealth};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The longest a test waits for one expected state; generous for a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(8);
const POLL: Duration = Duration::from_millis(5);

/// Runs a whole test body, failing it rather than hanging past `seconds`.
pub async fn within<F: Future>(seconds: u64, test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(seconds), test)
        .await
        .unwrap_or_else(|_| panic!("test still running after {seconds}s"))
}

pub fn key(name: &str) -> ServiceKey {
    ServiceKey {
        namespace: DnsLabel::parse("ns").expect("namespace"),
        name: ServiceName::parse(name).expect("service name"),
    }
}

/// `check` with fast timing (period 1s, timeout 1s, both thresholds 1) where it sets none.
pub fn fast(check: Value) -> Value {
    let mut full = json!({
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 1,
    });
    if let (Some(full), Value::Object(check)) = (full.as_object_mut(), check) {
        full.extend(check);
    }
    full
}

/// The targets of `checks` on `ip`, for a service declaring one port `web` = `web_port`.
/// The spec names a documentation address, as validation refuses loopback endpoints; the
/// engine is handed `ip` instead.
pub fn targets(ip: IpAddr, web_port: u16, checks: Vec<Value>) -> Vec<ProbeTarget> {
    let wire: ExternalServiceSpec = serde_json::from_value(json!({
        "ports": [{"name": "web", "port": web_port}],
        "endpoints": [{"address": "192.0.2.1"}],
        "healthChecks": checks,
    }))
    .expect("spec JSON");
    let spec = ServiceSpec::parse(&wire).expect("valid spec");
    let ports: BTreeSet<PortName> = spec.ports().iter().map(|p| p.name.clone()).collect();
    let address = ProbedAddress {
        ip,
        resolved_from: None,
        ports: &ports,
    };
    probe_targets(&spec, [address])
}

/// The readiness map of a service whose one address is `LOCALHOST`; also its seed.
pub fn local(ready: bool) -> BTreeMap<IpAddr, bool> {
    BTreeMap::from([(LOCALHOST, ready)])
}

fn local_targets(web_port: u16, checks: impl IntoIterator<Item = Value>) -> Vec<ProbeTarget> {
    targets(LOCALHOST, web_port, checks.into_iter().map(fast).collect())
}

/// An engine for one test; stopped when dropped.
pub struct Probing {
    pub engine: Engine,
    pub woken: UnboundedReceiver<ServiceKey>,
    shutdown: CancellationToken,
}

impl Probing {
    /// An engine trusting no certificate authority, with the default concurrency.
    pub fn start() -> Self {
        let tls = Tls::with_roots(rustls::RootCertStore::empty()).expect("TLS settings");
        Self::with(tls, DEFAULT_MAX_IN_FLIGHT)
    }

    /// The backends of these tests are on loopback, which the default address policy
    /// denies: nothing is denied here unless a test says so.
    pub fn with(tls: Tls, max_in_flight: usize) -> Self {
        let policy = AddressPolicy::parse(Some("none"), None).expect("a policy");
        Self::with_policy(tls, max_in_flight, policy)
    }

    pub fn with_policy(tls: Tls, max_in_flight: usize, policy: AddressPolicy) -> Self {
        let shutdown = CancellationToken::new();
        let dialer = Dialer {
            tls,
            policy: std::sync::Arc::new(policy),
        };
        let (engine, woken) = extsvc::probe::Engine::start(
            dialer,
            max_in_flight,
            extsvc::metrics::Metrics::default(),
            shutdown.clone(),
        )
        .expect("the probe engine starts");
        Self {
            engine,
            woken,
            shutdown,
        }
    }

    /// Probes `targets` on the single address `ip` of `key`, with no seed.
    pub fn watch(&self, key: &ServiceKey, ip: IpAddr, targets: Vec<ProbeTarget>) {
        self.engine
            .set_targets(key, vec![ip], targets, &BTreeMap::new());
    }

    /// Probes `checks`, each with fast timing, on the single address `LOCALHOST` of `key`,
    /// whose port `web` is `web_port`, with no seed.
    pub fn watch_local(
        &self,
        key: &ServiceKey,
        web_port: u16,
        checks: impl IntoIterator<Item = Value>,
    ) {
        self.watch(key, LOCALHOST, local_targets(web_port, checks));
    }

    /// As `watch_local`, with the address seeded `ready` or not.
    pub fn watch_seeded(
        &self,
        key: &ServiceKey,
        web_port: u16,
        checks: impl IntoIterator<Item = Value>,
        ready: bool,
    ) {
        self.engine.set_targets(
            key,
            vec![LOCALHOST],
            local_targets(web_port, checks),
            &local(ready),
        );
    }

    /// Waits until every check on the first address of `key` has a result.
    pub async fn until_all_probed(&self, key: &ServiceKey, what: &str) -> ServiceHealth {
        self.until(key, what, |r| {
            r.addresses[0]
                .checks
                .iter()
                .all(|c| c.last_result.is_some())
        })
        .await
    }

    /// Waits until the report of `key` satisfies `done`.
    pub async fn until(
        &self,
        key: &ServiceKey,
        what: &str,
        done: impl Fn(&ServiceHealth) -> bool,
    ) -> ServiceHealth {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let report = self.engine.report(key);
            if let Some(report) = report.as_ref().filter(|r| done(r)) {
                return report.clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{what}: not within {PATIENCE:?}; last report: {report:#?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until check `name` on `ip` satisfies `done`.
    pub async fn until_check(
        &self,
        key: &ServiceKey,
        ip: IpAddr,
        name: &str,
        what: &str,
        done: impl Fn(&CheckHealth) -> bool,
    ) -> CheckHealth {
        let report = self
            .until(key, what, |r| find_check(r, ip, name).is_some_and(&done))
            .await;
        find_check(&report, ip, name).cloned().expect("check found")
    }

    /// How many wake-ups arrived since the last call.
    pub fn wakes(&mut self) -> usize {
        std::iter::from_fn(|| self.woken.try_recv().ok()).count()
    }
}

impl Drop for Probing {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn find_check<'a>(
    report: &'a ServiceHealth,
    ip: IpAddr,
    name: &str,
) -> Option<&'a CheckHealth> {
    report
        .addresses
        .iter()
        .find(|a| a.address == ip.to_string())?
        .checks
        .iter()
        .find(|c| c.name == name)
}

/// The names of the checks on `ip`, in report order.
pub fn check_names(report: &ServiceHealth, ip: IpAddr) -> Vec<String> {
    report
        .addresses
        .iter()
        .filter(|a| a.address == ip.to_string())
        .flat_map(|a| a.checks.iter().map(|c| c.name.clone()))
        .collect()
}

/// Waits until `done` holds, polling.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
