use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use extsvc::config::{KubernetesSettings, Settings};
use extsvc::resource::ExternalService;
use extsvc::startup::Application;

use crate::controlplane::{self, ControlPlane};

/// One operator process: API, mirror and controller, scoped to `namespace`.
pub struct TestOperator {
    pub address: String,
    pub http: reqwest::Client,
    pub kube: kube::Client,
    pub namespace: String,
    pub handle: actix_web::dev::ServerHandle,
    pub stopped: tokio::task::JoinHandle<()>,
}

/// The shared control plane, with the project's CRD installed once.
pub async fn control_plane() -> &'static ControlPlane {
    static CRD: OnceCell<()> = OnceCell::const_new();
    let cp = controlplane::shared().await;
    CRD.get_or_init(|| async { cp.install_crds(&[extsvc::k8s::crd::crd()]).await })
        .await;
    cp
}

/// The shared control plane, once its garbage collector knows ExternalServices.
pub async fn collecting_control_plane() -> &'static ControlPlane {
    static KNOWN: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let cp = control_plane().await;
    KNOWN
        .get_or_init(|| {
            cp.wait_until_garbage_collector_knows("extsvc.dev/v1alpha1", "ExternalService")
        })
        .await;
    cp
}

/// A fresh namespace on a control plane and a fresh database: where the replicas of one
/// operator run.
pub struct Site {
    kubeconfig: PathBuf,
    pub namespace: String,
    pub database_url: String,
}

impl Site {
    pub async fn on(cp: &ControlPlane) -> Self {
        Self {
            kubeconfig: cp.kubeconfig().to_owned(),
            namespace: cp.fresh_namespace().await,
            database_url: crate::postgres::fresh_database().await,
        }
    }

    /// The same namespace with a fresh database of its own: another installation, or a
    /// database that lost what it had.
    pub async fn with_another_database(&self) -> Self {
        Self {
            kubeconfig: self.kubeconfig.clone(),
            namespace: self.namespace.clone(),
            database_url: crate::postgres::fresh_database().await,
        }
    }

    /// Starts a replica named `identity`.
    pub async fn start(&self, identity: &str) -> TestOperator {
        start_operator(self, identity, |_| {}).await
    }

    /// Starts a replica that serves the API alone (`--no-kubernetes`): no mirror, no
    /// controller.
    pub async fn start_api_only(&self, identity: &str) -> TestOperator {
        start_operator(self, identity, |settings| {
            settings.kubernetes.no_kubernetes = true;
        })
        .await
    }

    /// Starts a replica named `identity`, with settings changed by `configure` first.
    pub async fn start_with(
        &self,
        identity: &str,
        configure: impl FnOnce(&mut Settings),
    ) -> TestOperator {
        start_operator(self, identity, configure).await
    }
}

/// An operator on a fresh database, watching a fresh namespace.
pub async fn spawn_operator() -> TestOperator {
    Site::on(control_plane().await).await.start("only").await
}

/// Starts an operator process of `site`; its leader Lease lives in the site's namespace.
async fn start_operator(
    site: &Site,
    identity: &str,
    configure: impl FnOnce(&mut Settings),
) -> TestOperator {
    let (kubeconfig, namespace) = (site.kubeconfig.as_path(), site.namespace.as_str());
    // Logs go through the test harness, shown only for failing tests.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    let mut settings = crate::settings::settings(
        &site.database_url,
        KubernetesSettings {
            kubeconfig: Some(kubeconfig.to_owned()),
            watch_namespace: Some(namespace.to_owned()),
            lease_namespace: namespace.to_owned(),
            identity: Some(identity.to_owned()),
            ..KubernetesSettings::default()
        },
    );
    configure(&mut settings);
    let app = Application::build(&settings)
        .await
        .expect("the operator starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let stopped = tokio::spawn(async move {
        app.run_until_stopped()
            .await
            .expect("the operator stops cleanly");
    });
    let kube = kube_client(kubeconfig).await;
    TestOperator {
        address,
        http: crate::settings::client_with(crate::settings::ADMIN_TOKEN),
        kube,
        namespace: namespace.to_owned(),
        handle,
        stopped,
    }
}

pub async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("a client config");
    kube::Client::try_from(config).expect("a client")
}

