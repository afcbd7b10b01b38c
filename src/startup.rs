//! Builds the roles from settings (the API; the mirror and controller when a cluster is
//! configured, on the elected leader only), runs them, and stops them gracefully.

use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use futures::FutureExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, AuthConfig, Authenticator, token};
use crate::config::{KubernetesSettings, Settings};
use crate::domain::{AddressPolicy, Policies, cidrs};
use crate::k8s::leader::{LeaseSettings, run_as_leader};
use crate::k8s::{MIRROR_MANAGER, cluster_ranges, crd, mirror};
use crate::metrics::Metrics;
use crate::probe::{self, DEFAULT_MAX_IN_FLIGHT, Dialer, Engine, Tls};
use crate::store::{Database, Store, StoreError};
use crate::{api, controller};

/// Name of the Lease the replicas compete for.
const LEASE_NAME: &str = "extsvc-leader";

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not open the database")]
    OpenStore(#[source] StoreError),
    #[error("could not listen on {address}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error("could not read the kubeconfig")]
    ReadKubeconfig(#[source] kube::config::KubeconfigError),
    #[error("could not install the ExternalService CRD")]
    InstallCrd(#[source] kube::Error),
    #[error("a policy setting is not valid: {0}")]
    Policy(String),
    #[error("the authentication settings are not valid: {0}")]
    Auth(String),
    #[error("could not set up TLS for HTTPS health checks")]
    ProbeTls(#[source] rustls::Error),
}

/// A bound, ready-to-run server, and the Kubernetes roles when a cluster is configured.
pub struct Application {
    port: u16,
    server: Server,
    kubernetes: Option<(CancellationToken, JoinHandle<()>)>,
    /// Stops the tasks every replica runs (reading the teams' address exceptions, pruning
    /// the audit log).
    background: CancellationToken,
}

impl Application {
    /// Connects to the database (applying migrations) and binds the listener, so that
    /// `port()` is known before the server runs (tests bind port 0).
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let workers = settings
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let connections = settings
            .database_max_connections
            .unwrap_or(2 * workers as u32);
        let database = Database::new(settings.database_url.expose_secret(), connections)
            .map_err(StartupError::OpenStore)?
            .services_per_namespace(settings.max_services_per_namespace)
            .services_per_team(settings.max_services_per_team);
        database.migrate().await.map_err(StartupError::OpenStore)?;
        let listener =
            TcpListener::bind(settings.listen).map_err(|source| StartupError::Listen {
                address: settings.listen,
                source,
            })?;
        let port = listener.local_addr().map_err(StartupError::Serve)?.port();
        let metrics = Metrics::default();
        let liveness = api::Liveness::default();
        let policies = settings.policies().map_err(StartupError::Policy)?;
        let auth = AuthSettings::read(settings)?;

        let client = kube_client(&settings.kubernetes).await?;
        let authentication = auth.shared(client.clone())?;
        let kubernetes = match client {
            Some(client) => {
                let roles = LeaderRoles::new(&settings.kubernetes, &policies)?;
                if settings.kubernetes.install_crd {
                    install_crd(&client, &crd::crd()).await?;
                }
                let shutdown = CancellationToken::new();
                // Every replica judges registrations, so every replica learns the
                // cluster's ranges.
                cluster_ranges::learn_at_start(&client, &policies.addresses).await;
                tokio::spawn(cluster_ranges::keep_learning(
                    client.clone(),
                    policies.addresses.clone(),
                    shutdown.clone(),
                ));
                let roles = spawn_leader_roles(
                    roles,
                    client,
                    database.store(4),
                    metrics.clone(),
                    liveness.clone(),
                    shutdown.clone(),
                );
                Some((shutdown, roles))
            }
            None => None,
        };

        let background = CancellationToken::new();
        let background_store = database.store(1);
        let feed = api::Feed::start(
            (database.store(2), database.store(2)),
            settings.max_watches,
            chrono::Duration::minutes(i64::from(settings.event_retention_minutes)),
            background.clone(),
        )
        .await
        .map_err(StartupError::OpenStore)?;
        let probing = web::Data::new(api::Probing::new(Dialer {
            tls: Tls::from_system_roots().map_err(StartupError::ProbeTls)?,
            policy: Arc::new(policies.addresses.clone()),
        }));
        tokio::spawn(keep_team_exceptions(
            background_store.clone(),
            policies.addresses.clone(),
            background.clone(),
        ));
        tokio::spawn(api::prune_audit(
            background_store,
            chrono::Duration::days(i64::from(settings.audit_retention_days)),
            background.clone(),
        ));
        let share = database.max_connections().div_ceil(workers as u32);
        let api_metrics = web::Data::new(metrics);
        let liveness = web::Data::new(liveness);
        let served = web::Data::new(api::Served(settings.kubernetes.watch_namespace.clone()));
        let policies = web::Data::new(policies);
        let limiter = web::Data::new(api::RateLimiter::new(settings.rate_limit));
        let reserved = web::Data::new(api::Reserved {
            operator_namespace: settings.kubernetes.lease_namespace.clone(),
        });
        let metrics_access = web::Data::new(auth.metrics_access);
        let server = HttpServer::new(move || {
            let store = database.store(share);
            let authenticator = Authenticator::new(authentication.clone(), store.clone());
            App::new()
                .wrap(actix_web::middleware::from_fn(api::audit_middleware))
                .app_data(web::Data::new(authenticator))
                .app_data(web::Data::new(store))
                .app_data(limiter.clone())
                .app_data(reserved.clone())
                .app_data(metrics_access.clone())
                .app_data(web::Data::new(api::Readiness(database.store(1))))
                .app_data(served.clone())
                .app_data(policies.clone())
                .app_data(api_metrics.clone())
                .app_data(liveness.clone())
                .app_data(web::Data::new(feed.clone()))
                .app_data(probing.clone())
                .configure(api::configure)
                .default_service(web::to(api::no_route))
        })
        // Signals are handled in `run_until_stopped`, which ends event streams and waits
        // first: they would otherwise hold the graceful shutdown for its whole timeout.
        .disable_signals()
        .shutdown_timeout(10)
        .workers(workers);
        let server = server.listen(listener).map_err(StartupError::Serve)?.run();
        Ok(Self {
            port,
            server,
            kubernetes,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server like SIGTERM does, from inside the process (tests, embedding).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT, then drains the API and stops the other roles,
    /// releasing the leader Lease so that another replica takes over at once.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let (handle, background) = (self.server.handle(), self.background.clone());
        tokio::spawn(async move {
            stop_signal().await;
            tracing::info!("stopping: ending event streams, then draining requests");
            background.cancel();
            handle.stop(true).await;
        });
        let served = self.server.await.map_err(StartupError::Serve);
        self.background.cancel();
        if let Some((shutdown, roles)) = self.kubernetes {
            shutdown.cancel();
            if let Err(error) = roles.await {
                tracing::error!(%error, "the Kubernetes roles ended badly");
            }
        }
        served
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// How often every replica reads the exceptions the platform admin made for teams: the
/// controller and the probe engine judge addresses by them (the API reads the team of
/// each write afresh).
const TEAM_EXCEPTIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

async fn keep_team_exceptions(store: Store, policy: AddressPolicy, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(TEAM_EXCEPTIONS_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match store.team_exceptions().await {
            Ok(rows) => policy.except(
                rows.into_iter()
                    .map(|(namespace, ranges)| {
                        (namespace, cidrs(&ranges.join(",")).unwrap_or_default())
                    })
                    .collect(),
            ),
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::chain(&error), "could not read the teams' address exceptions");
            }
        }
    }
}

/// Who may call, as the settings say: the tokens of the platform admin and of metrics,
/// and the auth configuration file.
struct AuthSettings {
    admin_token: Option<SecretString>,
    config: AuthConfig,
    metrics_access: api::MetricsAccess,
}

impl AuthSettings {
    fn read(settings: &Settings) -> Result<Self, StartupError> {
        let admin_token = settings.admin_token().map_err(StartupError::Auth)?;
        if admin_token.is_none() {
            tracing::warn!("no platform admin token (EXTSVC_ADMIN_TOKEN): nobody can manage teams");
        }
        let config = match &settings.auth_config {
            Some(path) => AuthConfig::read(path).map_err(StartupError::Auth)?,
            None => AuthConfig::default(),
        };
        let metrics_token = settings.metrics_token().map_err(StartupError::Auth)?;
        Ok(Self {
            admin_token,
            config,
            metrics_access: api::MetricsAccess {
                open: settings.open_metrics,
                token: metrics_token.map(|t| token::hash(t.expose_secret())),
            },
        })
    }

    /// What every worker's authenticator shares; service-account tokens are reviewed
    /// only when there is a cluster to ask.
    fn shared(&self, client: Option<kube::Client>) -> Result<Arc<auth::Shared>, StartupError> {
        let oidc = if self.config.oidc.is_empty() {
            None
        } else {
            Some(auth::oidc::Verifier::new(self.config.oidc.clone()).map_err(StartupError::Auth)?)
        };
        let accounts = self.config.service_accounts.clone();
        let review = client
            .filter(|_| !accounts.is_empty())
            .map(|client| auth::review::Reviewer::new(client, accounts));
        let admin = self
            .admin_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        Ok(Arc::new(auth::Shared::new(admin.as_deref(), oidc, review)))
    }
}

/// A client for the configured cluster, or `None` to run the API alone.
async fn kube_client(settings: &KubernetesSettings) -> Result<Option<kube::Client>, StartupError> {
    if settings.no_kubernetes {
        tracing::info!("Kubernetes roles turned off; serving the API alone");
        return Ok(None);
    }
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(path).map_err(StartupError::ReadKubeconfig)?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(StartupError::ReadKubeconfig)
            .map(Some)?
        }
        None => match kube::Config::infer().await {
            Ok(config) => Some(config),
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::chain(&error), "no Kubernetes cluster configured; serving the API alone");
                None
            }
        },
    };
    match config.map(crate::k8s::client::client).transpose() {
        Ok(client) => Ok(client),
        Err(error) => {
            tracing::warn!(error = %crate::telemetry::chain(&error), "no usable Kubernetes client; serving the API alone");
            Ok(None)
        }
    }
}

