//! Leader election on a `coordination.k8s.io/v1` Lease, after client-go's `leaderelection`:
//! of several replicas only the one holding the Lease runs the writers (one writer per
//! object, ARCHITECTURE.md rule 2).
//!
//! Every write is optimistic: a Lease is replaced at the `resourceVersion` it was read at,
//! so of two replicas racing for it one gets 409 Conflict and stays a candidate.
//!
//! As in client-go, another holder's Lease counts as expired once it has gone
//! `leaseDurationSeconds` without a change *observed by this replica*, timed on this
//! replica's monotonic clock: the holder's `renewTime` is never compared with our wall
//! clock, so replicas whose clocks disagree never lead at once (a candidate meeting a
//! Lease for the first time waits a whole lease duration, however old it looks).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::sync::lock;
use crate::telemetry::chain;

/// Where the Lease lives, who competes for it, and how the election is timed.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Unique per replica, e.g. the pod name.
    pub identity: String,
    /// How long the Lease stays valid after a renewal; written in whole seconds.
    pub lease_duration: Duration,
    /// How often the leader renews. Must be well below `lease_duration`: a leader that
    /// cannot renew stops leading one `renew_interval` before its Lease could expire, so
    /// that its work has that long to stop before a successor may start; work still
    /// running then is dropped. The same bound applies on shutdown.
    pub renew_interval: Duration,
    /// How often a candidate tries to take the Lease, and a leader retries a renewal.
    pub retry_interval: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: a 15 s lease, renewed every 5 s, retried every 2 s.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        }
    }
}

