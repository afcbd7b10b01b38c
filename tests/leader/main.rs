//! Leader election against a real kube-apiserver: of the replicas competing for one Lease
//! exactly one leads, a stopping leader hands over at once, a crashed one after its Lease
//! expires.

#[path = "../support/controlplane.rs"]
mod controlplane;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use extsvc::k8s::leader::{LeaderError, LeaseSettings, run_as_leader};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use controlplane::ControlPlane;

const LEASE: &str = "extsvc-leader";
const LEASE_DURATION: Duration = Duration::from_secs(3);
const RENEW_INTERVAL: Duration = Duration::from_secs(1);
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// Bound on every wait, so that a failure cannot hang the suite.
const WAIT: Duration = Duration::from_secs(20);

/// How many replicas are running their leader work, and whether two ever did at once.
#[derive(Default)]
struct Leaders {
    running: AtomicUsize,
    overlapped: AtomicBool,
}

/// One replica competing for the Lease in a task of its own.
struct Candidate {
    leading: Arc<AtomicBool>,
    terms: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), LeaderError>>,
}

/// Marks a replica as leading for as long as its `lead` future lives, which includes its
/// being dropped when the task is aborted.
struct Term {
    leaders: Arc<Leaders>,
    leading: Arc<AtomicBool>,
}

