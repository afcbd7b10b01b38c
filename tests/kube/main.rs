//! What the test control plane (a real etcd, kube-apiserver and kube-controller-manager)
//! does for us, and what the project relies on from it: the objects the operator writes,
//! server-side apply, watches, the error codes the operator handles, and the controllers
//! of a real cluster (garbage collection, namespace deletion, service accounts).

#[path = "../support/controlplane.rs"]
mod controlplane;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};

use controlplane::ControlPlane;

const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..ObjectMeta::default()
    }
}

fn config_map(name: &str, namespace: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(name, namespace),
        data: Some(BTreeMap::from([("key".to_owned(), value.to_owned())])),
        ..ConfigMap::default()
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The API server's error answer in `err`, which must have status `code`.
fn api_status(err: kube::Error, code: u16) -> Box<kube::core::Status> {
    let status = match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an error answer from the API server, got {other:?}"),
    };
    assert_eq!(status.code, code, "{status:?}");
    status
}

/// A fresh namespace on the shared control plane, and an `Api` for `K` in it.
async fn fresh_api<K>() -> (String, Api<K>)
where
    K: kube::Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    let cp = controlplane::shared().await;
    let ns = cp.fresh_namespace().await;
    let api = Api::namespaced(cp.client().await, &ns);
    (ns, api)
}

#[tokio::test]
async fn fresh_namespace_is_created_and_active() {
    let cp = controlplane::shared().await;
    let ns = cp.fresh_namespace().await;

    let namespace = Api::<Namespace>::all(cp.client().await)
        .get(&ns)
        .await
        .expect("get namespace");

    let phase = namespace.status.and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Active"));
}

#[tokio::test]
async fn headless_service_with_two_ports_is_stored() {
    let (ns, services) = fresh_api::<Service>().await;
    let service = Service {
        metadata: meta("backend", &ns),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            ports: Some(vec![service_port("http", 80), service_port("grpc", 9090)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");

    let spec = services
        .get("backend")
        .await
        .expect("get service")
        .spec
        .expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    let ports: Vec<_> = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name, p.port))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("http".to_owned()), 80),
            (Some("grpc".to_owned()), 9090)
        ]
    );
}

#[tokio::test]
async fn endpoint_slice_with_two_ports_is_stored() {
    let (ns, slices) = fresh_api::<EndpointSlice>().await;
    let mut metadata = meta("backend-abc", &ns);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        "backend".to_owned(),
    )]));
    let port = |name: &str, port: i32| EndpointPort {
        name: Some(name.to_owned()),
        port: Some(port),
        protocol: Some("TCP".to_owned()),
        ..EndpointPort::default()
    };
    let slice = EndpointSlice {
        metadata,
        address_type: "IPv4".to_owned(),
        endpoints: vec![Endpoint {
            addresses: vec!["192.0.2.10".to_owned()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..EndpointConditions::default()
            }),
            ..Endpoint::default()
        }],
        ports: Some(vec![port("http", 8080), port("grpc", 9090)]),
    };

    slices
        .create(&PostParams::default(), &slice)
        .await
        .expect("create endpoint slice");

    let stored = slices.get("backend-abc").await.expect("get endpoint slice");
    assert_eq!(stored.endpoints[0].addresses, ["192.0.2.10"]);
    assert_eq!(stored.ports.map(|p| p.len()), Some(2));
}

