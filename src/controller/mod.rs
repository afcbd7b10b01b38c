//! The controller: watches `ExternalService`s (made by the mirror or with kubectl) and
//! keeps their children right: a headless Service, EndpointSlices, legacy Endpoints and
//! an Ingress, plus the status. It is the only writer of all of these. Each child kind
//! has a pure builder in its own file; this module only computes and applies.

mod addresses;
mod apply;
mod endpoint_slice;
mod endpoints;
mod ingress;
mod maintenance;
mod owner;
mod resolver;
mod service;
mod status;

#[cfg(test)]
mod fixtures;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::domain::{Address, DnsLabel, Policies, ServiceKey, ServiceName, ServiceSpec};
use crate::k8s::{
    CONTROLLER_MANAGER, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, scoped_api,
};
use crate::metrics::{Kind, Metrics, Operation};
use crate::probe::{Engine, ProbedAddress, Unresolved, probe_targets};
use crate::resource::{API_VERSION, ExternalService, ExternalServiceStatus, KIND};
use crate::sync::lock;

pub use addresses::{Health, PublishedAddress};
pub use apply::ApplyError;
pub use maintenance::{Maintenance, keep as keep_maintenance};

use addresses::{Published, Resolutions, admitted, publish};
use endpoint_slice::desired_endpoint_slices;
use endpoints::desired_endpoints;
use ingress::desired_ingress;
use owner::Owner;
use resolver::Resolver;
use service::desired_service;
use status::{Outcome, desired_status, invalid_status, readiness_changes, readiness_event};

/// How the controller behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Publish legacy v1 Endpoints beside the EndpointSlices.
    pub legacy_endpoints: bool,
    /// How long resolved DNS names are trusted before they are looked up again.
    pub dns_refresh: Duration,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Only this namespace, or all of them.
    pub namespace: Option<String>,
    /// What the platform allows: a resource made with kubectl that breaks it is invalid,
    /// and DNS names may resolve only to allowed addresses.
    pub policies: Policies,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            legacy_endpoints: true,
            dns_refresh: Duration::from_secs(30),
            concurrency: 32,
            namespace: None,
            policies: Policies::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} has no namespace or uid")]
    Unidentified(String),
    #[error("the caches of children did not fill")]
    Caches,
    #[error("the reconcile did not finish within {} s", RECONCILE_TIMEOUT.as_secs())]
    TimedOut,
    #[error(transparent)]
    ApplyChild(#[from] ApplyError),
    #[error("could not write the status of {name}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("could not encode the status of {name}")]
    EncodeStatus {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Live children, from watches of objects labelled as ours.
struct Caches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    endpoints: Store<Endpoints>,
    ingresses: Store<Ingress>,
    /// Resolves once every cache has its first full list; see [`Caches::filled`].
    filled: Shared<BoxFuture<'static, bool>>,
}

impl Caches {
    fn new(
        services: Store<Service>,
        slices: Store<EndpointSlice>,
        endpoints: Store<Endpoints>,
        ingresses: Store<Ingress>,
    ) -> Self {
        let filled = Self::filled(&services, &slices, &endpoints, &ingresses);
        Self {
            services,
            slices,
            endpoints,
            ingresses,
            filled,
        }
    }

    /// One future that waits for the four first lists, for every reconcile to share.
    /// kube-runtime's `Store::wait_until_ready` wakes only the task that polled it last
    /// (one oneshot receiver holds one waker), so reconciles that each waited on it
    /// themselves would leave all but one of them waiting forever.
    fn filled(
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        endpoints: &Store<Endpoints>,
        ingresses: &Store<Ingress>,
    ) -> Shared<BoxFuture<'static, bool>> {
        let (services, slices) = (services.clone(), slices.clone());
        let (endpoints, ingresses) = (endpoints.clone(), ingresses.clone());
        async move {
            tokio::try_join!(
                services.wait_until_ready(),
                slices.wait_until_ready(),
                endpoints.wait_until_ready(),
                ingresses.wait_until_ready(),
            )
            .is_ok()
        }
        .boxed()
        .shared()
    }
}

