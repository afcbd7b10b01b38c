//! The mirror: keeps `ExternalService`s in the cluster and registrations in PostgreSQL in
//! step, one name at a time.
//!
//! - A registration made through the API is server-side applied as its `ExternalService`
//!   (the outbox says which names changed), marked with the registration's uid and this
//!   installation's identity; one edited or deleted by hand is applied again.
//! - An `ExternalService` is deleted only when an outbox row says that its registration
//!   (that uid, of this installation) was deleted, never for being absent from the
//!   database: an empty, restored or foreign database, a second installation, or an
//!   exported resource applied with kubectl deletes nothing. Such resources are kept and
//!   counted (`extsvc_mirror_unknown_registrations`).
//! - An `ExternalService` made in the cluster (no registration annotation) is copied into
//!   PostgreSQL as a read-only registration, so the API lists it.
//! - The status the controller publishes is copied back, for the API to show.
//!
//! Every trigger (an outbox notification, a watch event, a periodic full pass) only
//! queues a name; `sync` then compares both sides and writes only what differs, so the
//! mirror catches up after any outage of either side.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::reflector::{self, ObjectRef, Store as Cache};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Kind, Metrics, Operation};
use crate::resource::{ExternalService, Origin};
use crate::store::Channel;
use crate::store::{Change, ClusterService, Store, StoreError, StoredService};
use crate::sync::lock;

use super::{INSTALLATION_ANNOTATION, MIRROR_MANAGER, REGISTRATION_ANNOTATION, scoped_api};

/// Outbox rows read per pass.
const OUTBOX_BATCH: i64 = 500;
/// Names synced at once.
const CONCURRENCY: usize = 16;
/// The outbox is also read this often, in case a notification was missed.
const POLL: Duration = Duration::from_secs(5);
/// Both sides are compared in full this often.
const FULL_PASS: Duration = Duration::from_secs(600);

type Key = (String, String);

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not apply ExternalService {namespace}/{name}")]
    ApplyExternalService {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("could not delete ExternalService {namespace}/{name}")]
    DeleteExternalService {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("ExternalService {namespace}/{name} was made by {made_by}; it is left alone")]
    Foreign {
        namespace: String,
        name: String,
        made_by: String,
    },
}

struct Mirror {
    store: Store,
    client: Client,
    namespace: Option<String>,
    cache: Cache<ExternalService>,
    metrics: Metrics,
    /// This installation's identity, from the database.
    installation: String,
    /// Names whose `ExternalService` carries a registration the database does not know.
    unknown: Mutex<BTreeSet<Key>>,
}