#[tokio::test]
async fn ingress_is_created_through_kube_api() {
    let (ns, ingresses) = fresh_api::<Ingress>().await;
    let ingress = Ingress {
        metadata: meta("backend", &ns),
        spec: Some(IngressSpec {
            rules: Some(vec![IngressRule {
                host: Some("backend.example.test".to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: "backend".to_owned(),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".to_owned()),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    };

    let created = ingresses
        .create(&PostParams::default(), &ingress)
        .await
        .expect("create ingress");

    let rules = created.spec.and_then(|s| s.rules).unwrap_or_default();
    assert_eq!(rules[0].host.as_deref(), Some("backend.example.test"));
}

#[tokio::test]
async fn applying_the_same_object_twice_keeps_its_resource_version() {
    let (ns, config_maps) = fresh_api::<ConfigMap>().await;
    let params = PatchParams::apply(controlplane::FIELD_MANAGER);
    let desired = config_map("settings", &ns, "one");

    let first = config_maps
        .patch("settings", &params, &Patch::Apply(&desired))
        .await
        .expect("first apply");
    let second = config_maps
        .patch("settings", &params, &Patch::Apply(&desired))
        .await
        .expect("second apply");

    assert!(first.metadata.resource_version.is_some());
    assert_eq!(
        first.metadata.resource_version,
        second.metadata.resource_version
    );
}

#[tokio::test]
async fn applying_a_service_and_an_endpoint_slice_twice_keeps_their_resource_versions() {
    let cp = controlplane::shared().await;
    let ns = cp.fresh_namespace().await;
    let client = cp.client().await;
    let params = PatchParams::apply(controlplane::FIELD_MANAGER);
    let service = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "backend"},
        "spec": {"clusterIP": "None",
                 "ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090}]}
    });
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "backend-v4", "labels": {"kubernetes.io/service-name": "backend"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                  {"name": "grpc", "port": 9090, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["192.0.2.10"], "conditions": {"ready": true}}]
    });
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let slices = Api::<EndpointSlice>::namespaced(client, &ns);

    let versions = async || {
        let service = services
            .patch("backend", &params, &Patch::Apply(&service))
            .await
            .expect("apply Service");
        let slice = slices
            .patch("backend-v4", &params, &Patch::Apply(&slice))
            .await
            .expect("apply EndpointSlice");
        (
            service.metadata.resource_version,
            slice.metadata.resource_version,
        )
    };
    let first = versions().await;
    let second = versions().await;

    assert!(first.0.is_some() && first.1.is_some());
    assert_eq!(first, second);
}

#[tokio::test]
async fn watcher_sees_an_object_change() {
    let (ns, config_maps) = fresh_api::<ConfigMap>().await;
    // Only this object: the root CA publisher adds a `kube-root-ca.crt` to each namespace.
    let only_it = watcher::Config::default().fields("metadata.name=watched");
    let mut values = watcher(config_maps.clone(), only_it)
        .applied_objects()
        .map_ok(|cm| cm.data.and_then(|d| d.get("key").cloned()))
        .boxed();
    let mut next_value = async || {
        tokio::time::timeout(WATCH_TIMEOUT, values.try_next())
            .await
            .expect("a watch event in time")
            .expect("watch stream")
            .expect("watch stream open")
    };

    // Both writes are applies by one manager: a create would own the field under another.
    let params = PatchParams::apply(controlplane::FIELD_MANAGER);
    config_maps
        .patch(
            "watched",
            &params,
            &Patch::Apply(config_map("watched", &ns, "before")),
        )
        .await
        .expect("create config map");
    assert_eq!(next_value().await.as_deref(), Some("before"));

    config_maps
        .patch(
            "watched",
            &params,
            &Patch::Apply(config_map("watched", &ns, "after")),
        )
        .await
        .expect("apply change");
    assert_eq!(next_value().await.as_deref(), Some("after"));
}

#[tokio::test]
async fn update_with_a_stale_resource_version_is_a_conflict() {
    let (ns, config_maps) = fresh_api::<ConfigMap>().await;
    let stale = config_maps
        .create(&PostParams::default(), &config_map("contended", &ns, "one"))
        .await
        .expect("create config map");
    let mut newer = stale.clone();
    newer.data = config_map("contended", &ns, "two").data;
    config_maps
        .replace("contended", &PostParams::default(), &newer)
        .await
        .expect("first replace");

    let mut late = stale;
    late.data = config_map("contended", &ns, "three").data;
    let err = config_maps
        .replace("contended", &PostParams::default(), &late)
        .await
        .expect_err("a replace from a stale resourceVersion must fail");

    let status = api_status(err, 409);
    assert!(status.is_conflict(), "{status:?}");
}

#[tokio::test]
async fn invalid_service_port_is_unprocessable() {
    let (ns, services) = fresh_api::<Service>().await;
    let service = Service {
        metadata: meta("broken", &ns),
        spec: Some(ServiceSpec {
            ports: Some(vec![service_port("http", 70000)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let err = services
        .create(&PostParams::default(), &service)
        .await
        .expect_err("port 70000 must be rejected");

    let status = api_status(err, 422);
    assert!(status.is_invalid(), "{status:?}");
}

#[tokio::test]
async fn installed_crd_is_established_and_served() {
    let cp = controlplane::shared().await;
    let ns = cp.fresh_namespace().await;
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.tests.extsvc.dev" },
        "spec": {
            "group": "tests.extsvc.dev",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true
                }}
            }]
        }
    }))
    .expect("a valid CRD");

    // Twice: installing is idempotent, as every test binary may do it.
    cp.install_crds(std::slice::from_ref(&crd)).await;
    cp.install_crds(&[crd]).await;

    let gvk = GroupVersionKind::gvk("tests.extsvc.dev", "v1", "Widget");
    let widgets = Api::<DynamicObject>::namespaced_with(
        cp.client().await,
        &ns,
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    );
    let list = widgets
        .list(&ListParams::default())
        .await
        .expect("list widgets");
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn data_written_while_the_api_server_is_down_is_kept_by_etcd() {
    let cp = ControlPlane::start_private().await;
    let ns = cp.fresh_namespace().await;
    let client = cp.client().await;
    let config_maps = Api::<ConfigMap>::namespaced(client, &ns);
    config_maps
        .create(&PostParams::default(), &config_map("kept", &ns, "v1"))
        .await
        .expect("create config map");
    let old_pid = cp.apiserver_pid();

    cp.stop_apiserver().await;
    let down = config_maps.get("kept").await;
    assert!(
        down.is_err(),
        "the API server answered while stopped: {down:?}"
    );
    cp.start_apiserver().await;

    assert_ne!(cp.apiserver_pid(), old_pid, "a new kube-apiserver process");
    let kept = config_maps
        .get("kept")
        .await
        .expect("get config map after restart");
    assert_eq!(
        kept.data.and_then(|d| d.get("key").cloned()).as_deref(),
        Some("v1")
    );
}

/// Kills the launcher's parent with SIGKILL; the launcher must notice and take etcd,
/// kube-apiserver and kube-controller-manager down with it.
#[tokio::test]
async fn launcher_leaves_no_process_behind_when_its_parent_is_killed() {
    let bin_dir = tokio::task::spawn_blocking(|| controlplane::bin_dir().to_owned())
        .await
        .expect("build the control plane");
    // `sh` stays the launcher's parent and tells us the launcher's pid; the launcher's
    // `ready` line tells us the children's pids. `sh` waits on a read from our pipe, so
    // that it also goes (taking the launcher along) if this test process is killed.
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --bin-dir "$1" </dev/null & echo "launcher-pid=$!"; read -r _"#)
        .arg(bin_dir.join("controlplane"))
        .arg(&bin_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let _keep_sh_waiting = parent.stdin.take();
    let stdout = parent.stdout.take().expect("piped stdout");
    let pids = tokio::task::spawn_blocking(move || {
        let mut pids = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read sh stdout");
            for field in line.split_whitespace() {
                if let Some((key, value)) = field.split_once('=')
                    && key.ends_with("-pid")
                {
                    pids.push((key.to_owned(), value.parse::<i32>().expect("a pid")));
                }
            }
            if line.starts_with("ready ") {
                return pids;
            }
        }
        panic!("the launcher exited before it was ready; its log is above");
    })
    .await
    .expect("read pids");
    assert_eq!(
        pids.len(),
        4,
        "launcher, etcd, kube-apiserver and kube-controller-manager pids: {pids:?}"
    );
    assert!(
        pids.iter().all(|(_, pid)| is_alive(*pid)),
        "all running: {pids:?}"
    );

    parent.kill().expect("kill -9 the parent");
    parent.wait().expect("reap the parent");

    // The launcher polls its parent every 500 ms, then stops its children.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut alive: Vec<_> = pids.clone();
    while !alive.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        alive.retain(|(_, pid)| is_alive(*pid));
    }
    assert!(
        alive.is_empty(),
        "still running 30 s after the parent died: {alive:?}"
    );
}

/// A process counts as gone once it has exited, even if nobody has reaped it yet.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "123 (etcd) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits (for at most `WATCH_TIMEOUT`) until `api` no longer has the object `name` of
/// `uid`.
async fn deleted<K>(api: &Api<K>, name: &str, uid: &str, what: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    tokio::time::timeout(
        WATCH_TIMEOUT,
        await_condition(api.clone(), name, conditions::is_deleted(uid)),
    )
    .await
    .unwrap_or_else(|_| panic!("{what} not deleted within {WATCH_TIMEOUT:?}"))
    .unwrap_or_else(|e| panic!("watching {what}: {e}"));
}

#[tokio::test]
async fn a_dependent_is_garbage_collected_with_its_owner() {
    let (ns, config_maps) = fresh_api::<ConfigMap>().await;
    let owner = config_maps
        .create(&PostParams::default(), &config_map("owner", &ns, "v1"))
        .await
        .expect("create the owner");
    let mut dependent = config_map("dependent", &ns, "v1");
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".to_owned(),
        kind: "ConfigMap".to_owned(),
        name: "owner".to_owned(),
        uid: owner.metadata.uid.clone().expect("a uid"),
        controller: Some(true),
        ..OwnerReference::default()
    }]);
    let dependent = config_maps
        .create(&PostParams::default(), &dependent)
        .await
        .expect("create the dependent");

    config_maps
        .delete("owner", &DeleteParams::background())
        .await
        .expect("delete the owner");

    let uid = dependent.metadata.uid.expect("a uid");
    deleted(&config_maps, "dependent", &uid, "the dependent").await;
}

