//! The controller changes and deletes only what it made for the resource: a Service or
//! an Ingress someone else already runs under the registration's name is left alone.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Site, TestOperator, absent, collecting_control_plane, eventually, existing, registration,
};

/// An operator on a control plane whose garbage collector deletes the children of a
/// deleted resource.
async fn spawn_operator() -> TestOperator {
    Site::on(collecting_control_plane().await)
        .await
        .start("only")
        .await
}

/// The `Reconciled` condition the registration's stored status shows, once it says
/// `status`.
async fn reconciled(op: &TestOperator, name: &str, status: &str) -> Value {
    eventually(60, "the Reconciled condition", || async {
        let (_, doc) = op.get(name).await;
        doc["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Reconciled" && c["status"] == status)
            .cloned()
    })
    .await
}

#[tokio::test]
async fn a_service_someone_else_runs_under_the_name_is_never_taken_over() {
    let op = spawn_operator().await;
    let theirs: Service = serde_json::from_value(json!({
        "metadata": {"name": "billing-db", "labels": {"app": "billing"}},
        "spec": {"clusterIP": "None", "selector": {"app": "billing"},
                 "ports": [{"name": "pg", "port": 5432}]}
    }))
    .unwrap();
    let theirs = op
        .services()
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();

    assert_eq!(
        op.put("billing-db", &registration("billing-db")).await,
        StatusCode::CREATED
    );
    let condition = reconciled(&op, "billing-db", "False").await;
    assert_eq!(condition["reason"], "NameConflict");
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains("Service billing-db exists and was not made by extsvc"),
        "{condition}"
    );
    let after = op.services().get("billing-db").await.unwrap();
    assert_eq!(after.resource_version(), theirs.resource_version());
    assert!(after.owner_references().is_empty());
    // (The cluster's EndpointSlice controller makes one for their selector.)
    let ours = op
        .slices_of("billing-db")
        .await
        .into_iter()
        .filter(|slice| {
            slice.labels().get("endpointslice.kubernetes.io/managed-by")
                == Some(&"controller.extsvc.dev".to_owned())
        });
    assert_eq!(
        ours.count(),
        0,
        "no slices of ours for a Service that is not ours"
    );

    // Deleting the registration deletes nothing of theirs.
    assert!(op.delete("billing-db").await.is_success());
    absent(&op.external_services(), "the ExternalService", "billing-db").await;
    let after = op.services().get("billing-db").await.unwrap();
    assert_eq!(after.resource_version(), theirs.resource_version());

    // Once they free the name, a new registration gets it.
    op.services()
        .delete("billing-db", &DeleteParams::default())
        .await
        .unwrap();
    absent(&op.services(), "their Service", "billing-db").await;
    assert_eq!(
        op.put("billing-db", &registration("billing-db")).await,
        StatusCode::CREATED
    );
    reconciled(&op, "billing-db", "True").await;
    let ours = existing(&op.services(), "our Service", "billing-db").await;
    assert_eq!(ours.owner_references().len(), 1);
}

#[tokio::test]
async fn an_ingress_someone_else_runs_under_the_name_is_left_alone_until_they_free_it() {
    let op = spawn_operator().await;
    let theirs: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "pay"},
        "spec": {"rules": [{"host": "theirs.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "their-web", "port": {"number": 80}}}
        }]}}]}
    }))
    .unwrap();
    let theirs = op
        .ingresses()
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();

    assert_eq!(
        op.put("pay", &registration("pay")).await,
        StatusCode::CREATED
    );
    let condition = reconciled(&op, "pay", "False").await;
    assert_eq!(condition["reason"], "NameConflict");
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains("Ingress pay exists and was not made by extsvc"),
        "{condition}"
    );
    // The Service and its slices come before the Ingress, and are ours.
    existing(&op.services(), "our Service to be made", "pay").await;
    let after = op.ingresses().get("pay").await.unwrap();
    assert_eq!(after.resource_version(), theirs.resource_version());

    // Once they free the name, the registration proceeds by itself.
    op.ingresses()
        .delete("pay", &DeleteParams::default())
        .await
        .unwrap();
    reconciled(&op, "pay", "True").await;
    let ours = existing(&op.ingresses(), "our Ingress", "pay").await;
    assert_eq!(ours.owner_references().len(), 1);
    assert_ne!(ours.uid(), theirs.uid());
}