impl Term {
    fn start(leaders: Arc<Leaders>, leading: Arc<AtomicBool>) -> Self {
        if leaders.running.fetch_add(1, Ordering::SeqCst) > 0 {
            leaders.overlapped.store(true, Ordering::SeqCst);
        }
        leading.store(true, Ordering::SeqCst);
        Self { leaders, leading }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        self.leading.store(false, Ordering::SeqCst);
        self.leaders.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Candidate {
    fn start(client: Client, settings: LeaseSettings, leaders: &Arc<Leaders>) -> Self {
        let leading = Arc::new(AtomicBool::new(false));
        let terms = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let lead = {
            let (leaders, leading, terms) = (leaders.clone(), leading.clone(), terms.clone());
            move |token: CancellationToken| {
                terms.fetch_add(1, Ordering::SeqCst);
                let term = Term::start(leaders.clone(), leading.clone());
                async move {
                    token.cancelled().await;
                    drop(term);
                }
            }
        };
        let task = tokio::spawn(run_as_leader(client, settings, shutdown.clone(), lead));
        Self {
            leading,
            terms,
            shutdown,
            task,
        }
    }

    fn leads(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Cancels its shutdown token and waits for `run_as_leader` to return.
    async fn stop(self) {
        self.shutdown.cancel();
        let result = timeout(WAIT, self.task)
            .await
            .expect("run_as_leader returns after shutdown")
            .expect("the candidate task does not panic");
        assert!(result.is_ok(), "run_as_leader failed: {result:?}");
    }
}

/// Polls `condition` until it holds; panics naming `what` after [`WAIT`].
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let poll = async {
        while !condition() {
            sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, poll)
        .await
        .unwrap_or_else(|_| panic!("{what} within {WAIT:?}"));
}

/// One test's contest for the Lease, in a fresh namespace.
struct Contest {
    client: Client,
    ns: String,
    leaders: Arc<Leaders>,
}

impl Contest {
    async fn new(cp: &ControlPlane) -> Self {
        Self {
            client: cp.client().await,
            ns: cp.fresh_namespace().await,
            leaders: Arc::new(Leaders::default()),
        }
    }

    /// Short timings so that expiry can be watched in a test.
    fn settings(&self, identity: &str) -> LeaseSettings {
        LeaseSettings {
            lease_duration: LEASE_DURATION,
            renew_interval: RENEW_INTERVAL,
            retry_interval: RETRY_INTERVAL,
            ..LeaseSettings::new(&self.ns, LEASE, identity)
        }
    }

    fn start(&self, settings: LeaseSettings) -> Candidate {
        Candidate::start(self.client.clone(), settings, &self.leaders)
    }

    fn overlapped(&self) -> bool {
        self.leaders.overlapped.load(Ordering::SeqCst)
    }

    async fn lease(&self) -> Lease {
        let namespace = &self.ns;
        Api::<Lease>::namespaced(self.client.clone(), namespace)
            .get(LEASE)
            .await
            .unwrap_or_else(|e| panic!("reading lease {namespace}/{LEASE}: {e}"))
    }

    /// Starts replica-a and waits until it leads, then starts replica-b and checks that
    /// after `wait` it still does not.
    async fn a_leads_then_b_waits(
        &self,
        settings: impl Fn(&'static str) -> LeaseSettings,
        wait: Duration,
    ) -> (Candidate, Candidate) {
        let a = self.start(settings("replica-a"));
        wait_until("replica-a leads", || a.leads()).await;
        let b = self.start(settings("replica-b"));
        sleep(wait).await;
        assert!(
            !b.leads(),
            "replica-b leads while replica-a holds the lease"
        );
        (a, b)
    }

    /// Checks that replica-b took the Lease over in one transition, without two replicas
    /// ever leading at once; then stops it.
    async fn assert_b_took_over(&self, b: Candidate) {
        assert!(!self.overlapped());

        let lease = self.lease().await;
        assert_eq!(holder(&lease), Some("replica-b"));
        assert_eq!(transitions(&lease), Some(1));

        b.stop().await;
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

fn transitions(lease: &Lease) -> Option<i32> {
    lease.spec.as_ref()?.lease_transitions
}

#[tokio::test]
async fn only_one_of_two_candidates_leads() {
    let contest = Contest::new(controlplane::shared().await).await;
    let a = contest.start(contest.settings("replica-a"));
    let b = contest.start(contest.settings("replica-b"));
    wait_until("one candidate leads", || a.leads() || b.leads()).await;

    // Over several renewals the same one keeps leading, for one uninterrupted term.
    let (leader, other) = if a.leads() { (&a, &b) } else { (&b, &a) };
    let watch_until = Instant::now() + 4 * RENEW_INTERVAL;
    while Instant::now() < watch_until {
        assert!(leader.leads(), "the leader stopped leading");
        assert!(!other.leads(), "the other candidate leads too");
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(leader.terms.load(Ordering::SeqCst), 1);
    assert_eq!(other.terms.load(Ordering::SeqCst), 0);
    assert!(!contest.overlapped());

    let lease = contest.lease().await;
    let expected = if a.leads() { "replica-a" } else { "replica-b" };
    assert_eq!(holder(&lease), Some(expected));

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_successor_takes_over_when_the_leader_stops() {
    let contest = Contest::new(controlplane::shared().await).await;
    // A long lease: a takeover much faster than it can only come from the release.
    let long = |identity| LeaseSettings {
        lease_duration: Duration::from_secs(15),
        ..contest.settings(identity)
    };
    let (a, b) = contest.a_leads_then_b_waits(long, 2 * RETRY_INTERVAL).await;

    let stopped = Instant::now();
    a.stop().await;
    wait_until("replica-b leads", || b.leads()).await;
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(5),
        "replica-b took {handover:?} to take over a released 15 s lease"
    );
    contest.assert_b_took_over(b).await;
}

#[tokio::test]
async fn a_leader_releases_the_lease_after_a_renewal_whose_answer_it_never_saw() {
    let contest = Contest::new(controlplane::shared().await).await;
    // No renewal of its own during the test.
    let slow = |identity| LeaseSettings {
        lease_duration: Duration::from_secs(120),
        renew_interval: Duration::from_secs(100),
        ..contest.settings(identity)
    };
    let a = contest.start(slow("replica-a"));
    wait_until("replica-a leads", || a.leads()).await;

    // A renewal that was in flight when the term ended lands, and its answer is dropped:
    // the Lease is newer than the one replica-a last saw, and still names it.
    let mut lease = contest.lease().await;
    let spec = lease.spec.as_mut().expect("a lease spec");
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    Api::<Lease>::namespaced(contest.client.clone(), &contest.ns)
        .replace(LEASE, &PostParams::default(), &lease)
        .await
        .expect("renew the lease behind replica-a's back");

    a.stop().await;

    assert_eq!(
        holder(&contest.lease().await),
        None,
        "the lease is released"
    );
}

#[tokio::test]
async fn work_that_ignores_the_end_of_its_term_is_dropped_and_the_lease_released() {
    let contest = Contest::new(controlplane::shared().await).await;
    let leaders = Arc::new(Leaders::default());
    let leading = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    // Never looks at its token: only dropping it ends the term.
    let lead = {
        let (leaders, leading) = (leaders.clone(), leading.clone());
        move |_token: CancellationToken| {
            let term = Term::start(leaders.clone(), leading.clone());
            async move {
                let _term = term;
                std::future::pending::<()>().await;
            }
        }
    };
    let task = tokio::spawn(run_as_leader(
        contest.client.clone(),
        contest.settings("stubborn"),
        shutdown.clone(),
        lead,
    ));
    wait_until("the stubborn replica leads", || {
        leading.load(Ordering::SeqCst)
    })
    .await;

    shutdown.cancel();
    let result = timeout(WAIT, task)
        .await
        .expect("run_as_leader returns although its work never stops")
        .expect("the candidate task does not panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(!leading.load(Ordering::SeqCst), "the work was dropped");
    assert_eq!(
        holder(&contest.lease().await),
        None,
        "and the lease released"
    );
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_after_the_lease_expires() {
    let contest = Contest::new(controlplane::shared().await).await;
    // Let replica-a renew a few times first, so that the expiry is measured from a renewal.
    let (a, b) = contest
        .a_leads_then_b_waits(|identity| contest.settings(identity), 2 * RENEW_INTERVAL)
        .await;

    // A crash: no release, no more renewals.
    a.task.abort();
    let crashed = Instant::now();
    wait_until("replica-b leads", || b.leads()).await;
    let takeover = crashed.elapsed();
    // replica-a renewed at most one renew interval before the crash.
    let earliest = LEASE_DURATION - RENEW_INTERVAL - Duration::from_millis(250);
    let latest = LEASE_DURATION + 3 * RETRY_INTERVAL;
    assert!(
        (earliest..=latest).contains(&takeover),
        "replica-b took over {takeover:?} after the crash, expected {earliest:?}..={latest:?}"
    );
    contest.assert_b_took_over(b).await;
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_its_lease_expires() {
    // Its own control plane: this test stops the API server.
    let cp = ControlPlane::start_private().await;
    let contest = Contest::new(&cp).await;
    let a = contest.start(contest.settings("replica-a"));
    wait_until("replica-a leads", || a.leads()).await;
    sleep(2 * RENEW_INTERVAL).await;

    cp.stop_apiserver().await;
    let unreachable = Instant::now();
    wait_until("replica-a stops leading", || !a.leads()).await;
    // Its last renewal was at most one renew interval before the API server went away, and
    // a successor may take over one lease duration after that renewal: the leader must
    // have stopped before.
    let stopped = unreachable.elapsed();
    assert!(
        stopped < LEASE_DURATION - RENEW_INTERVAL + Duration::from_millis(250),
        "replica-a led for {stopped:?} without renewing a {LEASE_DURATION:?} lease"
    );

    // Once the API server is back it leads again, in a new term.
    cp.start_apiserver().await;
    wait_until("replica-a leads again", || a.leads()).await;
    assert_eq!(a.terms.load(Ordering::SeqCst), 2);

    a.stop().await;
}

/// Writes the Lease as a holder whose clock is `skew` off ours would, renewing it now.
async fn held_by_a_skewed_clock(contest: &Contest, skew: k8s_openapi::jiff::SignedDuration) {
    let then = MicroTime(
        k8s_openapi::jiff::Timestamp::now()
            .checked_add(skew)
            .expect("a valid time"),
    );
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(LEASE.to_owned()),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            holder_identity: Some("replica-skewed".to_owned()),
            acquire_time: Some(then.clone()),
            renew_time: Some(then),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            ..Default::default()
        }),
    };
    Api::<Lease>::namespaced(contest.client.clone(), &contest.ns)
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the lease");
}

#[tokio::test]
async fn a_holder_whose_clock_is_behind_keeps_its_lease_for_a_whole_duration() {
    let contest = Contest::new(controlplane::shared().await).await;
    // Renewed just now, by a clock an hour behind: by our clock it expired long ago.
    held_by_a_skewed_clock(&contest, k8s_openapi::jiff::SignedDuration::from_hours(-1)).await;
    let started = Instant::now();
    let b = contest.start(contest.settings("replica-b"));
    wait_until("replica-b leads", || b.leads()).await;
    assert!(
        started.elapsed() >= LEASE_DURATION,
        "replica-b took the lease after {:?}, before it went a lease duration unchanged",
        started.elapsed()
    );
    b.stop().await;
}

#[tokio::test]
async fn a_holder_whose_clock_is_ahead_loses_its_lease_when_it_stops_renewing() {
    let contest = Contest::new(controlplane::shared().await).await;
    // By our clock this renewal is an hour in the future; it still expires a lease
    // duration after we saw it last change.
    held_by_a_skewed_clock(&contest, k8s_openapi::jiff::SignedDuration::from_hours(1)).await;
    let b = contest.start(contest.settings("replica-b"));
    wait_until("replica-b leads", || b.leads()).await;
    b.stop().await;
}
