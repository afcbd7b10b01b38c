//! One scheduler for every (service, address, check), with bounded concurrency.
//!
//! The controller tells the engine which targets a service has (`set_targets`) and reads
//! readiness back (`readiness`); both go through one table, so a reconcile sees at once
//! that a new address with checks is not ready yet. The scheduler task only times and
//! runs probes. A readiness change of an address wakes the controller for that service
//! alone; the engine itself never writes to Kubernetes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::ServiceKey;
use crate::metrics::Metrics;
use crate::resource::{
    AddressHealth, CheckHealth, HealthState, HealthTransition, ProbeResult, ServiceHealth,
};
use crate::sync::lock;

use super::check::{self, Class, Dialer};
use super::state::{CheckState, Outcome, address_state};
use super::target::ProbeTarget;

/// Probes running at once, at most.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// The share of `max_in_flight` one service's probes may hold at once (an eighth): a
/// service whose backends hang every probe until its timeout waits for its own turns and
/// never takes the others'.
const SERVICE_SHARE: usize = 8;

/// A handle on the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    schedule: mpsc::UnboundedSender<Schedule>,
}

struct Shared {
    services: Mutex<HashMap<ServiceKey, ServiceState>>,
    /// Services whose report changed in substance (a state or an error) since the
    /// publisher last looked: published at once.
    dirty: Mutex<HashSet<ServiceKey>>,
    /// Services probed since, with only times, latencies and counters changed: published
    /// at a slower pace, so that thousands of services do not mean thousands of writes
    /// every few seconds.
    refreshed: Mutex<HashSet<ServiceKey>>,
    transitions: Mutex<Vec<(ServiceKey, HealthTransition)>>,
    /// Signalled at each transition, so that the publisher writes it at once.
    transitioned: tokio::sync::Notify,
    wake: mpsc::UnboundedSender<ServiceKey>,
    metrics: Metrics,
    next_id: std::sync::atomic::AtomicU64,
}

/// A DNS name among a service's addresses that resolves to nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub name: String,
    pub reason: String,
}

#[derive(Default)]
struct ServiceState {
    /// Every published address, checked or not, in order.
    addresses: Vec<IpAddr>,
    /// Names with no address: not probed, never ready, counted in the total.
    unresolved: Vec<Unresolved>,
    checks: BTreeMap<(IpAddr, String), Tracked>,
    updated_at: Option<SystemTime>,
}

struct Tracked {
    /// Identifies this target in the scheduler; a changed definition gets a new one.
    id: u64,
    target: ProbeTarget,
    state: CheckState,
}

/// What the scheduler is told to do.
enum Schedule {
    Add {
        id: u64,
        key: ServiceKey,
        target: ProbeTarget,
        first: Instant,
    },
    Remove {
        id: u64,
    },
}

