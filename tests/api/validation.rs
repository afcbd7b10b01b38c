//! Bad input: a clear problem+json naming each bad field, and nothing written.

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, document, pointers, problem, spawn_app};

async fn assert_nothing_stored(app: &TestApp) {
    let list: Value = app
        .get(&format!("{}/api/v1/external-services", app.address))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"],
        json!([]),
        "a refused request wrote something"
    );
}

/// `document("db")` with `value` set at `pointer` (whose parent exists).
fn with(pointer: &str, value: Value) -> Value {
    let mut doc = document("db");
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match doc.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        _ => panic!("{parent} is not a container"),
    }
    doc
}

#[tokio::test]
async fn every_invalid_field_is_422_with_its_pointer() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &[&str])> = vec![
        (
            with("/metadata/name", json!("Billing_DB")),
            &["/metadata/name"],
        ),
        (with("/metadata/name", json!("1db")), &["/metadata/name"]),
        (
            with("/metadata/namespace", json!("other")),
            &["/metadata/namespace"],
        ),
        (
            with("/metadata/labels/bad key", json!("x")),
            &["/metadata/labels/bad key"],
        ),
        (with("/apiVersion", json!("v1")), &["/apiVersion"]),
        (with("/kind", json!("Service")), &["/kind"]),
        (with("/spec/ports", json!([])), &["/spec/ports"]),
        (
            with("/spec/ports/0/port", json!(0)),
            &["/spec/ports/0/port"],
        ),
        (
            with("/spec/ports/0/port", json!(70000)),
            &["/spec/ports/0/port"],
        ),
        (
            with("/spec/ports/0/port", json!("443")),
            &["/spec/ports/0/port"],
        ),
        (
            with("/spec/ports/0/protocol", json!("tcp")),
            &["/spec/ports/0/protocol"],
        ),
        (
            with("/spec/ports/1/name", json!("https")),
            &["/spec/ports/1/name"],
        ),
        (
            with("/spec/ports/1/name", json!("Metrics")),
            &["/spec/ports/1/name"],
        ),
        (with("/spec/endpoints", json!([])), &["/spec/endpoints"]),
        (
            with("/spec/endpoints/0/address", json!("192.0.2.300")),
            &["/spec/endpoints/0/address"],
        ),
        (
            with("/spec/endpoints/0/address", json!("127.0.0.1")),
            &["/spec/endpoints/0/address"],
        ),
        (
            with("/spec/endpoints/2/address", json!("192.0.2.10")),
            &["/spec/endpoints/2/address"],
        ),
        (
            with("/spec/endpoints/1/ports/0", json!("ftp")),
            &["/spec/endpoints/1/ports/0"],
        ),
        (
            with("/spec/healthChecks/0/http/port", json!("ftp")),
            &["/spec/healthChecks/0/http/port"],
        ),
        (
            with("/spec/healthChecks/0/timeoutSeconds", json!(30)),
            &["/spec/healthChecks/0/timeoutSeconds"],
        ),
        (
            with("/spec/healthChecks/0/tcp", json!({"port": 1})),
            &["/spec/healthChecks/0"],
        ),
        (
            with("/spec/ingress/rules/0/paths/0/port", json!("nope")),
            &["/spec/ingress/rules/0/paths/0/port"],
        ),
        (
            with("/spec/ingress/rules/0/paths/0/pathType", json!("Glob")),
            &["/spec/ingress/rules/0/paths/0/pathType"],
        ),
        (with("/spec/extra", json!(1)), &["/spec/extra"]),
        (
            with("/metadata/finalizers", json!([])),
            &["/metadata/finalizers"],
        ),
    ];
    for (doc, expected) in cases {
        let body = problem(app.post("ns", &doc).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(pointers(&body), expected, "{doc}");
        assert!(
            body["errors"][0]["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn several_bad_fields_are_all_listed() {
    let app = spawn_app().await;
    let mut doc = with("/metadata/name", json!("-db"));
    doc["spec"]["ports"][1]["port"] = json!(0);
    doc["spec"]["endpoints"][0]["address"] = json!("not an address");

    let body = problem(app.post("ns", &doc).await, StatusCode::UNPROCESSABLE_ENTITY).await;

    assert_eq!(
        pointers(&body),
        [
            "/metadata/name",
            "/spec/ports/1/port",
            "/spec/endpoints/0/address"
        ],
        "a bad port hides nothing else"
    );
    assert_eq!(body["detail"], "3 fields are invalid");
}

#[tokio::test]
async fn every_field_that_does_not_fit_the_shape_is_listed() {
    let app = spawn_app().await;
    let mut doc = with("/spec/endpoints/0/bogus", json!(1));
    doc["spec"]["ports"][0]["appProtocol"] = json!(7);
    doc["metadata"]["colour"] = json!("blue");
    doc["spec"]["healthChecks"] =
        json!([{"name": "up", "tcp": {"port": "http"}, "periodSeconds": "10"}]);

    let body = problem(app.post("ns", &doc).await, StatusCode::UNPROCESSABLE_ENTITY).await;

    let mut listed = pointers(&body);
    listed.sort();
    assert_eq!(
        listed,
        [
            "/metadata/colour",
            "/spec/endpoints/0/bogus",
            "/spec/healthChecks/0/periodSeconds",
            "/spec/ports/0/appProtocol"
        ]
    );
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_missing_required_field_is_named() {
    let app = spawn_app().await;
    let doc =
        json!({"metadata": {"name": "db"}, "spec": {"ports": [{"name": "http"}], "endpoints": []}});

    let body = problem(app.post("ns", &doc).await, StatusCode::UNPROCESSABLE_ENTITY).await;

    assert_eq!(pointers(&body), ["/spec/ports/0/port"]);
    assert_eq!(body["errors"][0]["detail"], "is required");
}

#[tokio::test]
async fn post_without_a_name_is_422() {
    let app = spawn_app().await;
    let mut doc = document("db");
    doc["metadata"].as_object_mut().unwrap().remove("name");

    let body = problem(app.post("ns", &doc).await, StatusCode::UNPROCESSABLE_ENTITY).await;

    assert_eq!(pointers(&body), ["/metadata/name"]);
}

#[tokio::test]
async fn put_with_a_different_name_in_the_body_is_422() {
    let app = spawn_app().await;

    let body = problem(
        app.put("ns", "other", &document("db")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    assert_eq!(pointers(&body), ["/metadata/name"]);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for body in ["{\"metadata\": ", "not json", "", "{\"a\": 1,}"] {
        let response = app
            .client
            .post(app.collection("ns"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn json_that_is_not_an_object_is_422() {
    let app = spawn_app().await;
    let body = problem(
        app.post("ns", &json!([1, 2])).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(pointers(&body), [""]);
}

#[tokio::test]
async fn malformed_yaml_is_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.collection("ns"))
        .header("content-type", "application/yaml")
        .body("metadata: [unclosed")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_body_over_1_mib_is_413() {
    let app = spawn_app().await;
    let mut doc = document("db");
    doc["metadata"]["annotations"] = json!({"big": "x".repeat(1024 * 1024)});

    problem(app.post("ns", &doc).await, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Also when the length is not announced up front.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let response = app
        .client
        .post(app.collection("ns"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_body_that_trickles_in_is_408_after_ten_seconds() {
    let app = spawn_app().await;
    // Announces 1,000 bytes, sends the start of a document, then stalls (slowloris): a
    // stream that never ends. The client waits far longer than the server should.
    let start: Result<Vec<u8>, std::io::Error> = Ok(b"{\"metadata\": ".to_vec());
    let stalled = futures::stream::iter([start]).chain(futures::stream::pending());
    let response = app
        .client
        .post(app.collection("ns"))
        .header("content-type", "application/json")
        .header("content-length", "1000")
        .body(reqwest::Body::wrap_stream(stalled))
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .expect("an answer before the client gives up");
    let problem = problem(response, StatusCode::REQUEST_TIMEOUT).await;
    assert_eq!(problem["type"], "https://extsvc.dev/problems/body-timeout");
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_wrong_media_type_is_415() {
    let app = spawn_app().await;
    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let mut request = app
            .client
            .post(app.collection("ns"))
            .body(document("db").to_string());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        problem(
            request.send().await.unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )
        .await;
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn odd_paths_never_cause_a_server_error() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/namespaces/%FF/external-services/x",
        "/api/v1/namespaces/a/external-services/%00",
        "/api/v1/namespaces/%00/external-services",
        "/api/v1/external-services?continue=AA",
    ] {
        let status = app.get(&format!("{}{path}", app.address)).await.status();
        assert!(status.is_client_error(), "{path}: {status}");
    }
    let delete = app.client.delete(format!(
        "{}/api/v1/namespaces/a/external-services/%00",
        app.address
    ));
    assert_eq!(delete.send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let mut nul = document("db");
    nul["metadata"]["annotations"] = json!({"note": "a\u{0}b"});
    let body = problem(app.post("ns", &nul).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(pointers(&body), ["/metadata/annotations/note"]);
    let response = app.put("UPPER", "x", &document("x")).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(pointers(&body), ["/metadata/namespace"]);
}
