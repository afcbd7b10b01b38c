//! The address policy learns the cluster's own ranges from the cluster.

use reqwest::StatusCode;
use serde_json::json;

use kube::api::{ObjectMeta, PostParams};

use extsvc::resource::{ExternalService, ExternalServiceSpec};

use crate::helpers::{
    Site, control_plane, eventually, registration, slice_addresses, spawn_operator,
};

#[tokio::test]
async fn an_address_in_the_clusters_service_range_is_refused() {
    let op = spawn_operator().await;
    // The test control plane serves Services from 10.0.0.0/24 (its ServiceCIDR
    // `kubernetes`); the operator read it when it started.
    let mut doc = registration("inside");
    doc["spec"]["endpoints"] = json!([{"address": "192.0.2.10"}, {"address": "10.0.0.10"}]);
    let response = op
        .http
        .put(op.item("inside"))
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["pointer"], "/spec/endpoints/1/address");
    assert_eq!(
        problem["errors"][0]["detail"],
        "10.0.0.10 is in 10.0.0.0/24 (the cluster's Services, ServiceCIDR kubernetes), which the address policy denies"
    );
}

#[tokio::test]
async fn a_teams_exception_lets_the_controller_publish_a_denied_address_in_its_namespace() {
    let cp = control_plane().await;
    let site = Site::on(cp).await;
    // The team owns the watched namespace; the Lease lives elsewhere.
    let lease_namespace = cp.fresh_namespace().await;
    let op = site
        .start_with("only", |settings| {
            settings.denied_cidrs = Some("192.0.2.0/24".to_owned());
            settings.kubernetes.lease_namespace = lease_namespace.clone();
        })
        .await;
    let team = json!({
        "name": "payments", "namespaces": [site.namespace],
        "ingressHosts": ["pay.example.com"], "allowedCidrs": ["192.0.2.0/28"],
    });
    let made = op
        .http
        .post(format!("{}/api/v1/teams", op.address))
        .json(&team)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);

    // Made with kubectl, so only the controller judges it: 192.0.2.5 is inside the
    // team's exception, 192.0.2.100 is not.
    let spec = json!({
        "ports": [{"name": "tcp", "port": 5432}],
        "endpoints": [{"address": "192.0.2.5"}]
    });
    let resource = ExternalService {
        metadata: ObjectMeta {
            name: Some("excepted".to_owned()),
            ..ObjectMeta::default()
        },
        spec: serde_json::from_value::<ExternalServiceSpec>(spec).unwrap(),
        status: None,
    };
    op.external_services()
        .create(&PostParams::default(), &resource)
        .await
        .unwrap();
    // The controller reads the exceptions every 10 s and looks at a denied resource
    // again every 30 s.
    let slices = eventually(60, "its slice", || async {
        let slices = op.slices_of("excepted").await;
        (slices.len() == 1).then_some(slices)
    })
    .await;
    assert_eq!(slice_addresses(&slices), [("192.0.2.5".to_owned(), true)]);
    op.stop().await;
}