#[tokio::test]
async fn deleting_a_namespace_completes() {
    let (ns, config_maps) = fresh_api::<ConfigMap>().await;
    config_maps
        .create(&PostParams::default(), &config_map("content", &ns, "v1"))
        .await
        .expect("create a config map");
    let namespaces = Api::<Namespace>::all(controlplane::shared().await.client().await);
    let uid = namespaces
        .get(&ns)
        .await
        .expect("get the namespace")
        .metadata
        .uid
        .expect("a uid");

    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");

    deleted(&namespaces, &ns, &uid, "the namespace").await;
}

#[tokio::test]
async fn a_namespace_gets_a_default_service_account_whose_tokens_authenticate() {
    let (ns, accounts) = fresh_api::<ServiceAccount>().await;
    tokio::time::timeout(
        WATCH_TIMEOUT,
        await_condition(
            accounts.clone(),
            "default",
            |account: Option<&ServiceAccount>| account.is_some(),
        ),
    )
    .await
    .expect("the default ServiceAccount within the timeout")
    .expect("watching ServiceAccounts");

    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["extsvc-test".to_owned()],
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request("default", &PostParams::default(), &request)
        .await
        .expect("a TokenRequest for the default ServiceAccount")
        .status
        .expect("a token in the status")
        .token;

    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token),
            audiences: Some(vec!["extsvc-test".to_owned()]),
        },
        ..TokenReview::default()
    };
    let reviews = Api::<TokenReview>::all(controlplane::shared().await.client().await);
    let status = reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("a TokenReview")
        .status
        .expect("a review status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(
        status.user.and_then(|user| user.username).as_deref(),
        Some(format!("system:serviceaccount:{ns}:default").as_str())
    );
}
