//! DNS names of endpoints, resolved into IPs and refreshed.
//!
//! Lookups are bounded every way a slow or hostile zone could stall the controller: each
//! has a deadline (waiting for its turn included), a reconcile runs a few at once rather
//! than one after another, and all reconciles together hold a bounded number of the
//! blocking threads the system resolver needs. Names are looked up as absolute names
//! (a trailing dot), so that a pod's search path (`ndots:5`) neither slows every lookup
//! nor turns `db` into a name inside the cluster.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
// tokio's clock, so that tests can run time forward.
use tokio::time::Instant;

use crate::domain::{AddressPolicy, DnsSubdomain, check_routable};
use crate::sync::lock;

use super::addresses::Resolutions;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Lookups of one reconcile at once.
const LOOKUPS_PER_RECONCILE: usize = 8;
/// Lookups of all reconciles at once: each holds a blocking thread until the system
/// resolver returns, even past its deadline.
const LOOKUPS_IN_FLIGHT: usize = 64;
/// How long a name that stops resolving keeps its last addresses: a resolver outage or a
/// timeout must not take every address of a name out of the slices at once.
const KEEP_LAST_GOOD: Duration = Duration::from_secs(300);
/// How often names nobody asked for lately are dropped from the cache.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// IPs of one name kept, at most: the lowest, so that an answer rotated or shuffled by
/// the DNS server still gives the same set.
const MAX_IPS_PER_NAME: usize = 64;

/// The IPs of a name, or why there are none.
type Answer = Result<Vec<IpAddr>, String>;

/// Looks up an absolute name: the system resolver, or a stand-in in unit tests.
type Lookup = fn(String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;

/// What the resolver knows of one name.
struct Entry {
    checked: Instant,
    /// When a reconcile last asked for the name.
    used: Instant,
    answer: Answer,
    /// The last successful answer, and when it was had.
    last_good: Option<(Instant, Vec<IpAddr>)>,
}

/// Resolves names with the system resolver, keeping answers for `refresh`: a service with
/// names is reconciled again every `refresh` and picks up changed records then. A failed
/// lookup keeps the last good answer for `KEEP_LAST_GOOD`. A name no reconcile asked for
/// in twice that long (or two refreshes, if longer) is forgotten.
pub struct Resolver {
    refresh: Duration,
    /// Answers in denied ranges are dropped.
    policy: Arc<AddressPolicy>,
    cache: Mutex<Cache>,
    in_flight: Arc<Semaphore>,
    lookup: Lookup,
}

struct Cache {
    entries: HashMap<DnsSubdomain, Entry>,
    swept: Instant,
}

impl Resolver {
    pub fn new(refresh: Duration, policy: Arc<AddressPolicy>) -> Self {
        Self::with_lookup(refresh, policy, system_lookup)
    }

    fn with_lookup(refresh: Duration, policy: Arc<AddressPolicy>, lookup: Lookup) -> Self {
        Self {
            refresh,
            policy,
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                swept: Instant::now(),
            }),
            in_flight: Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT)),
            lookup,
        }
    }

    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    pub async fn resolve(&self, names: &[DnsSubdomain]) -> Resolutions {
        self.sweep();
        let unique: BTreeSet<DnsSubdomain> = names.iter().cloned().collect();
        futures::stream::iter(unique)
            .map(|name| async move {
                let answer = self.answer(&name).await;
                (name, answer)
            })
            .buffer_unordered(LOOKUPS_PER_RECONCILE)
            .collect()
            .await
    }

    async fn answer(&self, name: &DnsSubdomain) -> Answer {
        if let Some(answer) = self.cached(name) {
            return answer;
        }
        let fresh = self.lookup(name).await;
        let mut cache = lock(&self.cache);
        let last_good = cache.entries.get(name).and_then(|e| e.last_good.clone());
        let now = Instant::now();
        if let (Err(reason), Some((at, _))) = (&fresh, &last_good)
            && now.duration_since(*at) < KEEP_LAST_GOOD
        {
            tracing::warn!(%name, %reason, "lookup failed; keeping the last addresses");
        }
        let (answer, last_good) = settle(fresh, last_good, now);
        cache.entries.insert(
            name.clone(),
            Entry {
                checked: now,
                used: now,
                answer: answer.clone(),
                last_good,
            },
        );
        answer
    }

    fn cached(&self, name: &DnsSubdomain) -> Option<Answer> {
        let mut cache = lock(&self.cache);
        let entry = cache.entries.get_mut(name)?;
        entry.used = Instant::now();
        (entry.checked.elapsed() < self.refresh).then(|| entry.answer.clone())
    }

    /// Drops the names nobody asked for lately, at most once every `SWEEP_EVERY`.
    fn sweep(&self) {
        let mut cache = lock(&self.cache);
        if cache.swept.elapsed() < SWEEP_EVERY {
            return;
        }
        let unused_for = (KEEP_LAST_GOOD * 2).max(self.refresh * 2);
        cache
            .entries
            .retain(|_, entry| entry.used.elapsed() < unused_for);
        cache.swept = Instant::now();
    }

    /// The routable IPs of `name`, sorted, at most [`MAX_IPS_PER_NAME`]; addresses
    /// Kubernetes would refuse are dropped.
    /// The deadline counts the wait for a turn; a lookup past it keeps its thread and its
    /// turn until the system resolver returns, so slow lookups never pile up threads.
    async fn lookup(&self, name: &DnsSubdomain) -> Answer {
        let in_flight = self.in_flight.clone();
        let lookup = self.lookup;
        let absolute = format!("{name}.");
        let task = tokio::spawn(async move {
            let _turn = in_flight.acquire_owned().await;
            lookup(absolute).await
        });
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, task)
            .await
            .map_err(|_| format!("lookup timed out after {}s", LOOKUP_TIMEOUT.as_secs()))?
            .map_err(|e| format!("lookup failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let all: BTreeSet<IpAddr> = found.into_iter().collect();
        let routable: Vec<IpAddr> = all
            .iter()
            .copied()
            .filter(|ip| check_routable(*ip).is_ok() && self.policy.check_anywhere(*ip).is_ok())
            .take(MAX_IPS_PER_NAME)
            .collect();
        if routable.is_empty()
            && let Some(first) = all.first()
        {
            let reason = match check_routable(*first) {
                Ok(_) => self.policy.check_anywhere(*first).err().unwrap_or_default(),
                Err(_) => format!("{first} is loopback or link-local, which Kubernetes refuses"),
            };
            return Err(format!(
                "resolves only to addresses it may not use; {reason}"
            ));
        }
        Ok(routable)
    }

    #[cfg(test)]
    fn cached_names(&self) -> usize {
        lock(&self.cache).entries.len()
    }
}