struct Context {
    client: Client,
    shutdown: CancellationToken,
    engine: Engine,
    maintenance: Maintenance,
    /// The status last written per resource uid, and the resourceVersion it was written
    /// over: while the watch still shows that version, our write has not come back yet
    /// and is not written again. Any other version with another status (someone else
    /// wrote it: a former leader, kubectl) is repaired.
    written: Mutex<HashMap<String, (ExternalServiceStatus, Option<String>)>>,
    /// Reconciles failed in a row, per resource uid, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    recorder: Recorder,
    caches: Caches,
    resolver: Resolver,
    metrics: Metrics,
    settings: Settings,
}

/// The longest a reconcile may take: a handful of API calls and DNS lookups of 3 s each.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);

/// How soon a resource that breaks a policy is looked at again, in case the policy
/// changed (the team's exceptions are read every 10 s).
const POLICY_RECHECK: Duration = Duration::from_secs(30);

/// How soon a resource whose child's name someone else holds looks at it again.
const NAME_CONFLICT_RETRY: Duration = Duration::from_secs(10);

/// How often the probe engine drops the services of deleted resources.
const FORGET_INTERVAL: Duration = Duration::from_secs(30);

/// What wakes the reconcile of one service: the probe engine saw its readiness change,
/// or its maintenance windows changed.
pub struct Wakers {
    pub engine: tokio::sync::mpsc::UnboundedReceiver<ServiceKey>,
    pub maintenance: tokio::sync::mpsc::UnboundedReceiver<ServiceKey>,
}

/// Runs the controller until `shutdown` is cancelled. Each service `woken` names is
/// reconciled on its own.
pub async fn run(
    client: Client,
    settings: Settings,
    (engine, maintenance): (Engine, Maintenance),
    woken: Wakers,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let scope = settings.namespace.as_deref();
    let (services, services_stream) = watch_ours(scoped_api::<Service>(client.clone(), scope));
    let (slices, slices_stream) = watch_ours(scoped_api::<EndpointSlice>(client.clone(), scope));
    let (endpoints, endpoints_stream) = watch_ours(scoped_api::<Endpoints>(client.clone(), scope));
    let (ingresses, ingresses_stream) = watch_ours(scoped_api::<Ingress>(client.clone(), scope));

    let context = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_MANAGER.to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client: client.clone(),
        shutdown: shutdown.clone(),
        engine: engine.clone(),
        maintenance,
        written: Mutex::default(),
        failures: Mutex::default(),
        caches: Caches::new(services, slices, endpoints, ingresses),
        resolver: Resolver::new(
            settings.dns_refresh,
            Arc::new(settings.policies.addresses.clone()),
        ),
        metrics,
        settings: settings.clone(),
    });
    let keys = |receiver: tokio::sync::mpsc::UnboundedReceiver<ServiceKey>| {
        futures::stream::unfold(receiver, |mut receiver| async move {
            let key = receiver.recv().await?;
            Some((
                ObjectRef::<ExternalService>::new(key.name.as_ref()).within(key.namespace.as_ref()),
                receiver,
            ))
        })
    };
    let woken = futures::stream::select(keys(woken.engine), keys(woken.maintenance));
    let controller = Controller::new(
        scoped_api::<ExternalService>(client, scope),
        crate::k8s::client::watch_config(),
    );
    tokio::spawn(forget_deleted(
        controller.store(),
        context.clone(),
        shutdown.clone(),
    ));
    controller
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .reconcile_on(woken)
        .owns_stream(services_stream)
        .owns_stream(slices_stream)
        .owns_stream(endpoints_stream)
        .owns_stream(ingresses_stream)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(bounded_reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // Logged with its retry by error_policy; a deleted resource is no news.
                Err(
                    kube::runtime::controller::Error::ReconcilerFailed(..)
                    | kube::runtime::controller::Error::ObjectNotFound(_),
                ) => {}
                // A watch of the resources or their children failing (it is retried with
                // a backoff) leaves the controller blind meanwhile: worth a warning.
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::chain(&error), "controller: a watch failed; retrying");
                }
            }
        })
        .await;
}

/// Drops what the engine and the status memo hold for resources that are gone.
async fn forget_deleted(
    resources: Store<ExternalService>,
    context: Arc<Context>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(FORGET_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let live = resources.state();
        let keys: HashSet<ServiceKey> = live.iter().filter_map(|cr| service_key(cr).ok()).collect();
        context.engine.retain(&keys);
        let uids: HashSet<String> = live.iter().filter_map(|cr| cr.uid()).collect();
        lock(&context.written).retain(|uid, _| uids.contains(uid));
        lock(&context.failures).retain(|uid, _| uids.contains(uid));
    }
}

