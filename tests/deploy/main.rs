//! The manifests under `deploy/` against a real kube-apiserver: they parse and the
//! kustomization names them all, the RBAC grants exactly what the operator calls, the
//! example `ExternalService`s pass the CRD's validation (and the operator's own), and the
//! Deployment, Service and Pods are objects the API server accepts.

#[path = "../support/controlplane.rs"]
mod controlplane;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Container, EnvVar, Namespace, Pod, Probe, Secret, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::gvk::GroupVersion;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use extsvc::domain::ServiceSpec;
use extsvc::resource::ExternalService;

use controlplane::FIELD_MANAGER;

/// The namespace the manifests install into; tests move their objects to a fresh one.
const NAMESPACE: &str = "extsvc";
const SERVICE_ACCOUNT: &str = "extsvc";
const LEASE: &str = "extsvc-leader";
const DATABASE_SECRET: &str = "extsvc-database";
const ADMIN_SECRET: &str = "extsvc-admin";
/// How long a new RoleBinding may take to reach the API server's authorizer.
const RBAC_PROPAGATION: Duration = Duration::from_secs(15);

/// Verbs on the objects the operator owns: watched through reflectors (list, watch),
/// server-side applied (create on the first apply, patch after), replaced when another
/// manager's additions survive the apply, deleted when unwanted.
const OWNED: &[&str] = &["list", "watch", "create", "patch", "update", "delete"];