/// A request on the Lease that failed; named by what it tried to do.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("could not read the lease")]
    ReadLease(#[source] kube::Error),
    #[error("could not create the lease")]
    CreateLease(#[source] kube::Error),
    #[error("could not take over the lease")]
    TakeLease(#[source] kube::Error),
    #[error("could not renew the lease")]
    RenewLease(#[source] kube::Error),
    #[error("could not release the lease")]
    ReleaseLease(#[source] kube::Error),
}

impl LeaderError {
    /// Whether trying again can help. An answer that rejects the request itself (forbidden,
    /// invalid name, no such namespace) needs a person; no connection, a 5xx or throttling
    /// may pass.
    fn is_transient(&self) -> bool {
        let (Self::ReadLease(source)
        | Self::CreateLease(source)
        | Self::TakeLease(source)
        | Self::RenewLease(source)
        | Self::ReleaseLease(source)) = self;
        match source {
            kube::Error::Api(status) => {
                !(400..500).contains(&status.code) || matches!(status.code, 408 | 429)
            }
            _ => true,
        }
    }
}

/// Competes for the Lease until `shutdown` is cancelled, and runs `lead` while holding it.
///
/// `lead` gets a token that is cancelled when leadership ends (lost, or `shutdown`); the
/// Lease is only given up once the future it returned has finished. After a loss the
/// replica is a candidate again and calls `lead` anew when it wins; if the future finishes
/// by itself, the replica steps down (releasing the Lease) and competes again after
/// `retry_interval`. On shutdown the Lease is released so that a successor need not wait
/// for it to expire.
///
/// `lead`'s future should finish promptly once its token is cancelled: the Lease is not
/// renewed meanwhile, and a successor may take it once it expires.
///
/// Returns an error only when the API server rejects a candidate's request in a way that
/// retrying cannot fix (e.g. 403 Forbidden); transient failures are logged and retried.
pub async fn run_as_leader<F, Fut>(
    client: kube::Client,
    settings: LeaseSettings,
    shutdown: CancellationToken,
    lead: F,
) -> Result<(), LeaderError>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let span = tracing::info_span!(
        "leader_election",
        namespace = %settings.namespace,
        lease = %settings.name,
        identity = %settings.identity,
    );
    let election = Election {
        api: Api::namespaced(client, &settings.namespace),
        settings,
        observed: Mutex::new(None),
    };
    election.run(shutdown, lead).instrument(span).await
}

/// The Lease as we last wrote it, and when on the monotonic clock (just before the write,
/// so that deadlines derived from it err on the early side).
struct Held {
    lease: Lease,
    renewed_at: Instant,
}

/// Why a term as leader ended.
enum Ending {
    Shutdown,
    /// Another replica holds the Lease, or it could not be renewed in time.
    Lost,
    /// `lead`'s future finished by itself.
    WorkEnded,
}

struct Election {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The Lease's spec as last seen to change, and when, on our monotonic clock
    /// (client-go's `observedRecord` and `observedTime`).
    observed: Mutex<Option<(Option<LeaseSpec>, Instant)>>,
}

impl Election {
    async fn run<F, Fut>(&self, shutdown: CancellationToken, mut lead: F) -> Result<(), LeaderError>
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let Some(mut held) = self.campaign(&shutdown).await? else {
                return Ok(());
            };
            tracing::info!("became leader");
            let token = shutdown.child_token();
            let mut work = std::pin::pin!(lead(token.clone()));
            let ending = tokio::select! {
                () = work.as_mut() => Ending::WorkEnded,
                ending = self.keep_renewing(&mut held, &shutdown) => ending,
            };
            token.cancel();
            // Past `renew_interval` the Lease may expire and a successor start: work that
            // has not stopped by then is dropped (aborted) rather than awaited.
            if !matches!(ending, Ending::WorkEnded)
                && timeout(self.settings.renew_interval, work).await.is_err()
            {
                tracing::warn!("the leader's work did not stop in time; abandoned it");
            }
            // The work may have ended because shutdown cancelled its token.
            if shutdown.is_cancelled() {
                self.release(held.lease).await;
                tracing::info!("stopped leading: shutting down");
                return Ok(());
            }
            match ending {
                Ending::WorkEnded => {
                    tracing::warn!("the leader's work ended by itself; stepping down");
                    self.release(held.lease).await;
                }
                Ending::Lost | Ending::Shutdown => tracing::warn!("lost leadership"),
            }
            // Lets another replica win, and keeps work that ends at once from spinning.
            if cancelled_during(&shutdown, self.settings.retry_interval).await {
                return Ok(());
            }
        }
    }

    /// Tries to take the Lease every `retry_interval` until it succeeds (`Some`) or
    /// `shutdown` is cancelled (`None`).
    async fn campaign(&self, shutdown: &CancellationToken) -> Result<Option<Held>, LeaderError> {
        loop {
            // An answer later than a whole lease duration describes a world long gone.
            let attempt = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(None),
                attempt = timeout(self.settings.lease_duration, self.try_acquire()) => attempt,
            };
            match attempt {
                Ok(Ok(Some(held))) => return Ok(Some(held)),
                Ok(Ok(None)) => {}
                Ok(Err(error)) if error.is_transient() => {
                    tracing::warn!(error = %chain(&error), "will try again");
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => tracing::warn!("trying to take the lease timed out; will try again"),
            }
            if cancelled_during(shutdown, self.settings.retry_interval).await {
                return Ok(None);
            }
        }
    }

    /// One attempt to become leader: `None` if another replica holds the Lease or won the
    /// race for it.
    async fn try_acquire(&self) -> Result<Option<Held>, LeaderError> {
        let current = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(LeaderError::ReadLease)?;
        match current {
            None => self.write(None).await.map_err(LeaderError::CreateLease),
            Some(lease) => {
                let spec = lease.spec.as_ref();
                let unchanged_for = self.observe(spec);
                if may_take(spec, &self.settings.identity, unchanged_for) {
                    self.write(Some(lease))
                        .await
                        .map_err(LeaderError::TakeLease)
                } else {
                    tracing::debug!(holder = ?spec.and_then(holder), "another replica leads");
                    Ok(None)
                }
            }
        }
    }

    /// Notes the Lease's spec as read now; returns how long it has gone unchanged since
    /// this replica first saw it so.
    fn observe(&self, spec: Option<&LeaseSpec>) -> Duration {
        let now = Instant::now();
        let mut observed = lock(&self.observed);
        match observed.as_ref() {
            Some((seen, since)) if seen.as_ref() == spec => now.saturating_duration_since(*since),
            _ => {
                *observed = Some((spec.cloned(), now));
                Duration::ZERO
            }
        }
    }

    /// Renews every `renew_interval` (every `retry_interval` after a failure) until
    /// shutdown, until another replica holds the Lease, or until the renewal deadline
    /// passes without a successful renewal.
    async fn keep_renewing(&self, held: &mut Held, shutdown: &CancellationToken) -> Ending {
        let grace = self
            .settings
            .lease_duration
            .saturating_sub(self.settings.renew_interval);
        let mut pause = self.settings.renew_interval;
        loop {
            let deadline = held.renewed_at + grace;
            let next = (Instant::now() + pause).min(deadline);
            if cancelled_during(shutdown, next.saturating_duration_since(Instant::now())).await {
                return Ending::Shutdown;
            }
            let attempt = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ending::Shutdown,
                attempt = timeout_at(deadline, self.renew(&held.lease)) => attempt,
            };
            match attempt {
                Ok(Ok(Some(renewed))) => {
                    *held = renewed;
                    pause = self.settings.renew_interval;
                }
                Ok(Ok(None)) => {
                    tracing::warn!("another replica took the lease");
                    return Ending::Lost;
                }
                Ok(Err(error)) if Instant::now() < deadline => {
                    tracing::warn!(error = %chain(&error), "will try again");
                    pause = self.settings.retry_interval;
                }
                Ok(Err(error)) => {
                    tracing::warn!(error = %chain(&error), "renewal deadline passed");
                    return Ending::Lost;
                }
                Err(_) => {
                    tracing::warn!("renewal deadline passed while renewing");
                    return Ending::Lost;
                }
            }
        }
    }

    /// Renews the Lease we hold: `None` if it no longer names us.
    async fn renew(&self, last: &Lease) -> Result<Option<Held>, LeaderError> {
        // Our own last write is normally still the current version: no read needed.
        if let Some(held) = self
            .write(Some(last.clone()))
            .await
            .map_err(LeaderError::RenewLease)?
        {
            return Ok(Some(held));
        }
        // Someone else wrote the Lease since; it is still ours only if it names us.
        let current = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(LeaderError::ReadLease)?;
        match current {
            Some(lease)
                if lease.spec.as_ref().and_then(holder) == Some(&self.settings.identity) =>
            {
                self.write(Some(lease))
                    .await
                    .map_err(LeaderError::RenewLease)
            }
            _ => Ok(None),
        }
    }

    /// Writes us into the Lease as of now: creates it when `current` is `None`, otherwise
    /// replaces it at its resourceVersion. `None` when another write got there first.
    async fn write(&self, current: Option<Lease>) -> Result<Option<Held>, kube::Error> {
        let renewed_at = Instant::now();
        let spec = claimed(
            current.as_ref().and_then(|lease| lease.spec.as_ref()),
            &self.settings,
            Timestamp::now(),
        );
        let params = PostParams::default();
        let creating = current.is_none();
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&params, &lease).await
            }
            Some(lease) => {
                let lease = Lease {
                    spec: Some(spec),
                    ..lease
                };
                self.api.replace(&self.settings.name, &params, &lease).await
            }
        };
        match written {
            Ok(lease) => Ok(Some(Held { lease, renewed_at })),
            // 409: another write came first (Conflict, or AlreadyExists on create).
            // 404 on a replace: the Lease was deleted since we read it. (On a create it
            // means the namespace does not exist, which no retry mends.)
            Err(kube::Error::Api(status))
                if status.code == 409 || (status.code == 404 && !creating) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Clears the holder, as client-go's `ReleaseOnCancel` does, so that a candidate takes
    /// the Lease at its next try. Failing that, the Lease expires by itself, so a failure
    /// is only logged.
    async fn release(&self, lease: Lease) {
        // One try's worth: the Lease expires by itself anyway, and shutdown must fit the
        // pod's grace period.
        match timeout(self.settings.retry_interval, self.clear_holder(lease)).await {
            Ok(Ok(true)) => tracing::info!("released the lease"),
            Ok(Ok(false)) => tracing::debug!("the lease is no longer ours to release"),
            Ok(Err(error)) => {
                let error = LeaderError::ReleaseLease(error);
                tracing::warn!(error = %chain(&error), "the lease will expire by itself");
            }
            Err(_) => tracing::warn!("releasing the lease timed out; it will expire by itself"),
        }
    }

    /// Writes `lease` without a holder; true if that happened. A conflict means it changed
    /// since: a renewal that was still in flight when our term ended may have landed after
    /// all (its answer was dropped), so the Lease is read again and released at its
    /// current version while it still names us.
    async fn clear_holder(&self, mut lease: Lease) -> Result<bool, kube::Error> {
        let params = PostParams::default();
        loop {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
            }
            match self.api.replace(&self.settings.name, &params, &lease).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error),
            }
            match self.api.get_opt(&self.settings.name).await? {
                Some(current)
                    if current.spec.as_ref().and_then(holder) == Some(&self.settings.identity) =>
                {
                    lease = current;
                }
                _ => return Ok(false),
            }
        }
    }
}

