//! The health routes without a cluster: what they answer before anything was probed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn health_of_an_unknown_service_is_404() {
    let app = spawn_app().await;
    for suffix in ["health", "health/history"] {
        let url = format!("{}/{suffix}", app.item("payments", "nope"));
        problem(app.get(&url).await, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn a_service_not_probed_yet_has_an_empty_report_and_history() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;

    let health: Value = app
        .get(&format!("{}/health", app.item("payments", "billing-db")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"namespace": "payments", "name": "billing-db", "readyAddresses": 0, "totalAddresses": 0, "addresses": []})
    );
    let history: Value = app
        .get(&format!(
            "{}/health/history",
            app.item("payments", "billing-db")
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["transitions"], json!([]));
}

#[tokio::test]
async fn health_listing_checks_its_parameters() {
    let app = spawn_app().await;
    let list: Value = app
        .get(&format!("{}/api/v1/health?state=unready", app.address))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    for (query, parameter) in [
        ("state=bad", "state"),
        ("limit=0", "limit"),
        ("continue=x", "continue"),
        // A NUL reached PostgreSQL, which refused it: a 503 for the client's input.
        ("namespace=%00", "namespace"),
        ("namespace=Not_A_Label", "namespace"),
    ] {
        let body = problem(
            app.get(&format!("{}/api/v1/health?{query}", app.address))
                .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(body["errors"][0]["parameter"], parameter, "{query}");
    }
    let url = format!("{}/health/history?limit=51", app.item("payments", "x"));
    problem(app.get(&url).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn the_history_of_an_address_the_service_no_longer_has_is_dropped() {
    use extsvc::domain::{DnsLabel, ServiceKey, ServiceName};
    use extsvc::resource::{AddressHealth, HealthState, HealthTransition, ServiceHealth};

    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    // What the leader's probe engine publishes, written as it writes it.
    let store = extsvc::store::Database::new(&app.database_url, 1)
        .expect("a database")
        .store(1);
    let key = ServiceKey {
        namespace: DnsLabel::parse("payments").unwrap(),
        name: ServiceName::parse("billing-db").unwrap(),
    };
    let transition = |address: &str| {
        let went_ready = HealthTransition {
            address: address.to_owned(),
            check: "web".to_owned(),
            from: HealthState::Unknown,
            to: HealthState::Ready,
            error: None,
            time: "2026-12-01T10:00:00Z".to_owned(),
        };
        (key.clone(), went_ready)
    };
    let report = |addresses: &[&str]| ServiceHealth {
        namespace: "payments".to_owned(),
        name: "billing-db".to_owned(),
        ready_addresses: addresses.len() as u32,
        total_addresses: addresses.len() as u32,
        addresses: addresses
            .iter()
            .map(|address| AddressHealth {
                address: (*address).to_owned(),
                state: HealthState::Ready,
                message: None,
                checks: Vec::new(),
                maintenance: None,
            })
            .collect(),
        updated_at: None,
    };
    let history = || async {
        let history: Value = app
            .get(&format!(
                "{}/health/history",
                app.item("payments", "billing-db")
            ))
            .await
            .json()
            .await
            .unwrap();
        let mut addresses: Vec<String> = history["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["address"].as_str().unwrap().to_owned())
            .collect();
        addresses.sort();
        addresses
    };

    store
        .record_transitions(&[transition("192.0.2.10"), transition("192.0.2.11")])
        .await
        .unwrap();
    store
        .record_health(&[report(&["192.0.2.10", "192.0.2.11"])])
        .await
        .unwrap();
    assert_eq!(history().await, ["192.0.2.10", "192.0.2.11"]);

    // A DNS rotation replaced .11.
    store
        .record_health(&[report(&["192.0.2.10", "192.0.2.12"])])
        .await
        .unwrap();
    assert_eq!(history().await, ["192.0.2.10"]);
}
