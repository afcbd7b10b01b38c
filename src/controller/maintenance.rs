//! Maintenance windows as the controller applies them: an address in a window is
//! published not ready, with the reason, until the window ends. The leader keeps a copy
//! of the table, reloaded whenever a window changes (and every few seconds), wakes the
//! services whose windows changed, and deletes windows whose time has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::{DnsLabel, ServiceKey, ServiceName};
use crate::store::{Channel, Store, StoredWindow};
use crate::sync::lock;

use super::addresses::PublishedAddress;

/// How often the table is read without news of a change.
const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// Changes that come in a burst are read once.
const SETTLE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    /// An IP, or a DNS name that covers every IP it resolves to.
    address: String,
    reason: String,
    until: DateTime<Utc>,
}

/// The windows in force, per service.
#[derive(Clone, Default)]
pub struct Maintenance {
    windows: Arc<Mutex<HashMap<ServiceKey, Vec<Window>>>>,
}

impl Maintenance {
    /// Takes the addresses of `key` that are in a window at `now` out of rotation.
    pub fn apply(&self, key: &ServiceKey, addresses: &mut [PublishedAddress], now: DateTime<Utc>) {
        let windows = lock(&self.windows);
        let Some(windows) = windows.get(key) else {
            return;
        };
        for address in addresses {
            let ip = address.ip.to_string();
            let name = address.resolved_from.as_ref().map(ToString::to_string);
            let covering = windows
                .iter()
                .find(|w| w.until > now && (w.address == ip || Some(&w.address) == name.as_ref()));
            if let Some(window) = covering {
                address.ready = false;
                address.note = Some(format!(
                    "maintenance until {}: {}",
                    window.until.to_rfc3339_opts(SecondsFormat::Secs, true),
                    window.reason
                ));
            }
        }
    }

    /// How long until the first window of `key` that is in force at `now` ends.
    pub fn next_end(&self, key: &ServiceKey, now: DateTime<Utc>) -> Option<Duration> {
        lock(&self.windows)
            .get(key)?
            .iter()
            .filter(|w| w.until > now)
            .map(|w| (w.until - now).to_std().unwrap_or_default())
            .min()
    }

    /// Replaces the copy with `rows`; the services whose windows changed.
    fn replace(&self, rows: Vec<StoredWindow>) -> Vec<ServiceKey> {
        let mut fresh: HashMap<ServiceKey, Vec<Window>> = HashMap::new();
        for row in rows {
            let (Ok(namespace), Ok(name)) = (
                DnsLabel::parse(&row.namespace),
                ServiceName::parse(&row.name),
            ) else {
                continue;
            };
            fresh
                .entry(ServiceKey { namespace, name })
                .or_default()
                .push(Window {
                    address: row.address,
                    reason: row.reason,
                    until: row.until,
                });
        }
        let mut windows = lock(&self.windows);
        let mut changed: Vec<ServiceKey> = fresh
            .iter()
            .filter(|(key, new)| windows.get(*key) != Some(*new))
            .map(|(key, _)| key.clone())
            .collect();
        changed.extend(
            windows
                .keys()
                .filter(|key| !fresh.contains_key(*key))
                .cloned(),
        );
        *windows = fresh;
        changed
    }
}

/// Keeps `maintenance` like the table until `shutdown`, sending each service whose
/// windows changed to `wake`.
pub async fn keep(
    store: Store,
    maintenance: Maintenance,
    wake: mpsc::UnboundedSender<ServiceKey>,
    shutdown: CancellationToken,
) {
    let mut notifications = store.notifications(Channel::Maintenance);
    loop {
        // Without notifications, the reload every few seconds still keeps up.
        let _ = notifications.connect().await;
        if let Err(error) = store.expire_maintenance().await {
            tracing::warn!(error = %crate::telemetry::chain(&error), "could not end maintenance windows that are over");
        }
        match store.maintenance(None).await {
            Ok(rows) => {
                for key in maintenance.replace(rows) {
                    let _ = wake.send(key);
                }
            }
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::chain(&error), "could not read maintenance windows");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RELOAD_EVERY) => {}
            _ = notifications.next() => tokio::time::sleep(SETTLE).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn key() -> ServiceKey {
        ServiceKey {
            namespace: DnsLabel::parse("ns").unwrap(),
            name: ServiceName::parse("db").unwrap(),
        }
    }

    fn row(address: &str, until: DateTime<Utc>) -> StoredWindow {
        StoredWindow {
            namespace: "ns".to_owned(),
            name: "db".to_owned(),
            address: address.to_owned(),
            reason: "kernel upgrade".to_owned(),
            since: until,
            until,
            actor: "someone".to_owned(),
        }
    }

    fn address(ip: &str, name: Option<&str>) -> PublishedAddress {
        PublishedAddress {
            ip: ip.parse().unwrap(),
            resolved_from: name.map(|n| crate::domain::DnsSubdomain::parse(n).unwrap()),
            ports: BTreeSet::new(),
            zone: None,
            ready: true,
            note: None,
        }
    }

    #[test]
    fn an_address_in_a_window_is_not_ready_until_it_ends() {
        let now = Utc::now();
        let until = now + chrono::Duration::minutes(10);
        let maintenance = Maintenance::default();
        let changed =
            maintenance.replace(vec![row("192.0.2.1", until), row("db.example.com", until)]);
        assert_eq!(changed, [key()]);
        let mut addresses = [
            address("192.0.2.1", None),
            address("192.0.2.2", None),
            address("192.0.2.3", Some("db.example.com")),
        ];
        maintenance.apply(&key(), &mut addresses, now);
        let ready: Vec<bool> = addresses.iter().map(|a| a.ready).collect();
        assert_eq!(ready, [false, true, false]);
        assert!(
            addresses[0]
                .note
                .as_deref()
                .unwrap()
                .ends_with(": kernel upgrade")
        );
        assert_eq!(
            maintenance.next_end(&key(), now),
            Some(Duration::from_secs(600))
        );

        let mut later = [address("192.0.2.1", None)];
        maintenance.apply(&key(), &mut later, until);
        assert!(later[0].ready, "a window is over at its end");
        assert_eq!(maintenance.next_end(&key(), until), None);
    }

    #[test]
    fn reloading_tells_which_services_changed() {
        let until = Utc::now() + chrono::Duration::minutes(10);
        let maintenance = Maintenance::default();
        maintenance.replace(vec![row("192.0.2.1", until)]);
        assert!(
            maintenance
                .replace(vec![row("192.0.2.1", until)])
                .is_empty()
        );
        assert_eq!(maintenance.replace(Vec::new()), [key()]);
    }
}
