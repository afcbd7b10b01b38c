//! Create, read, replace and delete one registration.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{document, problem, spawn_app};

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"]
        .to_str()
        .expect("ASCII ETag")
        .to_owned()
}

#[tokio::test]
async fn registering_returns_201_with_location_etag_and_the_document_as_written() {
    let app = spawn_app().await;
    let sent = document("billing-db");

    let response = app.post("payments", &sent).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"],
        "/api/v1/namespaces/payments/external-services/billing-db"
    );
    let tag = etag(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["spec"], sent["spec"],
        "the spec comes back exactly as written"
    );
    assert_eq!(body["metadata"]["namespace"], "payments");
    assert_eq!(body["metadata"]["labels"], sent["metadata"]["labels"]);
    assert_eq!(body["metadata"]["generation"], 1);
    assert!(
        body["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(
        body["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(
        tag,
        format!(
            "\"{}\"",
            body["metadata"]["resourceVersion"].as_str().unwrap()
        )
    );
    assert_eq!(body["status"]["origin"], "api");
}

#[tokio::test]
async fn a_registration_reads_back_with_the_same_etag() {
    let app = spawn_app().await;
    let created = app.post("payments", &document("billing-db")).await;
    let tag = etag(&created);
    let created: Value = created.json().await.unwrap();

    let response = app.get(&app.item("payments", "billing-db")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(etag(&response), tag);
    assert_eq!(response.json::<Value>().await.unwrap(), created);
}

#[tokio::test]
async fn defaults_are_filled_in_and_shown() {
    let app = spawn_app().await;
    let minimal = json!({
        "metadata": {"name": "cache"},
        "spec": {
            "ports": [{"name": "redis", "port": 6379}],
            "endpoints": [{"address": "192.0.2.1"}],
            "healthChecks": [{"name": "ping", "tcp": {"port": "redis"}}]
        }
    });

    let body: Value = app.post("ops", &minimal).await.json().await.unwrap();

    assert_eq!(body["apiVersion"], "extsvc.dev/v1alpha1");
    assert_eq!(body["kind"], "ExternalService");
    assert_eq!(body["spec"]["ports"][0]["protocol"], "TCP");
    let check = &body["spec"]["healthChecks"][0];
    assert_eq!(
        [
            &check["periodSeconds"],
            &check["timeoutSeconds"],
            &check["initialDelaySeconds"]
        ],
        [&json!(10), &json!(1), &json!(0)]
    );
    assert_eq!(
        [&check["successThreshold"], &check["failureThreshold"]],
        [&json!(1), &json!(3)]
    );
}

#[tokio::test]
async fn a_yaml_body_is_accepted() {
    let app = spawn_app().await;
    let yaml = "metadata:\n  name: cache\nspec:\n  ports:\n  - name: redis\n    port: 6379\n  endpoints:\n  - address: 192.0.2.1\n";

    let response = app
        .client
        .post(app.collection("ops"))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn posting_an_existing_name_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let mut changed = document("billing-db");
    changed["spec"]["ports"][0]["port"] = json!(8443);

    let body = problem(app.post("payments", &changed).await, StatusCode::CONFLICT).await;

    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("payments/billing-db")
    );
    let stored: Value = app
        .get(&app.item("payments", "billing-db"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["spec"]["ports"][0]["port"], 443);
}

#[tokio::test]
async fn put_creates_then_replaces_bumping_generation_only_for_spec_changes() {
    let app = spawn_app().await;
    let mut doc = document("billing-db");

    let created = app.put("payments", "billing-db", &doc).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        created.headers()["location"],
        "/api/v1/namespaces/payments/external-services/billing-db"
    );
    let created: Value = created.json().await.unwrap();

    doc["metadata"]["labels"]["tier"] = json!("gold");
    let relabelled: Value = app
        .put("payments", "billing-db", &doc)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        relabelled["metadata"]["generation"], 1,
        "labels are not spec"
    );
    assert_ne!(
        relabelled["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    doc["spec"]["endpoints"]
        .as_array_mut()
        .unwrap()
        .push(json!({"address": "192.0.2.11"}));
    let replaced = app.put("payments", "billing-db", &doc).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        replaced["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );
    assert_eq!(replaced["spec"]["endpoints"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn the_same_put_twice_changes_nothing() {
    let app = spawn_app().await;
    let doc = document("billing-db");
    let first = app.put("payments", "billing-db", &doc).await;
    let first_tag = etag(&first);
    let first: Value = first.json().await.unwrap();

    let second = app.put("payments", "billing-db", &doc).await;

    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(etag(&second), first_tag);
    assert_eq!(second.json::<Value>().await.unwrap(), first);
}

#[tokio::test]
async fn a_document_read_back_can_be_sent_again_unchanged() {
    let app = spawn_app().await;
    let created: Value = app.register("payments", "billing-db").await;

    let response = app.put("payments", "billing-db", &created).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), created);
}

#[tokio::test]
async fn a_resource_exported_with_kubectl_is_accepted_and_its_status_ignored() {
    let app = spawn_app().await;
    let mut exported = document("billing-db");
    exported["apiVersion"] = json!("extsvc.dev/v1alpha1");
    exported["kind"] = json!("ExternalService");
    exported["metadata"]["uid"] = json!("1b2c3d4e-0000-4000-8000-000000000000");
    exported["metadata"]["resourceVersion"] = json!("4711");
    exported["metadata"]["generation"] = json!(3);
    // What `kubectl get exsvc -o yaml` shows: the controller's status, no origin.
    exported["status"] = json!({
        "observedGeneration": 3,
        "ready": "1/1",
        "conditions": [{"type": "Ready", "status": "True", "reason": "AllAddressesReady",
                        "lastTransitionTime": "2026-11-27T10:00:00Z"}]
    });

    let response = app.put("payments", "billing-db", &exported).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["metadata"]["generation"], 1);
    assert_ne!(body["metadata"]["uid"], exported["metadata"]["uid"]);
    assert_eq!(body["status"], json!({"origin": "api"}));
}

#[tokio::test]
async fn concurrent_puts_of_a_new_name_create_it_once() {
    let app = spawn_app().await;
    let doc = document("billing-db");

    let responses =
        futures::future::join_all((0..8).map(|_| app.put("payments", "billing-db", &doc))).await;

    let statuses: Vec<_> = responses.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn put_and_delete_with_a_stale_if_match_are_412_and_change_nothing() {
    let app = spawn_app().await;
    let created = app.post("payments", &document("billing-db")).await;
    let stale = etag(&created);
    let mut doc = document("billing-db");
    doc["spec"]["ports"][0]["port"] = json!(8443);
    let current = etag(&app.put("payments", "billing-db", &doc).await);
    doc["spec"]["ports"][0]["port"] = json!(9443);

    let put = app
        .client
        .put(app.item("payments", "billing-db"))
        .header("if-match", &stale)
        .json(&doc)
        .send()
        .await
        .unwrap();
    problem(put, StatusCode::PRECONDITION_FAILED).await;
    let delete = app
        .client
        .delete(app.item("payments", "billing-db"))
        .header("if-match", &stale)
        .send()
        .await
        .unwrap();
    problem(delete, StatusCode::PRECONDITION_FAILED).await;

    let stored = app.get(&app.item("payments", "billing-db")).await;
    assert_eq!(etag(&stored), current);
    let stored: Value = stored.json().await.unwrap();
    assert_eq!(stored["spec"]["ports"][0]["port"], 8443);
}

#[tokio::test]
async fn put_with_the_current_if_match_succeeds() {
    let app = spawn_app().await;
    let tag = etag(&app.post("payments", &document("billing-db")).await);
    let mut doc = document("billing-db");
    doc["spec"]["ports"][0]["port"] = json!(8443);

    let response = app
        .client
        .put(app.item("payments", "billing-db"))
        .header("if-match", format!("\"999999\", {tag}"))
        .json(&doc)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn if_match_on_a_missing_service_is_412_and_creates_nothing() {
    let app = spawn_app().await;

    let response = app
        .client
        .put(app.item("payments", "billing-db"))
        .header("if-match", "*")
        .json(&document("billing-db"))
        .send()
        .await
        .unwrap();

    problem(response, StatusCode::PRECONDITION_FAILED).await;
    problem(
        app.get(&app.item("payments", "billing-db")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn a_malformed_if_match_is_400() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;

    let response = app
        .client
        .delete(app.item("payments", "billing-db"))
        .header("if-match", "12")
        .send()
        .await
        .unwrap();

    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["errors"][0]["parameter"], "If-Match");
}

#[tokio::test]
async fn delete_returns_the_last_state_and_the_name_is_gone() {
    let app = spawn_app().await;
    let created = app.register("payments", "billing-db").await;

    let response = app.delete("payments", "billing-db").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["metadata"]["uid"],
        created["metadata"]["uid"]
    );
    problem(
        app.get(&app.item("payments", "billing-db")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.delete("payments", "billing-db").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // The name can be taken again, by a new registration.
    let again = app.register("payments", "billing-db").await;
    assert_ne!(again["metadata"]["uid"], created["metadata"]["uid"]);
    assert!(
        again["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > created["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_problems() {
    let app = spawn_app().await;

    problem(
        app.get(&format!("{}/api/v2/nothing", app.address)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // RFC 9110: a 405 names the methods the resource takes.
    for (method, url, allow) in [
        (Method::PATCH, app.item("payments", "x"), "GET, PUT, DELETE"),
        (
            Method::DELETE,
            format!(
                "{}/api/v1/namespaces/payments/external-services",
                app.address
            ),
            "GET, POST",
        ),
        (
            Method::POST,
            format!("{}/api/v1/health", app.address),
            "GET",
        ),
    ] {
        let response = app.client.request(method, &url).send().await.unwrap();
        let allowed = response.headers().get("allow").cloned();
        problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(
            allowed.as_ref().and_then(|v| v.to_str().ok()),
            Some(allow),
            "{url}"
        );
    }
}

#[tokio::test]
async fn healthz_is_up_and_readyz_sees_the_database() {
    let app = spawn_app().await;

    assert_eq!(
        app.get(&format!("{}/healthz", app.address)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("{}/readyz", app.address)).await.status(),
        StatusCode::OK
    );
}
