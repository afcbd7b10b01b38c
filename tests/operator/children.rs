//! A registration made through the API becomes an ExternalService and its children, and
//! they follow every change.

use std::time::Duration;

use kube::ResourceExt;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{absent, eventually, existing, registration, slice_addresses, spawn_operator};

#[tokio::test]
async fn a_registration_becomes_a_resource_with_service_slices_endpoints_and_ingress() {
    let op = spawn_operator().await;
    assert_eq!(
        op.put("billing-db", &registration("billing-db")).await,
        StatusCode::CREATED
    );

    let cr = existing(&op.external_services(), "the ExternalService", "billing-db").await;
    assert_eq!(cr.spec.ports.len(), 2);
    assert_eq!(cr.labels()["team"], "payments");
    let uid = cr.uid().expect("a uid");

    let service = existing(&op.services(), "the Service", "billing-db").await;
    let spec = service.spec.clone().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert!(spec.selector.is_none());
    let ports: Vec<_> = spec
        .ports
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.port))
        .collect();
    assert_eq!(
        ports,
        [("https".to_owned(), 443), ("metrics".to_owned(), 9100)]
    );

    let slices = op
        .slices_eventually("three EndpointSlices", "billing-db", 3)
        .await;
    assert_eq!(
        slice_addresses(&slices),
        [
            ("192.0.2.10".to_owned(), true),
            ("192.0.2.11".to_owned(), true),
            ("2001:db8::10".to_owned(), true)
        ]
    );
    let https_only = slices
        .iter()
        .find(|s| s.endpoints[0].addresses[0] == "192.0.2.11")
        .unwrap();
    assert_eq!(https_only.ports.as_ref().unwrap().len(), 1);
    let v6 = slices.iter().find(|s| s.address_type == "IPv6").unwrap();
    assert_eq!(v6.ports.as_ref().unwrap().len(), 2);

    let endpoints = existing(&op.endpoints(), "the Endpoints", "billing-db").await;
    assert_eq!(
        endpoints.subsets.as_ref().unwrap().len(),
        2,
        "one subset per port set"
    );
    assert_eq!(
        endpoints.labels()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );

    let ingress = existing(&op.ingresses(), "the Ingress", "billing-db").await;
    assert_eq!(ingress.annotations()["example.com/team"], "payments");
    let rule = &ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("pay.example.com"));

    // Every child is owned by the ExternalService, as its controller, so that the garbage
    // collector removes them with it (`cluster_controllers.rs` deletes one).
    let owners = [
        service.owner_references().to_vec(),
        endpoints.owner_references().to_vec(),
        ingress.owner_references().to_vec(),
    ]
    .into_iter()
    .chain(slices.iter().map(|s| s.owner_references().to_vec()));
    for references in owners {
        assert_eq!(references.len(), 1);
        assert_eq!(
            (references[0].uid.as_str(), references[0].controller),
            (uid.as_str(), Some(true))
        );
        assert_eq!(references[0].kind, "ExternalService");
    }
    for labels in [service.labels(), endpoints.labels(), ingress.labels()] {
        assert_eq!(labels["app.kubernetes.io/managed-by"], "extsvc");
    }
}

#[tokio::test]
async fn the_api_shows_what_reached_the_cluster() {
    let op = spawn_operator().await;
    op.put("billing-db", &registration("billing-db")).await;

    let status = eventually(30, "a status with observedGeneration 1", || async {
        let (_, doc) = op.get("billing-db").await;
        let status = doc["status"].clone();
        (status["observedGeneration"] == 1).then_some(status)
    })
    .await;

    assert_eq!(status["origin"], "api");
    assert_eq!(status["mirroredGeneration"], 1);
    assert_eq!(status["ready"], "3/3");
    let conditions = status["conditions"].as_array().unwrap();
    let reconciled = conditions
        .iter()
        .find(|c| c["type"] == "Reconciled")
        .unwrap();
    assert_eq!(reconciled["status"], "True");
    let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("True"), &json!("AllAddressesReady"))
    );
}

#[tokio::test]
async fn changing_ports_and_addresses_moves_the_children_along() {
    let op = spawn_operator().await;
    let mut doc = registration("billing-db");
    op.put("billing-db", &doc).await;
    op.slices_eventually("three slices", "billing-db", 3).await;

    doc["spec"]["ports"] =
        json!([{"name": "https", "port": 8443}, {"name": "admin", "port": 9000}]);
    doc["spec"]["endpoints"] = json!([
        {"address": "192.0.2.20"},
        {"address": "192.0.2.21", "ports": ["admin"]}
    ]);
    assert_eq!(op.put("billing-db", &doc).await, StatusCode::OK);

    let slices = eventually(30, "the new slices only", || async {
        let slices = op.slices_of("billing-db").await;
        let addresses = slice_addresses(&slices);
        (addresses
            == [
                ("192.0.2.20".to_owned(), true),
                ("192.0.2.21".to_owned(), true),
            ])
        .then_some(slices)
    })
    .await;
    assert_eq!(slices.len(), 2, "stale slices are deleted");
    let ports = eventually(30, "the new Service ports", || async {
        let service = op.services().get("billing-db").await.ok()?;
        let ports: Vec<_> = service
            .spec?
            .ports?
            .iter()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port))
            .collect();
        (ports == [("https".to_owned(), 8443), ("admin".to_owned(), 9000)]).then_some(ports)
    })
    .await;
    assert_eq!(ports.len(), 2, "the removed port is gone");
    // Applied after the Service and the slices, in the same reconcile.
    eventually(30, "Endpoints with a subset per port set", || async {
        let endpoints = op.endpoints().get("billing-db").await.ok()?;
        (endpoints.subsets?.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn removing_the_ingress_deletes_it() {
    let op = spawn_operator().await;
    let mut doc = registration("billing-db");
    op.put("billing-db", &doc).await;
    existing(&op.ingresses(), "the Ingress", "billing-db").await;

    doc["spec"].as_object_mut().unwrap().remove("ingress");
    op.put("billing-db", &doc).await;

    absent(&op.ingresses(), "the Ingress to go", "billing-db").await;
    assert!(
        op.services().get_opt("billing-db").await.unwrap().is_some(),
        "the Service stays"
    );
}

#[tokio::test]
async fn an_unchanged_world_makes_no_writes() {
    let op = spawn_operator().await;
    for name in ["a", "b", "c"] {
        assert_eq!(op.put(name, &registration(name)).await, StatusCode::CREATED);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut docs = Vec::new();
        for name in ["a", "b", "c"] {
            docs.push(op.get(name).await.1);
        }
        if docs.iter().all(|doc| doc["status"]["ready"] == "3/3") {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let resources = op.external_services().list(&Default::default()).await;
            panic!(
                "not every status within 60 s: {docs:#?}\nin the cluster: {:#?}",
                resources.map(|list| list
                    .items
                    .into_iter()
                    .map(|r| (r.metadata, r.status))
                    .collect::<Vec<_>>())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last watch events (our own writes coming back) pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = op.metric("extsvc_kubernetes_writes_total").await;
    let slice_versions = || async {
        op.endpoint_slices()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|s| s.resource_version())
            .collect::<Vec<_>>()
    };
    let versions = slice_versions().await;

    tokio::time::sleep(Duration::from_secs(8)).await;

    assert_eq!(
        op.metric("extsvc_kubernetes_writes_total").await,
        writes,
        "writes in a quiet period"
    );
    let after = slice_versions().await;
    assert_eq!(after, versions);
    assert!(writes > 0.0);
}