/// The validated name of a resource, as the probe engine keys services.
fn service_key(cr: &ExternalService) -> Result<ServiceKey, crate::domain::Invalid> {
    Ok(ServiceKey {
        namespace: DnsLabel::parse(&cr.namespace().unwrap_or_default())?,
        name: ServiceName::parse(&cr.name_any())?,
    })
}

/// What the last published status said of each IP, to seed the probe targets of a
/// service the engine meets for the first time, so that a restart does not flap
/// addresses. Nothing when that status was made for an older spec: its readiness does not
/// speak for checks added or changed since.
fn published_readiness(
    status: Option<&ExternalServiceStatus>,
    generation: Option<i64>,
) -> BTreeMap<IpAddr, bool> {
    status
        .filter(|s| s.observed_generation.is_some() && s.observed_generation == generation)
        .map(|s| {
            s.addresses
                .iter()
                .filter_map(|a| Some((a.address.parse().ok()?, a.ready)))
                .collect()
        })
        .unwrap_or_default()
}

/// A cache of the objects of one kind labelled as ours, and the stream that fills it.
/// Children changing or vanishing (e.g. deleted by hand) wake their owner's reconcile.
fn watch_ours<K>(
    api: Api<K>,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let config =
        crate::k8s::client::watch_config().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let stream = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects();
    (store, stream)
}

fn error_policy(cr: Arc<ExternalService>, error: &Error, context: Arc<Context>) -> Action {
    let failures = {
        let mut failures = lock(&context.failures);
        let count = failures.entry(cr.uid().unwrap_or_default()).or_default();
        *count = count.saturating_add(1);
        *count
    };
    let delay = retry_delay(failures);
    tracing::warn!(
        service = %format!("{}/{}", cr.namespace().unwrap_or_default(), cr.name_any()),
        error = %crate::telemetry::chain(error),
        failures,
        retry_in = ?delay,
        "reconcile failed; retrying"
    );
    Action::requeue(delay)
}

/// The wait before retrying after `failures` failed reconciles in a row: 5 s doubling up
/// to 5 minutes, each within ±10% so that many failing services spread out.
fn retry_delay(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);
    let doubled = FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(MAX).mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// A reconcile, given up after [`RECONCILE_TIMEOUT`]: one stuck on a call that never
/// answers is retried (and logged) instead of holding its resource silently.
async fn bounded_reconcile(
    cr: Arc<ExternalService>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    tokio::time::timeout(RECONCILE_TIMEOUT, reconcile(cr, context))
        .await
        .unwrap_or(Err(Error::TimedOut))
}

async fn reconcile(cr: Arc<ExternalService>, context: Arc<Context>) -> Result<Action, Error> {
    let mut timer = context.metrics.time_reconcile();
    let owner = owner_of(&cr)?;
    context.wait_for_caches().await?;
    let now = k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or_default()
        .to_string();
    let (key, spec) = match parse(&cr, &context.settings.policies) {
        Ok(parsed) => parsed,
        Err(refused) => {
            let action = match &refused {
                Refused::Invalid(_) => Action::await_change(),
                Refused::Denied(_) => Action::requeue(POLICY_RECHECK),
            };
            context
                .report_invalid(&cr, &owner, refused.into_message(), &now)
                .await?;
            timer.succeeded();
            context.succeeded(&cr);
            return Ok(action);
        }
    };

    let names: Vec<_> = spec
        .endpoints()
        .iter()
        .filter_map(|e| match &e.address {
            Address::Dns(name) => Some(name.clone()),
            Address::Ip(_) => None,
        })
        .collect();
    let addresses = &context.settings.policies.addresses;
    let resolutions = admitted(context.resolver.resolve(&names).await, |ip| {
        addresses.check_in(key.namespace.as_ref(), ip)
    });
    let published = context.track(&key, &spec, &resolutions, &cr);
    let applied = context
        .apply_children(&owner, &spec, &published.addresses)
        .await;
    let outcome = match &applied {
        Ok(()) => Outcome::Applied,
        Err(conflict @ ApplyError::Taken { .. }) => Outcome::NameConflict(conflict.to_string()),
        Err(error) => Outcome::Failed(crate::telemetry::chain(error)),
    };
    let previous = cr.status.as_ref();
    let status = desired_status(
        previous,
        cr.metadata.generation,
        &spec,
        &published,
        &outcome,
        &now,
    );
    let changes = readiness_changes(previous, &status);
    let written = context.write_status(&cr, &owner, status).await?;
    context.announce(&cr, &changes, &outcome, written).await;
    let retry = match applied {
        // Not a failure of ours: the name is looked at again shortly, however long it
        // stays taken, so that the registration proceeds once it is free.
        Err(ApplyError::Taken { .. }) => Some(NAME_CONFLICT_RETRY),
        other => other.map(|()| None)?,
    };
    timer.succeeded();
    context.succeeded(&cr);
    // A maintenance window ends by itself: look again when it does.
    let window_ends = context
        .maintenance
        .next_end(&key, chrono::Utc::now())
        .map(|end| end + Duration::from_millis(50));
    let delay = match retry {
        Some(delay) => Some(delay),
        None if names.is_empty() => None,
        None => Some(context.resolver.refresh()),
    };
    Ok(match delay.into_iter().chain(window_ends).min() {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    })
}