/// Runs the mirror until `shutdown` is cancelled.
/// With a `namespace`, only that namespace is mirrored (for namespace-scoped installs).
pub async fn run(
    store: Store,
    client: Client,
    namespace: Option<String>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let (cache, writer) = reflector::store();
    let events = reflector::reflector(
        writer,
        watcher(
            scoped_api::<ExternalService>(client.clone(), namespace.as_deref()),
            super::client::watch_config(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let Some(installation) = read_installation(&store, &shutdown).await else {
        return;
    };
    let mirror = Arc::new(Mirror {
        store,
        client,
        namespace,
        cache,
        metrics,
        installation,
        unknown: Mutex::default(),
    });
    let mut events = std::pin::pin!(events);
    let mut due = Due {
        outbox: true,
        full_pass: true,
        ..Due::default()
    };
    let mut notifications = mirror.store.notifications(Channel::Outbox);
    let mut poll = tokio::time::interval(POLL);
    let mut full_pass = tokio::time::interval(FULL_PASS);
    let mut cache_ready = false;

    loop {
        if let Err(error) = notifications.connect().await {
            log("listen for outbox rows", &error);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(Ok(service)) => {
                    due.names.insert((service.namespace().unwrap_or_default(), service.name_any()));
                }
                Some(Err(error)) => log("watch ExternalServices", &error),
                None => return,
            },
            _ = notifications.next() => due.outbox = true,
            // The first full list of the cluster's side arrived: start comparing.
            Ok(()) = mirror.cache.wait_until_ready(), if !cache_ready => {}
            _ = poll.tick() => {
                due.outbox = true;
                due.names.append(&mut due.failed);
            }
            _ = full_pass.tick() => due.full_pass = true,
        }
        // Comparing needs the cluster's side: until the watch has listed everything, only
        // collect work. (The watch stream fills the cache only while it is polled above.)
        cache_ready = mirror.cache.wait_until_ready().now_or_never().is_some();
        if cache_ready {
            mirror.work(&mut due).await;
        }
    }
}

/// What the loop owes the cluster.
#[derive(Default)]
struct Due {
    /// Names to sync now.
    names: BTreeSet<Key>,
    /// Names whose sync failed, for the next poll rather than a tight loop.
    failed: BTreeSet<Key>,
    /// The outbox may hold rows.
    outbox: bool,
    /// Every name, registered or in the cluster, is to be synced.
    full_pass: bool,
}

/// This installation's identity, read from the database (retried until it answers);
/// `None` on shutdown.
async fn read_installation(store: &Store, shutdown: &CancellationToken) -> Option<String> {
    loop {
        match store.installation().await {
            Ok(id) => return Some(id.to_string()),
            Err(error) => log("read the installation's identity", &error),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

fn log(action: &str, error: &dyn std::error::Error) {
    tracing::warn!(error = %crate::telemetry::chain(error), "mirror: could not {action}");
}

impl Mirror {
    /// Pays what is due: a full pass, the outbox, then the names collected.
    async fn work(self: &Arc<Self>, due: &mut Due) {
        if std::mem::take(&mut due.full_pass) {
            match self.store.service_keys(self.namespace.as_deref()).await {
                Ok(keys) => due.names.extend(keys),
                Err(error) => log("list registrations", &error),
            }
            due.names.extend(
                self.cache
                    .state()
                    .iter()
                    .map(|s| (s.namespace().unwrap_or_default(), s.name_any())),
            );
        }
        if due.outbox {
            due.outbox = !self.drain_outbox().await;
        }
        let names = std::mem::take(&mut due.names);
        due.failed.extend(self.sync_all(names).await);
    }

    /// Syncs `keys`, a few at a time; returns those that failed.
    async fn sync_all(self: &Arc<Self>, keys: BTreeSet<Key>) -> Vec<Key> {
        futures::stream::iter(keys)
            .map(|key| {
                let mirror = self.clone();
                async move {
                    let result = mirror.sync(&key, &[]).await;
                    result.map_err(|error| {
                        log("sync a registration", &error);
                        key
                    })
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|result| futures::future::ready(result.err()))
            .collect()
            .await
    }

    /// Syncs every name with outbox rows and clears the rows of those that succeeded.
    /// Returns whether the outbox is empty now.
    async fn drain_outbox(self: &Arc<Self>) -> bool {
        let changes = match self
            .store
            .pending_changes(self.namespace.as_deref(), OUTBOX_BATCH)
            .await
        {
            Ok(changes) => changes,
            Err(error) => {
                log("read the outbox", &error);
                return false;
            }
        };
        let complete = changes.len() < OUTBOX_BATCH as usize;
        let results: Vec<bool> = futures::stream::iter(changes)
            .map(|change| {
                let mirror = self.clone();
                async move { mirror.sync_change(change).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        complete && results.into_iter().all(|ok| ok)
    }

    async fn sync_change(&self, change: Change) -> bool {
        let result = match self
            .sync(
                &(change.namespace.clone(), change.name.clone()),
                &change.deleted,
            )
            .await
        {
            Ok(()) => self
                .store
                .forget_change(&change)
                .await
                .map_err(MirrorError::from),
            Err(error) => {
                // Out of the way of the changes behind it, until its turn comes again.
                let message = crate::telemetry::chain(&error);
                if let Err(error) = self.store.postpone_change(&change, &message).await {
                    log("postpone a change", &error);
                }
                Err(error)
            }
        };
        result
            .map_err(|error| log("mirror a change", &error))
            .is_ok()
    }

    /// Makes the cluster and PostgreSQL agree about one name; `deleted` are the
    /// registrations of that name the outbox says were deleted.
    async fn sync(&self, key: &Key, deleted: &[uuid::Uuid]) -> Result<(), MirrorError> {
        let (namespace, name) = key;
        let stored = self.store.find_service(namespace, name).await?;
        let live = self.cache.get(&ObjectRef::new(name).within(namespace));
        self.count_unknown(key, false);
        match (stored, live) {
            (Some(stored), live) if stored.origin() == Origin::Api => {
                self.mirror_registration(&stored, live.as_deref()).await
            }
            (Some(_), Some(live)) if registration_uid(&live).is_none() => {
                self.copy_cluster_service(&live).await
            }
            // A read-only copy whose ExternalService is gone, or was taken over by a
            // registration's annotation: forget the copy.
            (Some(_), _) => Ok(self.store.delete_cluster_service(namespace, name).await?),
            (None, _) if !deleted.is_empty() => self.delete_deleted(key, deleted).await,
            (None, live) => self.unregistered(key, live.as_deref()).await,
        }
    }

    /// A name with no row: a resource made in the cluster is copied; one that carries a
    /// registration is kept and counted, as the database may not be the one that made it.
    async fn unregistered(
        &self,
        key: &Key,
        live: Option<&ExternalService>,
    ) -> Result<(), MirrorError> {
        match live {
            Some(live) if registration_uid(live).is_some() => {
                if self.count_unknown(key, true) {
                    tracing::warn!(
                        namespace = %key.0, name = %key.1,
                        "mirror: ExternalService carries a registration this database does not know; keeping it"
                    );
                }
                Ok(())
            }
            Some(live) => self.copy_cluster_service(live).await,
            None => Ok(()),
        }
    }

    /// Records whether `key` names an unknown registration; returns whether that is news.
    fn count_unknown(&self, key: &Key, unknown: bool) -> bool {
        let mut names = lock(&self.unknown);
        let news = if unknown {
            names.insert(key.clone())
        } else {
            names.remove(key)
        };
        self.metrics.set_unknown_registrations(names.len());
        news
    }

    /// Whether `live` was made by this installation (or before installations had an
    /// identity, when only the registration uid was written).
    fn made_here(&self, live: &ExternalService) -> bool {
        live.annotations()
            .get(INSTALLATION_ANNOTATION)
            .is_none_or(|id| *id == self.installation)
    }

    async fn mirror_registration(
        &self,
        stored: &StoredService,
        live: Option<&ExternalService>,
    ) -> Result<(), MirrorError> {
        // Made with kubectl before the registration (the copy into PostgreSQL had not
        // happened yet, or the API ran alone), or by another installation: not ours.
        let foreign =
            |live: &&ExternalService| registration_uid(live).is_none() || !self.made_here(live);
        if let Some(live) = live.filter(foreign) {
            let made_by = match live.annotations().get(INSTALLATION_ANNOTATION) {
                Some(installation) => format!("another installation of extsvc ({installation})"),
                None => "hand (with kubectl or another client)".to_owned(),
            };
            let error = MirrorError::Foreign {
                namespace: stored.namespace.clone(),
                name: stored.name.clone(),
                made_by,
            };
            let message = crate::telemetry::chain(&error);
            self.store
                .record_mirrored(stored.uid, None, Some(&message))
                .await?;
            return Err(error);
        }
        let current = live.is_some_and(|live| mirrors(stored, &self.installation, live));
        if !current && let Err(error) = self.apply(stored).await {
            let message = crate::telemetry::chain(&error);
            self.store
                .record_mirrored(stored.uid, None, Some(&message))
                .await?;
            return Err(error);
        }
        self.store
            .record_mirrored(stored.uid, Some(stored.generation), None)
            .await?;
        if let Some(live) = live.filter(|_| current) {
            self.store
                .record_status(&stored.namespace, &stored.name, live.status.as_ref())
                .await?;
        }
        Ok(())
    }

    async fn apply(&self, stored: &StoredService) -> Result<(), MirrorError> {
        let mut annotations = stored.annotations.0.clone();
        annotations.insert(REGISTRATION_ANNOTATION.to_owned(), stored.uid.to_string());
        annotations.insert(
            INSTALLATION_ANNOTATION.to_owned(),
            self.installation.clone(),
        );
        let desired = ExternalService {
            metadata: ObjectMeta {
                name: Some(stored.name.clone()),
                namespace: Some(stored.namespace.clone()),
                labels: Some(stored.labels.0.clone()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: stored.spec.0.clone(),
            status: None,
        };
        let api = Api::<ExternalService>::namespaced(self.client.clone(), &stored.namespace);
        let failed = |source| MirrorError::ApplyExternalService {
            namespace: stored.namespace.clone(),
            name: stored.name.clone(),
            source,
        };
        // Force: the registration is the truth, whoever edited the resource since.
        let applied = api
            .patch(
                &stored.name,
                &PatchParams::apply(MIRROR_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
            .map_err(failed)?;
        self.metrics
            .count_write(Kind::ExternalService, Operation::Apply);
        // Server-side apply keeps list items and fields another manager added by hand
        // (e.g. an extra address); only replacing the spec removes them. A conflict here
        // means another edit raced us: the next sync tries again.
        if applied.spec != stored.spec.0 {
            let mut exact = applied;
            exact.spec = stored.spec.0.clone();
            exact.metadata.managed_fields = None;
            api.replace(&stored.name, &PostParams::default(), &exact)
                .await
                .map_err(failed)?;
            self.metrics
                .count_write(Kind::ExternalService, Operation::Apply);
        }
        Ok(())
    }

    /// Deletes the `ExternalService` of a deleted registration, if it is still that
    /// registration's (of this installation); anything else there is left to
    /// [`Mirror::unregistered`].
    async fn delete_deleted(&self, key: &Key, deleted: &[uuid::Uuid]) -> Result<(), MirrorError> {
        let (namespace, name) = key;
        let api = Api::<ExternalService>::namespaced(self.client.clone(), namespace);
        let failed = |source| MirrorError::DeleteExternalService {
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        };
        // From the API server, not the cache: the cache may not have seen our own apply.
        // A list by name (a consistent read) rather than a get, which RBAC does not grant.
        let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
        let Some(live) = api.list(&by_name).await.map_err(failed)?.items.pop() else {
            return Ok(());
        };
        let registration = registration_uid(&live).and_then(|uid| uuid::Uuid::parse_str(uid).ok());
        if !registration.is_some_and(|uid| deleted.contains(&uid)) || !self.made_here(&live) {
            return self.unregistered(key, Some(&live)).await;
        }
        // That very object: a resource made again under the name meanwhile is not ours.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: live.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                self.metrics
                    .count_write(Kind::ExternalService, Operation::Delete);
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(failed(source)),
        }
    }

    async fn copy_cluster_service(&self, live: &ExternalService) -> Result<(), MirrorError> {
        let empty = BTreeMap::new();
        let namespace = live.namespace().unwrap_or_default();
        let name = live.name_any();
        self.store
            .put_cluster_service(&ClusterService {
                uid: live.metadata.uid.as_deref().unwrap_or_default(),
                namespace: &namespace,
                name: &name,
                generation: live.metadata.generation.unwrap_or(1),
                labels: live.metadata.labels.as_ref().unwrap_or(&empty),
                annotations: live.metadata.annotations.as_ref().unwrap_or(&empty),
                spec: &live.spec,
            })
            .await?;
        self.store
            .record_status(&namespace, &name, live.status.as_ref())
            .await?;
        Ok(())
    }
}

fn registration_uid(live: &ExternalService) -> Option<&String> {
    live.annotations().get(REGISTRATION_ANNOTATION)
}

/// Whether the live resource says what the registration says. Labels and annotations
/// others added are theirs to keep.
fn mirrors(stored: &StoredService, installation: &str, live: &ExternalService) -> bool {
    let contains = |live: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>| {
        wanted.iter().all(|(k, v)| live.get(k) == Some(v))
    };
    registration_uid(live).is_some_and(|uid| *uid == stored.uid.to_string())
        && live
            .annotations()
            .get(INSTALLATION_ANNOTATION)
            .is_some_and(|id| id == installation)
        && live.spec == stored.spec.0
        && contains(live.labels(), &stored.labels.0)
        && contains(live.annotations(), &stored.annotations.0)
}
