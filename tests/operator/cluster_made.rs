//! ExternalServices made with kubectl, not through the API.

use std::collections::BTreeMap;

use kube::api::{DeleteParams, ObjectMeta, PostParams};
use reqwest::StatusCode;
use serde_json::json;

use extsvc::resource::{Condition, ExternalService, ExternalServiceSpec};

use crate::helpers::{
    Site, TestOperator, control_plane, eventually, existing, registration, slice_addresses,
    spawn_operator,
};

fn resource(name: &str, spec: serde_json::Value) -> ExternalService {
    ExternalService {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "made-by".to_owned(),
                "kubectl".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: serde_json::from_value::<ExternalServiceSpec>(spec).expect("a spec"),
        status: None,
    }
}

/// Creates `resource` directly in the cluster, as kubectl would.
async fn create(op: &TestOperator, resource: &ExternalService) -> kube::Result<ExternalService> {
    op.external_services()
        .create(&PostParams::default(), resource)
        .await
}

#[tokio::test]
async fn a_resource_made_with_kubectl_is_reconciled_and_listed_read_only() {
    let op = spawn_operator().await;
    let made = resource("legacy-db", registration("legacy-db")["spec"].clone());
    create(&op, &made).await.unwrap();

    let slices = op.slices_eventually("its slices", "legacy-db", 3).await;
    assert_eq!(slice_addresses(&slices).len(), 3);

    let doc = eventually(30, "it listed by the API", || async {
        let (status, doc) = op.get("legacy-db").await;
        (status == StatusCode::OK && doc["status"]["observedGeneration"] == 1).then_some(doc)
    })
    .await;
    assert_eq!(doc["status"]["origin"], "cluster");
    assert_eq!(doc["metadata"]["labels"]["made-by"], "kubectl");
    let list = op
        .get_json(&format!(
            "/api/v1/namespaces/{}/external-services",
            op.namespace
        ))
        .await;
    assert_eq!(list["items"][0]["status"]["origin"], "cluster");

    // Read-only through the API.
    assert_eq!(
        op.put("legacy-db", &registration("legacy-db")).await,
        StatusCode::CONFLICT
    );
    assert_eq!(op.delete("legacy-db").await, StatusCode::CONFLICT);

    // Deleted with kubectl: gone from the API too.
    op.external_services()
        .delete("legacy-db", &DeleteParams::default())
        .await
        .unwrap();
    eventually(30, "it gone from the API", || async {
        (op.get("legacy-db").await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

/// The `Reconciled` condition of resource `name`, once it is `False`.
async fn not_reconciled(op: &TestOperator, name: &str) -> Condition {
    eventually(30, "a Reconciled=False condition", || async {
        let cr = op.external_services().get(name).await.ok()?;
        let condition = cr
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Reconciled")?;
        (condition.status == "False").then_some(condition)
    })
    .await
}

#[tokio::test]
async fn a_resource_that_breaks_a_rule_the_schema_cannot_check_says_why() {
    let op = spawn_operator().await;
    // The CRD checks each field; only the controller knows `nope` names no port.
    let made = resource(
        "broken",
        json!({
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"address": "192.0.2.1", "ports": ["nope"]}]
        }),
    );
    create(&op, &made).await.unwrap();

    let reconciled = not_reconciled(&op, "broken").await;
    assert_eq!(reconciled.reason, "InvalidSpec");
    assert!(
        reconciled.message.contains("/spec/endpoints/0/ports/0"),
        "{}",
        reconciled.message
    );
    assert!(
        op.services().get_opt("broken").await.unwrap().is_none(),
        "nothing is half-applied"
    );

    let events: kube::Api<k8s_openapi::api::events::v1::Event> = op.api();
    eventually(30, "a warning event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("InvalidSpec") && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
}

#[tokio::test]
async fn a_resource_made_with_kubectl_cannot_use_the_controller_to_break_a_policy() {
    let op = spawn_operator().await;
    // Whoever may create ExternalServices must not get, through the controller's rights,
    // an Ingress that configures the shared ingress controller.
    let made = resource(
        "sneaky",
        json!({
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"address": "192.0.2.1"}],
            "ingress": {
                "annotations": {"nginx.ingress.kubernetes.io/server-snippet": "location / { return 200; }"},
                "rules": [{"host": "sneaky.example.com", "paths": [{"port": "http"}]}]
            }
        }),
    );
    create(&op, &made).await.unwrap();

    let reconciled = not_reconciled(&op, "sneaky").await;
    assert_eq!(reconciled.reason, "InvalidSpec");
    assert!(
        reconciled
            .message
            .contains("/spec/ingress/annotations/nginx.ingress.kubernetes.io~1server-snippet"),
        "{}",
        reconciled.message
    );
    assert!(op.ingresses().get_opt("sneaky").await.unwrap().is_none());
}

#[tokio::test]
async fn the_api_server_refuses_what_the_schema_can_check() {
    let op = spawn_operator().await;
    let check = |check: serde_json::Value| {
        json!({
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"address": "192.0.2.1"}],
            "healthChecks": [check]
        })
    };
    let cases = [
        (
            check(json!({"name": "up", "tcp": {"port": 0}})),
            "should be greater than or equal to 1",
        ),
        (
            check(json!({"name": "up", "tcp": {"port": "nope"}})),
            "must name a port in spec.ports",
        ),
        (
            check(json!({"name": "up", "http": {"port": "http", "insecureSkipVerify": true}})),
            "insecureSkipVerify applies only to scheme HTTPS",
        ),
        (
            json!({
                "ports": [{"name": "http", "port": 80}],
                "endpoints": [{"address": "192.0.2.1", "ports": []}]
            }),
            "spec.endpoints[0].ports",
        ),
    ];
    for (i, (spec, expected)) in cases.into_iter().enumerate() {
        let made = resource(&format!("refused-{i}"), spec);
        match create(&op, &made).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(status.message.contains(expected), "{expected}: {status:?}");
            }
            other => panic!("{expected}: {other:?}"),
        }
    }
    // And the same rules pass what is valid.
    let valid = resource(
        "accepted",
        check(
            json!({"name": "up", "http": {"port": "http", "scheme": "HTTPS", "insecureSkipVerify": true}}),
        ),
    );
    create(&op, &valid).await.unwrap();
}

#[tokio::test]
async fn a_registration_of_a_name_made_with_kubectl_does_not_overwrite_it() {
    let site = Site::on(control_plane().await).await;
    // With the API running alone (or before the mirror copied the resource), the API
    // does not know of a resource made with kubectl, and accepts a registration of its
    // name.
    let api = site.start_api_only("api").await;
    let made = create(
        &api,
        &resource("billing-db", registration("other")["spec"].clone()),
    )
    .await
    .unwrap();
    let mut ours = registration("billing-db");
    ours["spec"]["endpoints"] = json!([{"address": "192.0.2.99"}]);
    assert_eq!(api.put("billing-db", &ours).await, StatusCode::CREATED);
    api.stop().await;

    // The mirror then finds it in the cluster: it says so, and leaves it alone.
    let op = site.start("leader").await;
    let error = eventually(30, "the refusal in the API", || async {
        let (_, doc) = op.get("billing-db").await;
        doc["status"]["mirrorError"].as_str().map(str::to_owned)
    })
    .await;
    assert!(error.contains("made by hand"), "{error}");
    let kept = existing(&op.external_services(), "the resource", "billing-db").await;
    assert_eq!(kept.metadata.uid, made.metadata.uid);
    assert_eq!(kept.spec, made.spec);
}