fn system_lookup(name: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
    Box::pin(async move {
        let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
        Ok(found.map(|socket| socket.ip()).collect())
    })
}

/// The answer to use after a lookup at `now`, and the last good one to remember: a failure
/// within `KEEP_LAST_GOOD` of the last success answers with that success instead.
fn settle(
    fresh: Answer,
    last_good: Option<(Instant, Vec<IpAddr>)>,
    now: Instant,
) -> (Answer, Option<(Instant, Vec<IpAddr>)>) {
    match (fresh, last_good) {
        (Ok(ips), _) => (Ok(ips.clone()), Some((now, ips))),
        (Err(_), Some((at, ips))) if now.duration_since(at) < KEEP_LAST_GOOD => {
            (Ok(ips.clone()), Some((at, ips)))
        }
        (Err(reason), _) => (Err(reason), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn a_success_is_used_and_remembered() {
        let now = Instant::now();
        let (answer, last_good) = settle(Ok(ips(&["192.0.2.1"])), None, now);
        assert_eq!(answer, Ok(ips(&["192.0.2.1"])));
        assert_eq!(last_good, Some((now, ips(&["192.0.2.1"]))));
    }

    #[test]
    fn a_failure_keeps_the_last_good_answer_for_a_while_then_gives_up() {
        let then = Instant::now();
        let good = Some((then, ips(&["192.0.2.1", "192.0.2.2"])));

        let soon = then + KEEP_LAST_GOOD - Duration::from_secs(1);
        let (answer, last_good) = settle(Err("timed out".to_owned()), good.clone(), soon);
        assert_eq!(answer, Ok(ips(&["192.0.2.1", "192.0.2.2"])));
        assert_eq!(last_good, good, "still dated from the success");

        let late = then + KEEP_LAST_GOOD;
        let (answer, last_good) = settle(Err("timed out".to_owned()), good, late);
        assert_eq!(answer, Err("timed out".to_owned()));
        assert_eq!(last_good, None);
    }

    /// Stand-ins for the system resolver, which cannot be made slow on this machine
    /// without reconfiguring it: names starting `slow` take a minute, the others answer
    /// at once; a relative name (no trailing dot) is an error.
    fn stand_in(name: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            if !name.ends_with('.') {
                return Err(std::io::Error::other("relative name"));
            }
            if name.starts_with("slow") {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            if name.starts_with("many") {
                // 200 addresses, highest first.
                return Ok((0..200u8)
                    .rev()
                    .map(|i| IpAddr::from([198, 51, 100, i]))
                    .collect());
            }
            Ok(ips(&["192.0.2.1"]))
        })
    }

    fn names(prefix: &str, count: usize) -> Vec<DnsSubdomain> {
        (0..count)
            .map(|i| DnsSubdomain::parse(&format!("{prefix}{i}.example.com")).unwrap())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn slow_names_resolve_side_by_side_within_the_deadline_and_absolute() {
        let resolver = Resolver::with_lookup(Duration::from_secs(30), Arc::default(), stand_in);
        let mut wanted = names("slow", LOOKUPS_PER_RECONCILE);
        wanted.extend(names("fast", 20));

        let started = Instant::now();
        let resolutions = resolver.resolve(&wanted).await;

        // One after another, eight slow names would take eight deadlines.
        assert_eq!(started.elapsed(), LOOKUP_TIMEOUT);
        for (name, answer) in &resolutions {
            if name.as_ref().starts_with("slow") {
                assert_eq!(answer, &Err("lookup timed out after 3s".to_owned()));
            } else {
                assert_eq!(answer, &Ok(ips(&["192.0.2.1"])), "{name}");
            }
        }
        assert_eq!(resolutions.len(), wanted.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_yields_its_lowest_sixty_four_addresses() {
        let resolver = Resolver::with_lookup(Duration::from_secs(30), Arc::default(), stand_in);
        let resolutions = resolver.resolve(&names("many", 1)).await;
        let expected: Vec<IpAddr> = (0..64u8).map(|i| IpAddr::from([198, 51, 100, i])).collect();
        assert_eq!(resolutions.values().next(), Some(&Ok(expected)));
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_past_their_deadline_keep_their_turn_until_they_return() {
        let resolver = Resolver::with_lookup(Duration::from_secs(30), Arc::default(), stand_in);
        for batch in 0..LOOKUPS_IN_FLIGHT / LOOKUPS_PER_RECONCILE {
            resolver
                .resolve(&names(&format!("slow{batch}-"), LOOKUPS_PER_RECONCILE))
                .await;
        }
        assert_eq!(resolver.in_flight.available_permits(), 0);

        // Every turn is taken by a lookup still running: a new one waits, and times out.
        let late = resolver.resolve(&names("fast", 1)).await;
        assert!(late.values().all(Result::is_err), "{late:?}");

        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(resolver.in_flight.available_permits(), LOOKUPS_IN_FLIGHT);
        let later = resolver.resolve(&names("fast", 1)).await;
        assert!(later.values().all(Result::is_ok), "{later:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn names_nobody_asks_for_are_forgotten() {
        let refresh = Duration::from_secs(30);
        let resolver = Resolver::with_lookup(refresh, Arc::default(), stand_in);
        let kept = names("kept", 1);
        resolver.resolve(&names("gone", 3)).await;
        resolver.resolve(&kept).await;
        assert_eq!(resolver.cached_names(), 4);

        // A live service asks at every refresh; the other names are no longer wanted.
        let forget_after = (KEEP_LAST_GOOD * 2).max(refresh * 2);
        let mut waited = Duration::ZERO;
        while waited <= forget_after + SWEEP_EVERY {
            tokio::time::sleep(refresh).await;
            waited += refresh;
            resolver.resolve(&kept).await;
        }
        assert_eq!(resolver.cached_names(), 1);
    }

    #[test]
    fn a_failure_without_a_past_success_is_reported() {
        let (answer, last_good) = settle(Err("no such host".to_owned()), None, Instant::now());
        assert_eq!(answer, Err("no such host".to_owned()));
        assert_eq!(last_good, None);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_the_address_policy_denies_are_dropped_and_a_name_with_none_left_says_why() {
        let mut policy = AddressPolicy::default();
        policy
            .deny("192.0.2.0/24, 198.51.100.0/25", "denied by configuration")
            .unwrap();
        let resolver = Resolver::with_lookup(Duration::from_secs(30), Arc::new(policy), stand_in);

        let only_denied = resolver.resolve(&names("fast", 1)).await;
        assert_eq!(
            only_denied.into_values().next().unwrap(),
            Err("resolves only to addresses it may not use; 192.0.2.1 is in 192.0.2.0/24 (denied by configuration), which the address policy denies".to_owned())
        );
        let some_denied = resolver.resolve(&names("many", 1)).await;
        let expected: Vec<IpAddr> = (128..192u8)
            .map(|i| IpAddr::from([198, 51, 100, i]))
            .collect();
        assert_eq!(some_denied.into_values().next().unwrap(), Ok(expected));
    }
}