/// What the operator calls in every namespace: (API group, resource[/subresource], verbs).
/// The ClusterRole must grant exactly this.
const CLUSTER_NEEDS: &[(&str, &str, &[&str])] = &[
    // The mirror also replaces a resource whose spec someone extended by hand (server-side
    // apply keeps fields other managers added).
    (
        "extsvc.dev",
        "externalservices",
        &["list", "watch", "create", "patch", "update", "delete"],
    ),
    ("extsvc.dev", "externalservices/status", &["patch"]),
    ("", "services", OWNED),
    ("", "endpoints", OWNED),
    ("discovery.k8s.io", "endpointslices", OWNED),
    ("networking.k8s.io", "ingresses", OWNED),
    // The address policy reads the cluster's Service ranges (cluster-scoped).
    ("networking.k8s.io", "servicecidrs", &["list"]),
    // Service-account tokens of callers are reviewed by the API server.
    ("authentication.k8s.io", "tokenreviews", &["create"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// What leader election calls on Leases in its own namespace: (verb, resource name). The
/// Role must grant exactly this; `create` cannot be limited by name.
const LEASE_NEEDS: &[(&str, Option<&str>)] = &[
    ("get", Some(LEASE)),
    ("update", Some(LEASE)),
    ("create", None),
];

/// Where a request is made: in every namespace at once, in the operator's own namespace
/// (the test's stand-in for `extsvc`), or in another one.
#[derive(Debug, Clone, Copy)]
enum Where {
    All,
    Own,
    Other(&'static str),
}

/// A request of the operator's account: (verb, API group, resource or
/// resource/subresource, object name, where).
type Request = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Where,
);

/// Requests the operator never makes, so its account must be refused them.
#[rustfmt::skip]
const DENIED: &[Request] = &[
    ("get",              "",                     "secrets",                     None,                 Where::All),
    ("get",              "",                     "secrets",                     None,                 Where::Own),
    ("list",             "",                     "secrets",                     None,                 Where::Own),
    ("create",           "",                     "namespaces",                  None,                 Where::All),
    ("get",              "",                     "namespaces",                  None,                 Where::All),
    ("delete",           "",                     "pods",                        None,                 Where::Own),
    ("delete",           "",                     "pods",                        None,                 Where::All),
    ("list",             "",                     "pods",                        None,                 Where::All),
    ("patch",            "apiextensions.k8s.io", "customresourcedefinitions",   None,                 Where::All),
    ("create",           "apiextensions.k8s.io", "customresourcedefinitions",   None,                 Where::All),
    ("update",           "extsvc.dev",           "externalservices/status",     None,                 Where::All),
    ("update",           "extsvc.dev",           "externalservices/finalizers", None,                 Where::All),
    ("deletecollection", "",                     "services",                    None,                 Where::Own),
    ("get",              "",                     "services",                    None,                 Where::All),
    ("get",              "extsvc.dev",           "externalservices",            None,                 Where::All),
    ("create",           "",                     "events",                      None,                 Where::Own),
    ("create",           "coordination.k8s.io",  "leases",                      None,                 Where::Other("default")),
    ("get",              "coordination.k8s.io",  "leases",                      Some(LEASE),          Where::Other("default")),
    ("update",           "coordination.k8s.io",  "leases",                      Some(LEASE),          Where::Other("default")),
    ("get",              "coordination.k8s.io",  "leases",                      Some("someone-else"), Where::Own),
    ("update",           "coordination.k8s.io",  "leases",                      Some("someone-else"), Where::Own),
    ("delete",           "coordination.k8s.io",  "leases",                      Some(LEASE),          Where::Own),
    ("list",             "coordination.k8s.io",  "leases",                      None,                 Where::Own),
    ("watch",            "coordination.k8s.io",  "leases",                      None,                 Where::Own),
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The `*.yaml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every YAML document of a file (empty ones left out).
fn documents(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The documents of a file under `deploy/`.
fn manifest(relative: &str) -> Vec<Value> {
    documents(&deploy_dir().join(relative))
}

/// The one document of `kind` in a file under `deploy/`, as a typed object.
fn typed<K: DeserializeOwned>(relative: &str, kind: &str) -> K {
    let mut found = manifest(relative)
        .into_iter()
        .filter(|doc| doc["kind"] == kind)
        .collect::<Vec<_>>();
    assert_eq!(found.len(), 1, "deploy/{relative}: one {kind}");
    serde_json::from_value(found.remove(0))
        .unwrap_or_else(|e| panic!("deploy/{relative}: the {kind} does not deserialize: {e}"))
}

fn str_at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {doc}"))
}

/// `kind/name` of a manifest, for messages.
fn describe(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

/// Moves a manifest of the `extsvc` namespace into `namespace`.
fn into_namespace(mut doc: Value, namespace: &str) -> Value {
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
        && meta.contains_key("namespace")
    {
        meta.insert("namespace".to_owned(), json!(namespace));
    }
    doc
}

/// Server-side applies a manifest of any kind, found through discovery; `params` says
/// whether for real or as a dry run.
async fn apply(
    client: &Client,
    doc: &Value,
    params: &PatchParams,
) -> Result<DynamicObject, String> {
    let group_version: GroupVersion = str_at(doc, "/apiVersion")
        .parse()
        .map_err(|e| format!("{}: apiVersion: {e}", describe(doc)))?;
    let gvk = group_version.with_kind(str_at(doc, "/kind"));
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("{}: the API server does not serve it: {e}", describe(doc)))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{}: namespaced but names no namespace", describe(doc)))?;
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(str_at(doc, "/metadata/name"), params, &Patch::Apply(doc))
        .await
        .map_err(|e| format!("{}: {e}", describe(doc)))
}

/// Strict: an unknown or misspelt field is an error, not a silently dropped line.
fn strict_apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).validation_strict()
}

fn unique_names(docs: &[Value], what: &str) {
    let mut seen = BTreeSet::new();
    for doc in docs {
        assert!(
            seen.insert(describe(doc)),
            "{what}: {} twice",
            describe(doc)
        );
    }
}

#[test]
fn kustomization_lists_every_manifest_and_they_parse() {
    let dir = deploy_dir();
    let kustomization = manifest("kustomization.yaml");
    assert_eq!(kustomization.len(), 1, "kustomization.yaml is one document");
    let kustomization = &kustomization[0];
    assert_eq!(kustomization["kind"], "Kustomization");
    assert_eq!(kustomization["namespace"], NAMESPACE);

    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| r.as_str().expect("a resource is a path"))
        .collect();
    let mut applied = Vec::new();
    for resource in &listed {
        let path = dir.join(resource);
        assert!(
            path.is_file(),
            "kustomization.yaml lists {resource}: no such file"
        );
        let docs = documents(&path);
        assert!(!docs.is_empty(), "{resource} has no manifest");
        for doc in &docs {
            for field in ["/apiVersion", "/kind", "/metadata/name"] {
                str_at(doc, field);
            }
            if let Some(namespace) = doc.pointer("/metadata/namespace") {
                assert_eq!(namespace, NAMESPACE, "{resource}: {}", describe(doc));
            }
        }
        applied.extend(docs);
    }
    unique_names(&applied, "kustomization");
    let kinds: BTreeSet<&str> = applied.iter().map(|d| str_at(d, "/kind")).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(kind), "the kustomization applies no {kind}");
    }
    assert!(
        !kinds.contains("Secret"),
        "no Secret may be shipped: the database URL is the user's"
    );

    // Every manifest at the top is either listed or an example kept out on purpose.
    let listed: BTreeSet<PathBuf> = listed.iter().map(|r| dir.join(r)).collect();
    for path in yaml_files(&dir) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let docs = documents(&path);
        assert!(!docs.is_empty(), "{name} has no document");
        if name != "kustomization.yaml" && !name.ends_with(".example.yaml") {
            assert!(
                listed.contains(&path),
                "{name} is not in kustomization.yaml"
            );
        }
    }
    for path in yaml_files(&dir.join("crds")) {
        assert!(
            listed.contains(&path),
            "{} is not in kustomization.yaml",
            path.display()
        );
    }

    let examples = yaml_files(&dir.join("examples"));
    assert!(examples.len() >= 3, "deploy/examples/ has the examples");
    let mut all = Vec::new();
    for path in &examples {
        for doc in documents(path) {
            assert_eq!(
                doc["apiVersion"],
                extsvc::resource::API_VERSION,
                "{}",
                path.display()
            );
            assert_eq!(doc["kind"], "ExternalService", "{}", path.display());
            assert!(
                doc.pointer("/metadata/namespace").is_none(),
                "{}: examples name no namespace, so that `kubectl -n` places them",
                path.display()
            );
            all.push(doc);
        }
    }
    unique_names(&all, "examples");
}

#[test]
fn the_deployment_runs_serve_with_what_the_binary_reads() {
    let deployment: Deployment = typed("deployment.yaml", "Deployment");
    let spec = deployment.spec.expect("a Deployment spec");
    assert_eq!(spec.replicas, Some(2));
    let template_labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let selector = spec.selector.match_labels.unwrap_or_default();
    assert!(!selector.is_empty(), "the Deployment selects by labels");
    assert!(
        selector
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v)),
        "the Deployment's selector matches its pods"
    );

    let pod = spec.template.spec.expect("a pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
    let pod_security = pod.security_context.expect("a pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    let [container]: [Container; 1] = pod.containers.try_into().expect("one container");
    // preStop, then the API's 10 s drain, the leader work's 5 s and its 2 s release.
    let pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|p| p.sleep.as_ref())
        .map(|s| s.seconds)
        .expect("a preStop sleep, so endpoints drop the pod before it stops serving");
    assert!((3..=10).contains(&pre_stop));
    assert!(
        pod.termination_grace_period_seconds
            .is_some_and(|s| s >= pre_stop + 10 + 5 + 2 + 5 && s <= 60),
        "the grace period holds the whole shutdown with a margin"
    );
    assert_eq!(container.args.as_deref(), Some(&["serve".to_owned()][..]));
    assert!(container.image.is_some_and(|i| !i.is_empty()));

    let env: BTreeMap<String, EnvVar> = container
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|var| (var.name.clone(), var))
        .collect();
    assert_eq!(
        env.get("EXTSVC_LISTEN").and_then(|v| v.value.as_deref()),
        Some("0.0.0.0:8080"),
        "the API listens on every interface of the pod"
    );
    let secret = env
        .get("DATABASE_URL")
        .and_then(|v| v.value_from.as_ref()?.secret_key_ref.as_ref())
        .expect("DATABASE_URL comes from a Secret");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        (DATABASE_SECRET, "url")
    );
    let admin = env
        .get("EXTSVC_ADMIN_TOKEN")
        .and_then(|v| v.value_from.as_ref()?.secret_key_ref.as_ref())
        .expect("EXTSVC_ADMIN_TOKEN comes from a Secret");
    assert_eq!(
        (admin.name.as_str(), admin.key.as_str()),
        (ADMIN_SECRET, "token")
    );
    assert!(
        !env.contains_key("EXTSVC_INSTALL_CRD"),
        "the manifests apply the CRD; the account may not write CRDs"
    );
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let field_ref = env
            .get(var)
            .and_then(|v| v.value_from.as_ref()?.field_ref.as_ref())
            .unwrap_or_else(|| panic!("{var} comes from the downward API"));
        assert_eq!(field_ref.field_path, field, "{var}");
    }

    let ports = container.ports.unwrap_or_default();
    let http = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("a container port named http");
    assert_eq!(http.container_port, 8080);
    let probe_get = |probe: Option<&Probe>, what: &str| {
        let get = probe
            .and_then(|p| p.http_get.clone())
            .unwrap_or_else(|| panic!("an httpGet {what}"));
        assert_eq!(
            get.port,
            IntOrString::String("http".to_owned()),
            "{what} port"
        );
        get.path.unwrap_or_default()
    };
    assert_eq!(
        probe_get(container.readiness_probe.as_ref(), "readinessProbe"),
        "/readyz"
    );
    assert_eq!(
        probe_get(container.liveness_probe.as_ref(), "livenessProbe"),
        "/healthz"
    );

    let security = container
        .security_context
        .expect("a container securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    let seccomp = security
        .seccomp_profile
        .or(pod_security.seccomp_profile)
        .expect("a seccomp profile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
    let resources = container.resources.expect("resources");
    for (what, quantities) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let quantities = quantities
            .as_ref()
            .unwrap_or_else(|| panic!("resource {what}"));
        assert!(
            quantities.contains_key("cpu") && quantities.contains_key("memory"),
            "{what}"
        );
    }

    let service: Service = typed("service.yaml", "Service");
    let service = service.spec.expect("a Service spec");
    assert_eq!(service.type_.as_deref(), Some("ClusterIP"));
    let service_selector = service.selector.unwrap_or_default();
    assert!(!service_selector.is_empty());
    assert!(
        service_selector
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v)),
        "the Service selects the Deployment's pods"
    );
    let [port]: [_; 1] = service
        .ports
        .unwrap_or_default()
        .try_into()
        .expect("one port");
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 80));
    assert_eq!(
        port.target_port,
        Some(IntOrString::String("http".to_owned()))
    );

    let examples: Vec<(String, Vec<String>)> = manifest("secret.example.yaml")
        .into_iter()
        .map(|doc| {
            let secret: Secret = serde_json::from_value(doc).expect("a Secret");
            let keys = secret.string_data.unwrap_or_default().into_keys().collect();
            (secret.metadata.name.unwrap_or_default(), keys)
        })
        .collect();
    assert_eq!(
        examples,
        [
            (DATABASE_SECRET.to_owned(), vec!["url".to_owned()]),
            (ADMIN_SECRET.to_owned(), vec!["token".to_owned()]),
        ],
        "the example Secrets show the keys the Deployment reads"
    );
}

/// Flattens policy rules into (group, resource, verb, resource name) tuples, refusing
/// wildcards and non-resource URLs, which would grant more than any list could say.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String, Option<String>)> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none(),
            "no non-resource URLs: {rule:?}"
        );
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        let names = match &rule.resource_names {
            Some(names) => names.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        for field in [&groups, &resources, &rule.verbs] {
            assert!(
                !field.iter().any(|v| v.contains('*')),
                "no wildcards: {rule:?}"
            );
        }
        for group in &groups {
            for resource in &resources {
                for verb in &rule.verbs {
                    for name in &names {
                        grants.insert((
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                            name.clone(),
                        ));
                    }
                }
            }
        }
    }
    grants
}

/// Asks the API server's authorizer about the operator's service account.
struct Reviewer {
    client: Client,
    /// Where the manifests' objects were applied: the account's namespace.
    namespace: String,
}

impl Reviewer {
    async fn allows(&self, (verb, group, resource, name, place): Request) -> bool {
        let (resource, subresource) = match resource.split_once('/') {
            Some((resource, sub)) => (resource, Some(sub.to_owned())),
            None => (resource, None),
        };
        let namespace = match place {
            Where::All => None,
            Where::Own => Some(self.namespace.clone()),
            Where::Other(namespace) => Some(namespace.to_owned()),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!(
                    "system:serviceaccount:{}:{SERVICE_ACCOUNT}",
                    self.namespace
                )),
                // The groups a service account's token carries.
                groups: Some(vec![
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{}", self.namespace),
                    "system:authenticated".to_owned(),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource,
                    name: name.map(str::to_owned),
                    namespace,
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .unwrap_or_else(|e| panic!("SubjectAccessReview of {verb} {group}/{resource}: {e}"))
            .status
            .is_some_and(|status| status.allowed)
    }
}

/// Every request the operator makes: the cluster needs in every namespace at once (what
/// a watch of all namespaces asks) and in one, the Lease needs in its own namespace.
fn needed() -> Vec<Request> {
    let cluster = CLUSTER_NEEDS.iter().flat_map(|(group, resource, verbs)| {
        verbs.iter().flat_map(move |verb| {
            [Where::All, Where::Other("some-team")]
                .map(|place| (*verb, *group, *resource, None, place))
        })
    });
    let lease = LEASE_NEEDS
        .iter()
        .map(|(verb, name)| (*verb, "coordination.k8s.io", "leases", *name, Where::Own));
    cluster.chain(lease).collect()
}

/// rbac.yaml made to apply beside other tests: namespaced objects move to `namespace`,
/// cluster-scoped ones (and references to them) get its name as a suffix, and subjects
/// of the `extsvc` namespace move along. Wrong references stay wrong, so they still fail.
fn rbac_for(namespace: &str) -> Vec<Value> {
    manifest("rbac.yaml")
        .into_iter()
        .map(|doc| {
            let mut doc = into_namespace(doc, namespace);
            let cluster_scoped = matches!(
                doc["kind"].as_str(),
                Some("ClusterRole" | "ClusterRoleBinding")
            );
            if cluster_scoped {
                let name = format!("{}-{namespace}", str_at(&doc, "/metadata/name"));
                doc["metadata"]["name"] = json!(name);
            }
            if doc.pointer("/roleRef/kind") == Some(&json!("ClusterRole")) {
                let name = format!("{}-{namespace}", str_at(&doc, "/roleRef/name"));
                doc["roleRef"]["name"] = json!(name);
            }
            if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
                for subject in subjects {
                    if subject["namespace"] == NAMESPACE {
                        subject["namespace"] = json!(namespace);
                    }
                }
            }
            doc
        })
        .collect()
}

/// A client and a fresh namespace on the shared control plane, with the CRD of
/// `deploy/crds/` installed.
async fn with_the_crd() -> (Client, String) {
    let cp = controlplane::shared().await;
    let client = cp.client().await;
    cp.install_crds(&[typed::<CustomResourceDefinition>(
        "crds/externalservices.extsvc.dev.yaml",
        "CustomResourceDefinition",
    )])
    .await;
    (client, cp.fresh_namespace().await)
}

#[tokio::test]
async fn the_rbac_grants_exactly_what_the_operator_needs() {
    // On paper first: the rules name exactly the needs, not a verb more.
    let cluster_role: ClusterRole = typed("rbac.yaml", "ClusterRole");
    let expected: BTreeSet<_> = CLUSTER_NEEDS
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(move |verb| {
                (
                    (*group).to_owned(),
                    (*resource).to_owned(),
                    (*verb).to_owned(),
                    None,
                )
            })
        })
        .collect();
    let granted = grants(&cluster_role.rules.unwrap_or_default());
    assert_eq!(
        granted, expected,
        "the ClusterRole grants exactly CLUSTER_NEEDS"
    );
    let role: Role = typed("rbac.yaml", "Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    let expected: BTreeSet<_> = LEASE_NEEDS
        .iter()
        .map(|(verb, name)| {
            (
                "coordination.k8s.io".to_owned(),
                "leases".to_owned(),
                (*verb).to_owned(),
                name.map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        grants(&role.rules.unwrap_or_default()),
        expected,
        "the Role grants exactly LEASE_NEEDS"
    );

    // Then as the API server's authorizer sees it, with the CRD installed.
    let (client, namespace) = with_the_crd().await;
    let objects = rbac_for(&namespace);
    let mut applied = Vec::new();
    for doc in &objects {
        applied.push(
            apply(&client, doc, &strict_apply())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }

    // RBAC reaches the authorizer through informers: wait until both bindings count.
    let reviewer = Reviewer {
        client: client.clone(),
        namespace: namespace.clone(),
    };
    let witnesses: [Request; 2] = [
        (
            "get",
            "coordination.k8s.io",
            "leases",
            Some(LEASE),
            Where::Own,
        ),
        ("list", "extsvc.dev", "externalservices", None, Where::All),
    ];
    let deadline = tokio::time::Instant::now() + RBAC_PROPAGATION;
    for witness in witnesses {
        while !reviewer.allows(witness).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "after {RBAC_PROPAGATION:?} still refused: {witness:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut wrong = Vec::new();
    for request in needed() {
        if !reviewer.allows(request).await {
            wrong.push(format!("refused, but needed: {request:?}"));
        }
    }
    for request in DENIED {
        if reviewer.allows(*request).await {
            wrong.push(format!("allowed, but not needed: {request:?}"));
        }
    }

    // Cluster-scoped objects outlive the test's namespace: remove them (best effort).
    for object in applied.iter().filter(|o| o.namespace().is_none()) {
        let gvk = object
            .types
            .as_ref()
            .map(|t| (t.api_version.clone(), t.kind.clone()));
        if let Some((api_version, kind)) = gvk {
            let group_version: GroupVersion = api_version.parse().expect("an apiVersion");
            if let Ok((resource, _)) =
                discovery::pinned_kind(&client, &group_version.with_kind(&kind)).await
            {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                let _ = api
                    .delete(&object.name_any(), &DeleteParams::default())
                    .await;
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the service account's rights are off:\n{}",
        wrong.join("\n")
    );
}

/// Every example `ExternalService`, moved into `namespace`.
fn examples_in(namespace: &str) -> Vec<Value> {
    yaml_files(&deploy_dir().join("examples"))
        .iter()
        .flat_map(|path| documents(path))
        .map(|mut doc| {
            doc["metadata"]["namespace"] = json!(namespace);
            doc
        })
        .collect()
}

#[tokio::test]
async fn the_examples_are_accepted_by_the_api_server() {
    let (client, namespace) = with_the_crd().await;

    let examples = examples_in(&namespace);
    let mut refused = Vec::new();
    for example in &examples {
        if let Err(e) = apply(&client, example, &strict_apply()).await {
            refused.push(e);
        }
    }
    assert!(
        refused.is_empty(),
        "examples refused:\n{}",
        refused.join("\n")
    );

    // The acceptance means something: the same server refuses a broken one (CEL rule).
    let mut broken = examples
        .iter()
        .find(|e| e.pointer("/spec/healthChecks/0/http").is_some())
        .expect("an example with an http check")
        .clone();
    broken["metadata"]["name"] = json!("broken");
    broken["spec"]["healthChecks"][0]["tcp"] = json!({"port": 1});
    let error = apply(&client, &broken, &strict_apply())
        .await
        .expect_err("a check with both http and tcp is refused");
    assert!(
        error.contains("exactly one of http, tcp and grpc"),
        "{error}"
    );
}

#[test]
fn the_examples_pass_the_operators_own_validation() {
    for example in examples_in("example") {
        let name = describe(&example);
        let resource: ExternalService = serde_json::from_value(example)
            .unwrap_or_else(|e| panic!("{name} does not deserialize as an ExternalService: {e}"));
        if let Err(errors) = ServiceSpec::parse(&resource.spec) {
            panic!("{name} is refused by the operator: {errors}");
        }
    }
}

#[tokio::test]
async fn the_deployment_is_valid_for_the_api_server() {
    let cp = controlplane::shared().await;
    let client = cp.client().await;
    let namespace = cp.fresh_namespace().await;
    let dry_run = strict_apply().dry_run();

    let mut refused = Vec::new();
    for file in [
        "namespace.yaml",
        "deployment.yaml",
        "service.yaml",
        "secret.example.yaml",
    ] {
        for doc in manifest(file) {
            let doc = into_namespace(doc, &namespace);
            match apply(&client, &doc, &dry_run).await {
                Ok(object) => assert_eq!(object.name_any(), str_at(&doc, "/metadata/name")),
                Err(e) => refused.push(format!("{file}: {e}")),
            }
        }
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}

/// The Deployment's pod template as a Pod in `namespace`.
fn pod_of_deployment(namespace: &str) -> Value {
    let deployment: Deployment = typed("deployment.yaml", "Deployment");
    let template = deployment.spec.expect("a Deployment spec").template;
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("extsvc-pod-security".to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: template.metadata.and_then(|m| m.labels),
            ..Default::default()
        },
        spec: template.spec,
        ..Pod::default()
    };
    let mut value = serde_json::to_value(&pod).expect("a Pod serializes");
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Pod");
    value
}

#[tokio::test]
async fn the_pods_meet_the_restricted_pod_security_standard() {
    let cp = controlplane::shared().await;
    let client = cp.client().await;
    let namespace = cp.fresh_namespace().await;
    // The label namespace.yaml sets, so that PodSecurity admission enforces it here too.
    let labels = manifest("namespace.yaml")[0]["metadata"]["labels"].clone();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    Api::<Namespace>::all(client.clone())
        .patch(
            &namespace,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": labels},
            })),
        )
        .await
        .expect("labelling the namespace");

    // The Pod runs as the ServiceAccount rbac.yaml makes; admission refuses it without.
    let service_account = manifest("rbac.yaml")
        .into_iter()
        .find(|doc| doc["kind"] == "ServiceAccount")
        .expect("rbac.yaml has a ServiceAccount");
    apply(
        &client,
        &into_namespace(service_account, &namespace),
        &strict_apply(),
    )
    .await
    .unwrap_or_else(|e| panic!("creating the ServiceAccount: {e}"));

    let dry_run = strict_apply().dry_run();
    let pod = pod_of_deployment(&namespace);
    apply(&client, &pod, &dry_run)
        .await
        .unwrap_or_else(|e| panic!("PodSecurity refuses the Deployment's pods: {e}"));

    // And the admission is really on: without the securityContexts the Pod is refused.
    let mut bare = pod;
    for pointer in ["/spec", "/spec/containers/0"] {
        bare.pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .expect("a pod spec and a container")
            .remove("securityContext");
    }
    let error = apply(&client, &bare, &dry_run)
        .await
        .expect_err("a Pod without securityContext is refused in a restricted namespace");
    assert!(error.contains("restricted"), "{error}");
}