impl Engine {
    /// Starts the scheduler. The returned receiver yields a service each time one of its
    /// addresses changes readiness.
    /// The scheduler and its probes run on a single-threaded runtime of their own: a
    /// probe is mostly system calls, and keeping each on one thread saves the wake-ups
    /// and hand-overs of a shared runtime (a fifth of the engine's CPU; bench/probe.sh).
    pub fn start(
        dialer: Dialer,
        max_in_flight: usize,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Self, mpsc::UnboundedReceiver<ServiceKey>)> {
        let (wake, woken) = mpsc::unbounded_channel();
        let (schedule, scheduled) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            services: Mutex::default(),
            dirty: Mutex::default(),
            refreshed: Mutex::default(),
            transitions: Mutex::default(),
            transitioned: tokio::sync::Notify::new(),
            wake,
            metrics,
            next_id: std::sync::atomic::AtomicU64::new(1),
        });
        let scheduler = Scheduler {
            shared: shared.clone(),
            dialer,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            per_service: max_in_flight.div_ceil(SERVICE_SHARE).max(1),
            in_flight: HashMap::new(),
            waiting: HashMap::new(),
            targets: HashMap::new(),
            due: BinaryHeap::new(),
            last_launch: Instant::now(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("extsvc-probes".to_owned())
            // Returns when `shutdown` is cancelled; dropping the runtime cancels probes.
            .spawn(move || runtime.block_on(scheduler.run(scheduled, shutdown)))?;
        Ok((Self { shared, schedule }, woken))
    }

    /// Sets the addresses and targets of a service. Unchanged targets keep their state and
    /// timing. A check whose definition changed (a threshold, a header, the path) keeps
    /// its state on each address and is probed anew under the new definition at once, so
    /// that editing a check is not an outage. New targets start unknown and wait
    /// `initialDelaySeconds`, except:
    /// - the first time this engine meets the service, when they start from `seed` (the
    ///   readiness last published, so a restart or a change of leader does not flap)
    ///   without delay;
    /// - a new IP of a DNS name (a rotation), whose check starts ready without delay when
    ///   the same check was ready on another IP of that name: the benefit its name had.
    pub fn set_targets(
        &self,
        key: &ServiceKey,
        addresses: Vec<IpAddr>,
        targets: Vec<ProbeTarget>,
        seed: &BTreeMap<IpAddr, bool>,
    ) {
        let mut ops = Vec::new();
        let now = Instant::now();
        {
            let mut services = lock(&self.shared.services);
            let first_sighting = !services.contains_key(key);
            let service = services.entry(key.clone()).or_default();
            let before = readiness_of(service);
            let mut wanted: BTreeMap<(IpAddr, String), ProbeTarget> = targets
                .into_iter()
                .map(|t| ((t.ip, t.check.name.to_string()), t))
                .collect();
            // Checks ready on some IP of a name, before this change: (name, check).
            let ready_by_name: HashSet<(&str, &str)> = service
                .checks
                .values()
                .filter(|tracked| tracked.state.state == HealthState::Ready)
                .filter_map(|tracked| {
                    let name = tracked.target.resolved_from.as_ref()?;
                    Some((name.as_ref(), tracked.target.check.name.as_ref()))
                })
                .collect();
            let mut carried: BTreeMap<(IpAddr, String), CheckState> = BTreeMap::new();
            let mut new_by_name: Vec<(IpAddr, String)> = Vec::new();
            for (identity, target) in &wanted {
                let benefit = target.resolved_from.as_ref().is_some_and(|name| {
                    ready_by_name.contains(&(name.as_ref(), target.check.name.as_ref()))
                });
                if benefit && !service.checks.contains_key(identity) {
                    new_by_name.push(identity.clone());
                }
            }
            service
                .checks
                .retain(|identity, tracked| match wanted.get(identity) {
                    Some(target) if *target == tracked.target => {
                        wanted.remove(identity);
                        true
                    }
                    changed => {
                        if changed.is_some() {
                            carried.insert(identity.clone(), tracked.state.carried());
                        }
                        ops.push(Schedule::Remove { id: tracked.id });
                        false
                    }
                });
            for (identity, target) in wanted {
                let seeded = first_sighting
                    .then(|| seed.get(&target.ip).copied())
                    .flatten()
                    .or_else(|| new_by_name.contains(&identity).then_some(true));
                let state = match carried.remove(&identity) {
                    Some(state) => state,
                    None => CheckState::new(seeded),
                };
                let id = self
                    .shared
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let timing = target.check.timing;
                let delay = if state.state != HealthState::Unknown {
                    Duration::ZERO
                } else {
                    timing.initial_delay()
                };
                // Spread first probes over a period so that many targets do not fire together.
                let jitter = timing.period().mul_f64(fastrand::f64());
                ops.push(Schedule::Add {
                    id,
                    key: key.clone(),
                    target: target.clone(),
                    first: now + delay + jitter,
                });
                service
                    .checks
                    .insert(identity, Tracked { id, target, state });
            }
            service.addresses = addresses;
            if readiness_of(service) != before || !ops.is_empty() {
                service.updated_at = Some(SystemTime::now());
                lock(&self.shared.dirty).insert(key.clone());
            }
            self.shared
                .metrics
                .set_addresses(key, ready_count(service), total_count(service));
            // Sent under the lock: a `retain` racing this call must find its Remove queued
            // after our Add, or the scheduler would keep a target nobody owns.
            for op in ops {
                // The scheduler only stops with the engine.
                let _ = self.schedule.send(op);
            }
        }
    }

    /// Sets the names of a service that resolve to nothing, after `set_targets`: they
    /// count as addresses that are not ready, as in the resource's status.
    pub fn set_unresolved(&self, key: &ServiceKey, unresolved: Vec<Unresolved>) {
        let mut services = lock(&self.shared.services);
        let Some(service) = services.get_mut(key) else {
            return;
        };
        if service.unresolved != unresolved {
            service.unresolved = unresolved;
            service.updated_at = Some(SystemTime::now());
            lock(&self.shared.dirty).insert(key.clone());
            self.shared
                .metrics
                .set_addresses(key, ready_count(service), total_count(service));
        }
    }

    /// Forgets every service not in `keep` (deleted resources).
    pub fn retain(&self, keep: &HashSet<ServiceKey>) {
        let mut services = lock(&self.shared.services);
        let gone: Vec<ServiceKey> = services
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(service) = services.remove(&key) {
                for tracked in service.checks.values() {
                    let _ = self.schedule.send(Schedule::Remove { id: tracked.id });
                }
            }
            self.shared.metrics.forget_service(&key);
            lock(&self.shared.dirty).remove(&key);
            lock(&self.shared.refreshed).remove(&key);
        }
    }

    /// Readiness of each address of a service: ready when every check on it is ready.
    pub fn readiness(&self, key: &ServiceKey) -> BTreeMap<IpAddr, bool> {
        lock(&self.shared.services)
            .get(key)
            .map(readiness_of)
            .unwrap_or_default()
    }

    /// The current report of a service.
    pub fn report(&self, key: &ServiceKey) -> Option<ServiceHealth> {
        lock(&self.shared.services)
            .get(key)
            .map(|service| report(key, service))
    }

    /// Reports that changed in substance since the last call; with `all`, also those
    /// that were only probed again.
    pub fn take_changed_reports(&self, all: bool) -> Vec<ServiceHealth> {
        let mut keys: HashSet<ServiceKey> = lock(&self.shared.dirty).drain().collect();
        if all {
            keys.extend(lock(&self.shared.refreshed).drain());
        }
        let services = lock(&self.shared.services);
        keys.iter()
            .filter_map(|key| services.get(key).map(|service| report(key, service)))
            .collect()
    }

    /// Transitions since the last call, oldest first.
    pub fn take_transitions(&self) -> Vec<(ServiceKey, HealthTransition)> {
        std::mem::take(&mut *lock(&self.shared.transitions))
    }

    /// Resolves at the next transition (at once if one happened since the last call).
    pub async fn transitioned(&self) {
        self.shared.transitioned.notified().await;
    }
}