async fn install_crd(
    client: &kube::Client,
    crd: &CustomResourceDefinition,
) -> Result<(), StartupError> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MIRROR_MANAGER).force(),
        &Patch::Apply(crd),
    )
    .await
    .map_err(StartupError::InstallCrd)?;
    tracing::info!(crd = %name, "installed the CRD");
    Ok(())
}

/// How the leader's roles are set up: the probe engine's way to backends, the
/// controller, and the Lease they compete for.
struct LeaderRoles {
    dialer: Dialer,
    controller: controller::Settings,
    lease: LeaseSettings,
}

impl LeaderRoles {
    fn new(settings: &KubernetesSettings, policies: &Policies) -> Result<Self, StartupError> {
        let identity = settings.identity.clone().unwrap_or_else(default_identity);
        Ok(Self {
            dialer: Dialer {
                tls: Tls::from_system_roots().map_err(StartupError::ProbeTls)?,
                policy: Arc::new(policies.addresses.clone()),
            },
            controller: controller::Settings {
                legacy_endpoints: !settings.no_legacy_endpoints,
                namespace: settings.watch_namespace.clone(),
                policies: policies.clone(),
                ..controller::Settings::default()
            },
            lease: LeaseSettings::new(settings.lease_namespace.clone(), LEASE_NAME, identity),
        })
    }
}

