//! DNS names of endpoints, resolved into IPs and refreshed.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{DnsSubdomain, check_routable};

use super::addresses::Resolutions;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The IPs of a name, or why there are none.
type Answer = Result<Vec<IpAddr>, String>;

/// Resolves names with the system resolver, keeping answers for `refresh`: a service with
/// names is reconciled again every `refresh` and picks up changed records then.
pub struct Resolver {
    refresh: Duration,
    cache: Mutex<HashMap<DnsSubdomain, (Instant, Answer)>>,
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
                    let answer = lookup(name).await;
                    if let Ok(mut cache) = self.cache.lock() {
                        cache.insert(name.clone(), (Instant::now(), answer.clone()));
                    }
                    answer
                }
            };
            resolutions.insert(name.clone(), answer);
        }
        resolutions
    }

    fn cached(&self, name: &DnsSubdomain) -> Option<Answer> {
        let cache = self.cache.lock().ok()?;
        let (at, answer) = cache.get(name)?;
        (at.elapsed() < self.refresh).then(|| answer.clone())
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