/// Who owns the children of `cr`.
fn owner_of(cr: &ExternalService) -> Result<Owner, Error> {
    Ok(Owner {
        namespace: cr
            .namespace()
            .ok_or_else(|| Error::Unidentified(cr.name_any()))?,
        name: cr.name_any(),
        reference: cr
            .controller_owner_ref(&())
            .ok_or_else(|| Error::Unidentified(cr.name_any()))?,
    })
}

/// Why a resource is not reconciled.
enum Refused {
    /// It breaks a rule: it stays refused until it is changed.
    Invalid(String),
    /// It breaks a policy, which may change under it (an exception the platform admin
    /// makes for its team, the cluster's ranges): it is looked at again now and then.
    Denied(String),
}

impl Refused {
    fn into_message(self) -> String {
        match self {
            Self::Invalid(message) | Self::Denied(message) => message,
        }
    }
}

/// The service's key and spec, or why they are refused. A spec made with kubectl passes
/// the CRD's schema but may still break a rule the schema cannot express, or a policy.
fn parse(cr: &ExternalService, policies: &Policies) -> Result<(ServiceKey, ServiceSpec), Refused> {
    let key = service_key(cr)
        .map_err(|e| Refused::Invalid(format!("/metadata/name: {e}: it names the Service too")))?;
    let spec = ServiceSpec::parse(&cr.spec).map_err(|e| Refused::Invalid(e.to_string()))?;
    let exceptions = policies.addresses.exceptions_in(key.namespace.as_ref());
    policies
        .check(&cr.spec, &exceptions)
        .map_err(|e| Refused::Denied(e.to_string()))?;
    Ok((key, spec))
}

impl Context {
    /// Forgets the failures of `cr`: its next failure starts the backoff afresh.
    fn succeeded(&self, cr: &ExternalService) {
        if let Some(uid) = cr.uid() {
            lock(&self.failures).remove(&uid);
        }
    }

    /// An invalid spec: the children stay as they were, and the status and an Event say
    /// why.
    async fn report_invalid(
        &self,
        cr: &ExternalService,
        owner: &Owner,
        errors: String,
        now: &str,
    ) -> Result<(), Error> {
        let status = invalid_status(
            cr.status.as_ref(),
            cr.metadata.generation,
            errors.clone(),
            now,
        );
        if self.write_status(cr, owner, status).await? {
            self.event(cr, EventType::Warning, "InvalidSpec", "Validate", errors)
                .await;
        }
        Ok(())
    }

    /// Gives the probe engine the service's targets, and returns what to publish with
    /// the readiness it has for them. The engine learns the targets first, so that the
    /// readiness read next already counts a new address with checks as not ready.
    fn track(
        &self,
        key: &ServiceKey,
        spec: &ServiceSpec,
        resolutions: &Resolutions,
        cr: &ExternalService,
    ) -> Published {
        let addresses = publish(spec, resolutions, &Health::new()).addresses;
        let targets = probe_targets(
            spec,
            addresses.iter().map(|a| ProbedAddress {
                ip: a.ip,
                resolved_from: a.resolved_from.as_ref(),
                ports: &a.ports,
            }),
        );
        let ips = addresses.iter().map(|a| a.ip).collect();
        let seeds = published_readiness(cr.status.as_ref(), cr.metadata.generation);
        self.engine.set_targets(key, ips, targets, &seeds);
        let mut published = publish(spec, resolutions, &self.engine.readiness(key));
        self.maintenance
            .apply(key, &mut published.addresses, chrono::Utc::now());
        let unresolved = published.unresolved.iter().map(|u| Unresolved {
            name: u.name.to_string(),
            reason: u.reason.clone(),
        });
        self.engine.set_unresolved(key, unresolved.collect());
        published
    }

