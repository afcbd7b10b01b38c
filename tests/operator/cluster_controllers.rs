//! What a real cluster's kube-controller-manager does with what the operator writes: the
//! garbage collector deletes the children with their ExternalService (following the
//! ownerReferences the controller sets), the namespace controller deletes a namespace
//! with registrations in it, and the EndpointSlice mirroring controller leaves our legacy
//! Endpoints alone (they carry the skip-mirror label).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use reqwest::StatusCode;

use crate::controlplane::ControlPlane;
use crate::helpers::{
    Site, TestOperator, absent, collecting_control_plane, control_plane, eventually, existing,
    registration,
};

/// The label the EndpointSlice mirroring controller puts on the slices it makes.
const MIRRORED: &str =
    "endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io";

/// Waits until service `name` has all its children: a Service, three EndpointSlices,
/// Endpoints and an Ingress (the shape of [`registration`]).
async fn children_eventually(op: &TestOperator, name: &str) {
    existing(&op.services(), "the Service", name).await;
    op.slices_eventually("three EndpointSlices", name, 3).await;
    existing(&op.endpoints(), "the Endpoints", name).await;
    existing(&op.ingresses(), "the Ingress", name).await;
}

/// Waits until every child of service `name` is gone.
async fn children_gone(op: &TestOperator, name: &str) {
    absent(&op.services(), "the Service to be collected", name).await;
    op.slices_eventually("the EndpointSlices to be collected", name, 0)
        .await;
    absent(&op.endpoints(), "the Endpoints to be collected", name).await;
    absent(&op.ingresses(), "the Ingress to be collected", name).await;
}

#[tokio::test]
async fn deleting_a_registration_through_the_api_deletes_its_children() {
    let op = Site::on(collecting_control_plane().await)
        .await
        .start("only")
        .await;
    assert_eq!(
        op.put("billing-db", &registration("billing-db")).await,
        StatusCode::CREATED
    );
    children_eventually(&op, "billing-db").await;

    assert_eq!(op.delete("billing-db").await, StatusCode::OK);

    absent(
        &op.external_services(),
        "the ExternalService to go",
        "billing-db",
    )
    .await;
    children_gone(&op, "billing-db").await;
}

#[tokio::test]
async fn deleting_a_resource_with_kubectl_deletes_its_children() {
    let cp = collecting_control_plane().await;
    let op = Site::on(cp).await.start("only").await;
    let manifest = serde_json::json!({
        "apiVersion": "extsvc.dev/v1alpha1",
        "kind": "ExternalService",
        "metadata": {"name": "legacy-db", "namespace": op.namespace},
        "spec": registration("legacy-db")["spec"],
    });
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), manifest.to_string()).expect("write the manifest");
    kubectl(cp, &["apply", "-f", &file.path().to_string_lossy()]).await;
    children_eventually(&op, "legacy-db").await;

    // kubectl's default: background propagation, and it waits for the resource to go.
    kubectl(
        cp,
        &[
            "delete",
            "externalservice",
            "legacy-db",
            "-n",
            &op.namespace,
        ],
    )
    .await;

    children_gone(&op, "legacy-db").await;
}

#[tokio::test]
async fn deleting_a_namespace_with_registrations_completes_and_takes_their_children() {
    let op = Site::on(collecting_control_plane().await)
        .await
        .start("only")
        .await;
    for name in ["billing-db", "orders-db"] {
        assert_eq!(op.put(name, &registration(name)).await, StatusCode::CREATED);
    }
    for name in ["billing-db", "orders-db"] {
        children_eventually(&op, name).await;
    }

    let namespaces = Api::<Namespace>::all(op.kube.clone());
    namespaces
        .delete(&op.namespace, &Default::default())
        .await
        .expect("delete the namespace");

    eventually(60, "the namespace deletion to finish", || async {
        namespaces
            .get_opt(&op.namespace)
            .await
            .ok()
            .and_then(|namespace| namespace.is_none().then_some(()))
    })
    .await;
    for name in ["billing-db", "orders-db"] {
        absent(&op.external_services(), "the ExternalService", name).await;
        children_gone(&op, name).await;
    }
}

#[tokio::test]
async fn legacy_endpoints_are_not_mirrored_into_more_endpoint_slices() {
    let op = Site::on(control_plane().await).await.start("only").await;
    op.put("billing-db", &registration("billing-db")).await;
    let service = existing(&op.services(), "the Service", "billing-db").await;
    let ours = existing(&op.endpoints(), "the Endpoints", "billing-db").await;
    op.slices_eventually("three EndpointSlices", "billing-db", 3)
        .await;

    // The control: the same Endpoints for the same kind of Service (no selector), but
    // without the skip-mirror label, written after ours. The mirroring controller makes
    // slices for it, so it has run, and would have mirrored ours as well.
    let control = "control";
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(BTreeMap::from([("test".to_owned(), "control".to_owned())])),
        ..ObjectMeta::default()
    };
    let control_service = Service {
        metadata: meta(control),
        spec: service
            .spec
            .map(|spec| k8s_openapi::api::core::v1::ServiceSpec {
                cluster_ip: spec.cluster_ip,
                ports: spec.ports,
                ..Default::default()
            }),
        ..Service::default()
    };
    op.services()
        .create(&PostParams::default(), &control_service)
        .await
        .expect("create the control Service");
    let control_endpoints = Endpoints {
        metadata: meta(control),
        subsets: ours.subsets.clone(),
    };
    op.endpoints()
        .create(&PostParams::default(), &control_endpoints)
        .await
        .expect("create the control Endpoints");
    let mirrored = |service: &str| {
        let slices: Api<EndpointSlice> = op.api();
        let selector = format!("{MIRRORED},kubernetes.io/service-name={service}");
        async move {
            slices
                .list(&ListParams::default().labels(&selector))
                .await
                .expect("list EndpointSlices")
                .items
        }
    };
    eventually(30, "the control Endpoints mirrored", || async {
        (!mirrored(control).await.is_empty()).then_some(())
    })
    .await;

    assert_eq!(
        ours.labels()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    assert!(mirrored("billing-db").await.is_empty());
    let slices = op.slices_of("billing-db").await;
    assert_eq!(slices.len(), 3, "only our own slices");
    for slice in slices {
        assert_eq!(slice.labels()["app.kubernetes.io/managed-by"], "extsvc");
    }
}

/// Runs the control plane's kubectl with `args` and fails the test if it fails.
async fn kubectl(cp: &ControlPlane, args: &[&str]) {
    let mut command = tokio::process::Command::from(cp.kubectl());
    let output = command.args(args).output().await.expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {} failed ({}): {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