/// Runs the mirror, the controller and the probe engine on whichever replica holds the
/// Lease. Any of them, or the election, ending before `shutdown` (or panicking) fails
/// `liveness`.
fn spawn_leader_roles(
    roles: LeaderRoles,
    client: kube::Client,
    store: Store,
    metrics: Metrics,
    liveness: api::Liveness,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let LeaderRoles {
        dialer,
        controller: controller_settings,
        lease,
    } = roles;
    let roles_liveness = liveness.clone();
    let on_panic = liveness.clone();
    let election = async move {
        let elected = run_as_leader(client.clone(), lease, shutdown, |leading| {
            let (client, store, metrics, settings, liveness) = (
                client.clone(),
                store.clone(),
                metrics.clone(),
                controller_settings.clone(),
                roles_liveness.clone(),
            );
            let namespace = settings.namespace.clone();
            let dialer = dialer.clone();
            async move {
                tracing::info!("leading: running the mirror, the controller and the probes");
                let started = Engine::start(
                    dialer,
                    DEFAULT_MAX_IN_FLIGHT,
                    metrics.clone(),
                    leading.clone(),
                );
                let (engine, woken) = match started {
                    Ok(started) => started,
                    Err(error) => {
                        // Leading without probes would publish wrong readiness: give the
                        // Lease up and try again later.
                        tracing::error!(%error, "could not start the probe engine");
                        return;
                    }
                };
                // Each runs until the term ends; one that stops before has failed.
                let until_term_ends = |role: &'static str| {
                    let (leading, liveness) = (leading.clone(), liveness.clone());
                    move |()| {
                        if !leading.is_cancelled() {
                            liveness.fail(format!("the {role} stopped while leading"));
                        }
                    }
                };
                let maintenance = controller::Maintenance::default();
                let (maintenance_wake, maintenance_woken) = tokio::sync::mpsc::unbounded_channel();
                tokio::join!(
                    controller::keep_maintenance(
                        store.clone(),
                        maintenance.clone(),
                        maintenance_wake,
                        leading.clone()
                    )
                    .map(until_term_ends("maintenance keeper")),
                    mirror::run(
                        store.clone(),
                        client.clone(),
                        namespace,
                        metrics.clone(),
                        leading.clone()
                    )
                    .map(until_term_ends("mirror")),
                    controller::run(
                        client,
                        settings,
                        (engine.clone(), maintenance),
                        controller::Wakers {
                            engine: woken,
                            maintenance: maintenance_woken,
                        },
                        metrics.clone(),
                        leading.clone()
                    )
                    .map(until_term_ends("controller")),
                    probe::publish(engine, store, leading.clone())
                        .map(until_term_ends("health publisher")),
                );
                metrics.forget_services();
            }
        })
        .await;
        if let Err(error) = elected {
            let error = crate::telemetry::chain(&error);
            liveness.fail(format!(
                "leader election gave up, so the mirror and controller cannot run here: {error}"
            ));
        }
    };
    tokio::spawn(async move {
        // A panic in any role unwinds to here: the process must not stay up without it.
        if AssertUnwindSafe(election).catch_unwind().await.is_err() {
            on_panic.fail("a Kubernetes role panicked");
        }
    })
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}-{}-{}",
        host.trim(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}
