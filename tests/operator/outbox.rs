//! The outbox under changes the cluster keeps refusing: they wait their turn with a
//! backoff, say why in the API, and never hold back the changes behind them.

use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::controlplane::FIELD_MANAGER;
use crate::helpers::{Site, TestOperator, control_plane, eventually, existing};

/// More than the mirror reads of the outbox in one pass (500).
const REFUSED: usize = 520;

fn minimal(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"address": "192.0.2.20"}]
        }
    })
}

/// A ValidatingAdmissionPolicy (CEL, run by the API server itself) that refuses every
/// ExternalService named `blocked-*` in `op`'s namespace; returns once it is in force.
async fn refuse_blocked_names(op: &TestOperator) {
    let apply = |kind: &str, body: Value| {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            kind,
        ));
        let api: Api<DynamicObject> = Api::all_with(op.kube.clone(), &resource);
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        async move {
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&body),
            )
            .await
            .unwrap_or_else(|e| panic!("apply the {name} policy: {e}"));
        }
    };
    let name = format!("refuse-blocked-{}", op.namespace);
    apply(
        "ValidatingAdmissionPolicy",
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["extsvc.dev"], "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["externalservices"]
                }]},
                "validations": [{
                    "expression": "!object.metadata.name.startsWith('blocked-')",
                    "message": "blocked by policy"
                }]
            }
        }),
    )
    .await;
    apply(
        "ValidatingAdmissionPolicyBinding",
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": op.namespace
                }}}
            }
        }),
    )
    .await;
    // The API server loads policies asynchronously: wait until a dry run is refused.
    let probe: extsvc::resource::ExternalService = serde_json::from_value(json!({
        "apiVersion": "extsvc.dev/v1alpha1",
        "kind": "ExternalService",
        "metadata": {"name": "blocked-probe", "namespace": op.namespace},
        "spec": minimal("blocked-probe")["spec"],
    }))
    .expect("an ExternalService");
    let resources = op.external_services();
    eventually(30, "the policy to be in force", || async {
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        resources
            .create(&dry_run, &probe)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn changes_the_cluster_refuses_never_hold_back_the_others() {
    let op = Site::on(control_plane().await).await.start("only").await;
    refuse_blocked_names(&op).await;

    for i in 0..REFUSED {
        let name = format!("blocked-{i}");
        assert_eq!(op.put(&name, &minimal(&name)).await, StatusCode::CREATED);
    }
    assert_eq!(
        op.put("billing-db", &minimal("billing-db")).await,
        StatusCode::CREATED
    );

    // Behind more refused changes than one pass reads, and still delivered at once
    // rather than at the next full comparison, ten minutes later.
    existing(
        &op.external_services(),
        "billing-db's resource",
        "billing-db",
    )
    .await;
    let (status, refused) = op.get("blocked-0").await;
    assert_eq!(status, StatusCode::OK);
    let error = refused["status"]["mirrorError"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("blocked by policy"), "{refused:#}");
}