    /// One Event for the readiness changes of a reconcile, one if applying failed, and
    /// one when a name conflict is news (`written`: the status just changed).
    async fn announce(
        &self,
        cr: &ExternalService,
        changes: &[(String, bool)],
        outcome: &Outcome,
        written: bool,
    ) {
        if let Some((warning, note)) = readiness_event(changes) {
            let (kind, reason) = if warning {
                (EventType::Warning, "AddressesNotReady")
            } else {
                (EventType::Normal, "AddressesReady")
            };
            self.event(cr, kind, reason, "Probe", note).await;
        }
        match outcome {
            Outcome::Applied => {}
            Outcome::Failed(note) => {
                self.event(cr, EventType::Warning, "ApplyFailed", "Apply", note.clone())
                    .await;
            }
            Outcome::NameConflict(note) if written => {
                self.event(
                    cr,
                    EventType::Warning,
                    "NameConflict",
                    "Apply",
                    note.clone(),
                )
                .await;
            }
            Outcome::NameConflict(_) => {}
        }
    }

    /// Waits until every cache of children has its first full list. Gives up on shutdown:
    /// the controller stops polling the watches that fill them, and a graceful shutdown
    /// waits for running reconciles.
    async fn wait_for_caches(&self) -> Result<(), Error> {
        tokio::select! {
            filled = self.caches.filled.clone() => filled.then_some(()).ok_or(Error::Caches),
            () = self.shutdown.cancelled() => Err(Error::Caches),
        }
    }

    async fn apply_children(
        &self,
        owner: &Owner,
        spec: &ServiceSpec,
        addresses: &[PublishedAddress],
    ) -> Result<(), ApplyError> {
        let namespace = owner.namespace.as_str();
        let caches = &self.caches;

        self.apply(
            owner,
            Kind::Service,
            desired_service(owner, spec),
            &caches.services,
        )
        .await?;

        let slices = desired_endpoint_slices(owner, spec, addresses);
        let wanted: HashSet<String> = slices.iter().map(ResourceExt::name_any).collect();
        for slice in slices {
            self.apply(owner, Kind::EndpointSlice, slice, &caches.slices)
                .await?;
        }
        let stale: Vec<String> = caches
            .slices
            .state()
            .iter()
            .filter(|live| {
                live.namespace().as_deref() == Some(namespace)
                    && live.labels().get(SERVICE_NAME_LABEL) == Some(&owner.name)
                    && apply::owned_by(live.as_ref(), &owner.reference.uid)
                    && !wanted.contains(&live.name_any())
            })
            .map(|live| live.name_any())
            .collect();
        for name in stale {
            self.delete::<EndpointSlice>(Kind::EndpointSlice, namespace, &name)
                .await?;
        }

        if self.settings.legacy_endpoints {
            self.apply(
                owner,
                Kind::Endpoints,
                desired_endpoints(owner, spec, addresses),
                &caches.endpoints,
            )
            .await?;
        } else if self.owned(&caches.endpoints, owner) {
            self.delete::<Endpoints>(Kind::Endpoints, namespace, &owner.name)
                .await?;
        }

        match desired_ingress(owner, spec) {
            Some(ingress) => {
                self.apply(owner, Kind::Ingress, ingress, &caches.ingresses)
                    .await?
            }
            None if self.owned(&caches.ingresses, owner) => {
                self.delete::<Ingress>(Kind::Ingress, namespace, &owner.name)
                    .await?;
            }
            None => {}
        }
        Ok(())
    }