fn readiness_of(service: &ServiceState) -> BTreeMap<IpAddr, bool> {
    service
        .addresses
        .iter()
        .map(|ip| (*ip, address_state_of(service, *ip) == HealthState::Ready))
        .collect()
}

/// The checks of one address: a range of the table, which is ordered by address first.
fn checks_of(service: &ServiceState, ip: IpAddr) -> impl Iterator<Item = (&String, &Tracked)> {
    service
        .checks
        .range((ip, String::new())..)
        .take_while(move |((at, _), _)| *at == ip)
        .map(|((_, name), tracked)| (name, tracked))
}

fn address_state_of(service: &ServiceState, ip: IpAddr) -> HealthState {
    address_state(checks_of(service, ip).map(|(_, tracked)| tracked.state.state))
}

fn ready_count(service: &ServiceState) -> usize {
    readiness_of(service)
        .values()
        .filter(|ready| **ready)
        .count()
}

fn total_count(service: &ServiceState) -> usize {
    service.addresses.len() + service.unresolved.len()
}

fn timestamp(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn report(key: &ServiceKey, service: &ServiceState) -> ServiceHealth {
    let mut addresses: Vec<AddressHealth> = service
        .addresses
        .iter()
        .map(|ip| AddressHealth {
            address: ip.to_string(),
            state: address_state_of(service, *ip),
            message: None,
            checks: checks_of(service, *ip)
                .map(|(name, tracked)| {
                    let state = &tracked.state;
                    let last = state.last.as_ref();
                    CheckHealth {
                        name: name.clone(),
                        port: tracked.target.port,
                        state: state.state,
                        last_result: last.map(|l| {
                            if l.success {
                                ProbeResult::Success
                            } else {
                                ProbeResult::Failure
                            }
                        }),
                        last_error: last.and_then(|l| l.error.clone()),
                        last_latency_ms: last
                            .map(|l| (l.latency.as_secs_f64() * 1e6).round() / 1e3),
                        consecutive_successes: state.consecutive_successes,
                        consecutive_failures: state.consecutive_failures,
                        last_probe_time: last.map(|l| timestamp(l.at)),
                        last_transition_time: state.last_transition.map(timestamp),
                    }
                })
                .collect(),
            maintenance: None,
        })
        .collect();
    addresses.extend(service.unresolved.iter().map(|u| AddressHealth {
        address: u.name.clone(),
        state: HealthState::NotReady,
        message: Some(u.reason.clone()),
        checks: Vec::new(),
        maintenance: None,
    }));
    ServiceHealth {
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
        ready_addresses: addresses
            .iter()
            .filter(|a| a.state == HealthState::Ready)
            .count() as u32,
        total_addresses: addresses.len() as u32,
        addresses,
        updated_at: service.updated_at.map(timestamp),
    }
}

struct Scheduler {
    shared: Arc<Shared>,
    dialer: Dialer,
    permits: Arc<Semaphore>,
    /// Probes of one service running at once, at most.
    per_service: usize,
    in_flight: HashMap<ServiceKey, usize>,
    /// Due targets of services at their `per_service` limit, launched as their own
    /// probes finish.
    waiting: HashMap<ServiceKey, VecDeque<u64>>,
    targets: HashMap<u64, (ServiceKey, ProbeTarget)>,
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    /// When probes were last launched: launches are batched at most every
    /// `LAUNCH_BATCH`, so that thousands of spread targets do not mean thousands of
    /// wake-ups a second.
    last_launch: Instant,
}

const LAUNCH_BATCH: Duration = Duration::from_millis(10);

/// A finished probe, sent back by the task that ran it.
struct Finished {
    id: u64,
    key: ServiceKey,
    started: Instant,
    outcome: Outcome,
    class: Class,
}

impl Scheduler {
    async fn run(
        mut self,
        mut scheduled: mpsc::UnboundedReceiver<Schedule>,
        shutdown: CancellationToken,
    ) {
        let (done, mut finished) = mpsc::unbounded_channel::<Finished>();
        loop {
            self.launch_due(&done);
            let next = self
                .due
                .peek()
                .map(|Reverse((at, _))| (*at).max(self.last_launch + LAUNCH_BATCH));
            let can_launch = self.permits.available_permits() > 0;
            tokio::select! {
                () = shutdown.cancelled() => return,
                op = scheduled.recv() => match op {
                    Some(Schedule::Add { id, key, target, first }) => {
                        self.targets.insert(id, (key, target));
                        self.due.push(Reverse((first, id)));
                    }
                    Some(Schedule::Remove { id }) => {
                        // Its heap entry is skipped when it comes up.
                        self.targets.remove(&id);
                    }
                    None => return,
                },
                Some(result) = finished.recv() => self.record(result),
                () = sleep_until(next), if can_launch && next.is_some() => {}
            }
        }
    }

    /// Starts every target that is due, as far as permits go.
    fn launch_due(&mut self, done: &mpsc::UnboundedSender<Finished>) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.due.peek().copied() {
            if at > now {
                return;
            }
            let Some((key, target)) = self.targets.get(&id) else {
                self.due.pop();
                continue;
            };
            let running = self.in_flight.get(key).copied().unwrap_or(0);
            if running >= self.per_service {
                self.due.pop();
                self.waiting.entry(key.clone()).or_default().push_back(id);
                continue;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return;
            };
            self.due.pop();
            self.last_launch = now;
            *self.in_flight.entry(key.clone()).or_default() += 1;
            spawn_probe(
                id,
                key.clone(),
                target.clone(),
                self.dialer.clone(),
                permit,
                done.clone(),
            );
        }
    }

    /// Frees the turn of `key`'s finished probe, and hands it to a waiting target.
    fn release_turn(&mut self, key: &ServiceKey) {
        if let Some(running) = self.in_flight.get_mut(key) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                self.in_flight.remove(key);
            }
        }
        if let Some(waiting) = self.waiting.get_mut(key) {
            if let Some(id) = waiting.pop_front() {
                self.due.push(Reverse((Instant::now(), id)));
            }
            if waiting.is_empty() {
                self.waiting.remove(key);
            }
        }
    }

    fn record(&mut self, finished: Finished) {
        self.release_turn(&finished.key);
        let Some((key, target)) = self.targets.get(&finished.id).cloned() else {
            return; // removed while it ran
        };
        let kind = check::kind(&target.check.probe);
        self.shared
            .metrics
            .observe_probe(kind, finished.class, finished.outcome.latency);
        let timing = target.check.timing;

        let mut services = lock(&self.shared.services);
        let identity = (target.ip, target.check.name.to_string());
        let owned = services
            .get(&key)
            .and_then(|service| service.checks.get(&identity))
            .is_some_and(|tracked| tracked.id == finished.id);
        let Some(service) = services.get_mut(&key).filter(|_| owned) else {
            // The table no longer has this target: never probe it again.
            self.targets.remove(&finished.id);
            return;
        };
        // Period from start to start, so a slow probe does not push the schedule back.
        self.due
            .push(Reverse((finished.started + timing.period(), finished.id)));

        let was_ready = address_state_of(service, target.ip) == HealthState::Ready;
        let Some(tracked) = service.checks.get_mut(&identity) else {
            return;
        };
        let error = finished.outcome.error.clone();
        let error_changed = tracked.state.last.as_ref().map(|l| &l.error) != Some(&error);
        let at = finished.outcome.at;
        let change = tracked.state.record(
            finished.outcome,
            timing.success_threshold(),
            timing.failure_threshold(),
        );
        let substantial = change.is_some() || error_changed;
        if let Some(change) = change {
            lock(&self.shared.transitions).push((
                key.clone(),
                HealthTransition {
                    address: target.ip.to_string(),
                    check: identity.1,
                    from: change.from,
                    to: change.to,
                    error,
                    time: timestamp(at),
                },
            ));
            self.shared.transitioned.notify_one();
        }
        service.updated_at = Some(SystemTime::now());
        if substantial {
            lock(&self.shared.dirty).insert(key.clone());
        } else {
            lock(&self.shared.refreshed).insert(key.clone());
        }
        // Only readiness matters to the controller; unknown and not ready look the same
        // in an EndpointSlice.
        let is_ready = address_state_of(service, target.ip) == HealthState::Ready;
        if is_ready != was_ready {
            self.shared
                .metrics
                .set_addresses(&key, ready_count(service), total_count(service));
            let _ = self.shared.wake.send(key);
        }
    }
}

fn spawn_probe(
    id: u64,
    key: ServiceKey,
    target: ProbeTarget,
    dialer: Dialer,
    permit: OwnedSemaphorePermit,
    done: mpsc::UnboundedSender<Finished>,
) {
    tokio::spawn(async move {
        let started = Instant::now();
        // A probe that panics (a bug) still finishes: its turn comes back and its target
        // is scheduled again, instead of the check freezing in its last state.
        let (outcome, class) = AssertUnwindSafe(check::run(&target, &dialer))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                let outcome = Outcome {
                    success: false,
                    error: Some("the probe failed inside extsvc (a bug, logged)".to_owned()),
                    latency: started.elapsed(),
                    at: SystemTime::now(),
                };
                (outcome, Class::Error)
            });
        drop(permit);
        let _ = done.send(Finished {
            id,
            key,
            started,
            outcome,
            class,
        });
    });
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