/// A registration with two ports, addresses serving different subsets, and an Ingress.
pub fn registration(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"team": "payments"}},
        "spec": {
            "ports": [{"name": "https", "port": 443}, {"name": "metrics", "port": 9100}],
            "endpoints": [
                {"address": "192.0.2.10"},
                {"address": "192.0.2.11", "ports": ["https"]},
                {"address": "2001:db8::10"}
            ],
            "ingress": {
                "annotations": {"example.com/team": "payments"},
                "rules": [{"host": "pay.example.com", "paths": [{"path": "/", "port": "https"}]}]
            }
        }
    })
}

impl TestOperator {
    pub fn item(&self, name: &str) -> String {
        format!(
            "{}/api/v1/namespaces/{}/external-services/{name}",
            self.address, self.namespace
        )
    }

    pub async fn put(&self, name: &str, body: &Value) -> StatusCode {
        self.http
            .put(self.item(name))
            .json(body)
            .send()
            .await
            .expect("PUT answers")
            .status()
    }

    pub async fn delete(&self, name: &str) -> StatusCode {
        self.http
            .delete(self.item(name))
            .send()
            .await
            .expect("DELETE answers")
            .status()
    }

    pub async fn get(&self, name: &str) -> (StatusCode, Value) {
        self.status_and_json(self.item(name)).await
    }

    /// `GET .../health` of a service.
    pub async fn health(&self, name: &str) -> (StatusCode, Value) {
        self.status_and_json(format!("{}/health", self.item(name)))
            .await
    }

    /// `GET url`: the status, and the JSON body (null if there is none).
    async fn status_and_json(&self, url: String) -> (StatusCode, Value) {
        let response = self.http.get(url).send().await.expect("GET answers");
        let status = response.status();
        (status, response.json().await.unwrap_or_default())
    }

    /// `GET .../health/history` of a service.
    pub async fn health_history(&self, name: &str) -> Value {
        let url = format!("{}/health/history", self.item(name));
        self.http
            .get(url)
            .send()
            .await
            .expect("GET answers")
            .json()
            .await
            .unwrap_or_default()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.kube.clone(), &self.namespace)
    }

    pub fn external_services(&self) -> Api<ExternalService> {
        self.api()
    }
    pub fn services(&self) -> Api<Service> {
        self.api()
    }
    pub fn endpoint_slices(&self) -> Api<EndpointSlice> {
        self.api()
    }
    pub fn endpoints(&self) -> Api<Endpoints> {
        self.api()
    }
    pub fn ingresses(&self) -> Api<Ingress> {
        self.api()
    }

    /// The EndpointSlices of service `name`.
    pub async fn slices_of(&self, name: &str) -> Vec<EndpointSlice> {
        self.endpoint_slices()
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
            .await
            .expect("list EndpointSlices")
            .items
    }

    /// Polls until service `name` has `count` EndpointSlices (for at most 30 s), and
    /// returns them.
    pub async fn slices_eventually(
        &self,
        what: &str,
        name: &str,
        count: usize,
    ) -> Vec<EndpointSlice> {
        eventually(30, what, || async {
            let slices = self.slices_of(name).await;
            (slices.len() == count).then_some(slices)
        })
        .await
    }

    /// The JSON answer to `GET {address}{path}`.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The body of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("text")
    }

    /// The value of a counter in `/metrics`, summed over its labels.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stops the process as SIGTERM would, and waits until it has.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.stopped.await.expect("the operator task ends");
    }
}

/// Polls `check` until it yields a value, for at most `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `api` has an object `name` (for at most 30 s), and returns it.
pub async fn existing<K>(api: &Api<K>, what: &str, name: &str) -> K
where
    K: Clone + DeserializeOwned + Debug,
{
    eventually(30, what, || async {
        api.get_opt(name).await.ok().flatten()
    })
    .await
}

/// Polls until `api` has no object `name` (for at most 30 s).
pub async fn absent<K>(api: &Api<K>, what: &str, name: &str)
where
    K: Clone + DeserializeOwned + Debug,
{
    eventually(30, what, || async {
        api.get_opt(name)
            .await
            .ok()
            .and_then(|object| object.is_none().then_some(()))
    })
    .await
}

/// The addresses of slices, sorted, with their readiness.
pub fn slice_addresses(slices: &[EndpointSlice]) -> Vec<(String, bool)> {
    let mut all: Vec<_> = slices
        .iter()
        .flat_map(|slice| slice.endpoints.iter())
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false),
            )
        })
        .collect();
    all.sort();
    all
}