    /// Whether the cache holds a child of `owner` named like it.
    fn owned<K>(&self, cache: &Store<K>, owner: &Owner) -> bool
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        cache
            .get(&ObjectRef::new(&owner.name).within(&owner.namespace))
            .is_some_and(|live| apply::owned_by(live.as_ref(), &owner.reference.uid))
    }

    /// Applies `desired`, a child of `owner`, unless someone else's object has its name.
    async fn apply<K>(
        &self,
        owner: &Owner,
        kind: Kind,
        desired: K,
        cache: &Store<K>,
    ) -> Result<(), ApplyError>
    where
        K: apply::Child<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + DeserializeOwned
            + 'static,
    {
        let namespace = desired.namespace().unwrap_or_default();
        let cached = cache.get(&ObjectRef::new(&desired.name_any()).within(&namespace));
        let api = Api::<K>::namespaced(self.client.clone(), &namespace);
        let owner = &owner.reference.uid;
        for _ in 0..apply::apply_owned(&api, desired, cached.as_deref(), owner).await? {
            self.metrics.count_write(kind, Operation::Apply);
        }
        Ok(())
    }

    async fn delete<K>(&self, kind: Kind, namespace: &str, name: &str) -> Result<(), ApplyError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + apply::Child
            + Clone
            + std::fmt::Debug
            + DeserializeOwned,
    {
        apply::delete(&Api::<K>::namespaced(self.client.clone(), namespace), name).await?;
        self.metrics.count_write(kind, Operation::Delete);
        Ok(())
    }

    /// Writes `status` unless the resource already has it. Returns whether it wrote.
    async fn write_status(
        &self,
        cr: &ExternalService,
        owner: &Owner,
        status: ExternalServiceStatus,
    ) -> Result<bool, Error> {
        let uid = owner.reference.uid.clone();
        let seen = &cr.metadata.resource_version;
        let already_written = lock(&self.written)
            .get(&uid)
            .is_some_and(|(written, over)| *written == status && over == seen);
        if cr.status.as_ref() == Some(&status) || already_written {
            return Ok(false);
        }
        let patch = serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "status": status});
        let api = Api::<ExternalService>::namespaced(self.client.clone(), &owner.namespace);
        api.patch_status(
            &owner.name,
            &PatchParams::apply(CONTROLLER_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::WriteStatus {
            name: owner.name.clone(),
            source,
        })?;
        self.metrics
            .count_write(Kind::ExternalServiceStatus, Operation::Apply);
        lock(&self.written).insert(uid, (status, seen.clone()));
        Ok(true)
    }

    /// Publishes an event on `cr`. An event that cannot be written is only logged: it
    /// must not fail the reconcile it reports on.
    async fn event(
        &self,
        cr: &ExternalService,
        type_: EventType,
        reason: &str,
        action: &str,
        mut note: String,
    ) {
        // Kubernetes refuses notes over 1 KiB.
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
            note.push('…');
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &cr.object_ref(&())).await {
            tracing::warn!(error = %crate::telemetry::chain(&error), reason, "could not publish an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let within = |failures: u32, seconds: f64| {
            let delay = retry_delay(failures).as_secs_f64();
            assert!(
                (seconds * 0.9..=seconds * 1.1).contains(&delay),
                "{failures} failures: {delay} s, not about {seconds} s"
            );
        };
        within(1, 5.0);
        within(2, 10.0);
        within(3, 20.0);
        within(6, 160.0);
        within(7, 300.0);
        within(u32::MAX, 300.0);
    }

    /// Many reconciles wait for the caches at once after a start; every one of them must
    /// go on when the lists are in (kube-runtime's own wait wakes only one).
    #[tokio::test]
    async fn every_reconcile_waiting_for_the_caches_goes_on_when_they_fill() {
        use kube::runtime::reflector::store::Writer;
        let mut services = Writer::<Service>::default();
        let mut slices = Writer::<EndpointSlice>::default();
        let mut endpoints = Writer::<Endpoints>::default();
        let mut ingresses = Writer::<Ingress>::default();
        let caches = Caches::new(
            services.as_reader(),
            slices.as_reader(),
            endpoints.as_reader(),
            ingresses.as_reader(),
        );
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(caches.filled.clone()))
            .collect();
        // Let every waiter poll once, so that each has registered its wake-up.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        services.apply_watcher_event(&watcher::Event::InitDone);
        slices.apply_watcher_event(&watcher::Event::InitDone);
        endpoints.apply_watcher_event(&watcher::Event::InitDone);
        ingresses.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            let filled = tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .expect("every waiter is woken")
                .expect("the waiter did not panic");
            assert!(filled);
        }
    }
}