/// Sleeps for `pause`; true if `shutdown` was cancelled first.
async fn cancelled_during(shutdown: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => true,
        () = sleep(pause) => false,
    }
}

/// The holder named by a Lease; client-go releases by writing an empty one.
fn holder(spec: &LeaseSpec) -> Option<&String> {
    spec.holder_identity.as_ref().filter(|id| !id.is_empty())
}

/// Whether `identity` may write itself into a Lease with this spec, which has gone
/// `unchanged_for` without a renewal we saw: the Lease names no holder, names us, or has
/// not changed for its whole duration.
fn may_take(spec: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> bool {
    let Some(spec) = spec else {
        return true;
    };
    match holder(spec) {
        None => true,
        Some(holder) if holder == identity => true,
        Some(_) => match spec.lease_duration_seconds {
            Some(seconds) => {
                unchanged_for >= Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
            }
            // Without a duration the Lease cannot be valid; client-go treats it as expired.
            None => true,
        },
    }
}

/// The spec naming `settings.identity` as holder, renewed at `now`. Like client-go, a
/// change of holder counts a transition and restarts `acquireTime`; the fields we do not
/// use (preferred holder, strategy) are kept.
fn claimed(current: Option<&LeaseSpec>, settings: &LeaseSettings, now: Timestamp) -> LeaseSpec {
    let now = MicroTime(now);
    let lease_duration_seconds =
        i32::try_from(settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let (acquire_time, lease_transitions) = match current {
        None => (now.clone(), 0),
        Some(spec) => {
            let transitions = spec.lease_transitions.unwrap_or(0);
            match (holder(spec) == Some(&settings.identity), &spec.acquire_time) {
                (true, Some(acquired)) => (acquired.clone(), transitions),
                (true, None) => (now.clone(), transitions),
                (false, _) => (now.clone(), transitions.saturating_add(1)),
            }
        }
    };
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(lease_duration_seconds),
        acquire_time: Some(acquire_time),
        renew_time: Some(now),
        lease_transitions: Some(lease_transitions),
        ..current.cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "replica-a";
    const OTHER: &str = "replica-b";

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("a valid timestamp")
    }

    fn held_by(holder: &str, renewed: i64, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    fn settings() -> LeaseSettings {
        LeaseSettings::new("ns", "lease", ME)
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn a_missing_or_unheld_lease_may_be_taken() {
        assert!(may_take(None, ME, secs(0)));
        assert!(may_take(Some(&LeaseSpec::default()), ME, secs(0)));
        let released = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held_by(OTHER, 100, 15)
        };
        assert!(may_take(Some(&released), ME, secs(0)));
    }

    #[test]
    fn our_own_lease_may_be_taken_even_if_expired() {
        assert!(may_take(Some(&held_by(ME, 100, 15)), ME, secs(0)));
        assert!(may_take(Some(&held_by(ME, 100, 15)), ME, secs(1000)));
    }

    #[test]
    fn another_holders_lease_is_kept_until_unchanged_for_its_duration() {
        // Its renewTime plays no part: the holder's clock may be anything.
        let spec = held_by(OTHER, 100, 15);
        assert!(!may_take(Some(&spec), ME, secs(0)));
        assert!(!may_take(Some(&spec), ME, secs(14)));
        assert!(may_take(Some(&spec), ME, secs(15)));
        assert!(may_take(Some(&spec), ME, secs(200)));
    }

    #[test]
    fn a_lease_without_duration_counts_as_expired() {
        let no_duration = LeaseSpec {
            lease_duration_seconds: None,
            ..held_by(OTHER, 100, 15)
        };
        assert!(may_take(Some(&no_duration), ME, secs(0)));
    }

    #[test]
    fn creating_a_lease_starts_without_transitions() {
        let spec = claimed(None, &settings(), at(50));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(50))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(50))));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions() {
        let spec = claimed(Some(&held_by(ME, 100, 15)), &settings(), at(105));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(105))));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn taking_over_counts_a_transition_and_restarts_acquire_time() {
        let spec = claimed(Some(&held_by(OTHER, 100, 15)), &settings(), at(120));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(120))));
        assert_eq!(spec.lease_transitions, Some(4));

        let released = LeaseSpec {
            holder_identity: None,
            ..held_by(ME, 100, 15)
        };
        let spec = claimed(Some(&released), &settings(), at(120));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn claiming_keeps_fields_we_do_not_use() {
        let current = LeaseSpec {
            strategy: Some("OldestEmulationVersion".to_owned()),
            ..held_by(OTHER, 100, 15)
        };
        let spec = claimed(Some(&current), &settings(), at(120));
        assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
    }

    #[test]
    fn only_requests_the_server_rejected_outright_are_permanent() {
        let api = |code: u16| {
            LeaderError::ReadLease(kube::Error::Api(
                kube::core::Status::failure("test", "Test")
                    .with_code(code)
                    .boxed(),
            ))
        };
        assert!(!api(403).is_transient());
        assert!(!api(422).is_transient());
        assert!(api(429).is_transient());
        assert!(api(500).is_transient());
        assert!(api(503).is_transient());
    }
}
