//! DNS names of endpoints, resolved into IPs and refreshed.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{DnsSubdomain, check_routable};

use super::addresses::Resolutions;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a name that stops resolving keeps its last addresses: a resolver outage or a
/// timeout must not take every address of a name out of the slices at once.
const KEEP_LAST_GOOD: Duration = Duration::from_secs(300);

/// The IPs of a name, or why there are none.
type Answer = Result<Vec<IpAddr>, String>;

/// What the resolver knows of one name.
struct Entry {
    checked: Instant,
    answer: Answer,
    /// The last successful answer, and when it was had.
    last_good: Option<(Instant, Vec<IpAddr>)>,
}

/// Resolves names with the system resolver, keeping answers for `refresh`: a service with
/// names is reconciled again every `refresh` and picks up changed records then. A failed
/// lookup keeps the last good answer for `KEEP_LAST_GOOD`.
pub struct Resolver {
    refresh: Duration,
    cache: Mutex<HashMap<DnsSubdomain, Entry>>,
}

impl Resolver {
    pub fn new(refresh: Duration) -> Self {
        Self {
            refresh,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    pub async fn resolve(&self, names: &[DnsSubdomain]) -> Resolutions {
        let mut resolutions = Resolutions::new();
        for name in names {
            let cached = self.cached(name);
            let answer = match cached {
                Some(answer) => answer,
                None => {
                    let fresh = lookup(name).await;
                    let Ok(mut cache) = self.cache.lock() else {
                        resolutions.insert(name.clone(), fresh);
                        continue;
                    };
                    let last_good = cache.get(name).and_then(|e| e.last_good.clone());
                    let now = Instant::now();
                    if let (Err(reason), Some((at, _))) = (&fresh, &last_good)
                        && now.duration_since(*at) < KEEP_LAST_GOOD
                    {
                        tracing::warn!(%name, %reason, "lookup failed; keeping the last addresses");
                    }
                    let (answer, last_good) = settle(fresh, last_good, now);
                    cache.insert(
                        name.clone(),
                        Entry {
                            checked: now,
                            answer: answer.clone(),
                            last_good,
                        },
                    );
                    answer
                }
            };
            resolutions.insert(name.clone(), answer);
        }
        resolutions
    }

    fn cached(&self, name: &DnsSubdomain) -> Option<Answer> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(name)?;
        (entry.checked.elapsed() < self.refresh).then(|| entry.answer.clone())
    }
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

/// The routable IPs of `name`, sorted; addresses Kubernetes would refuse are dropped.
async fn lookup(name: &DnsSubdomain) -> Answer {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name.as_ref(), 0)))
        .await
        .map_err(|_| format!("lookup timed out after {}s", LOOKUP_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let all: BTreeSet<IpAddr> = found.map(|socket| socket.ip()).collect();
    let routable: Vec<IpAddr> = all
        .iter()
        .copied()
        .filter(|ip| check_routable(*ip).is_ok())
        .collect();
    if routable.is_empty() && !all.is_empty() {
        return Err(
            "resolves only to loopback or link-local addresses, which Kubernetes refuses"
                .to_owned(),
        );
    }
    Ok(routable)
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

    #[test]
    fn a_failure_without_a_past_success_is_reported() {
        let (answer, last_good) = settle(Err("no such host".to_owned()), None, Instant::now());
        assert_eq!(answer, Err("no such host".to_owned()));
        assert_eq!(last_good, None);
    }
}
