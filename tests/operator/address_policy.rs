//! The address policy learns the cluster's own ranges from the cluster.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{registration, spawn_operator};

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
