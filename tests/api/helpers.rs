use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use extsvc::config::{KubernetesSettings, Settings};
use extsvc::startup::Application;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The app's own database, for tests that act on it behind the API's back.
    pub database_url: String,
}

/// Starts the application on a free port against a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`], with settings changed by `configure` first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    // Logs go through the test harness, shown only for failing tests.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    let database_url = crate::postgres::fresh_database().await;
    let mut settings = crate::settings::settings(
        &database_url,
        KubernetesSettings {
            no_kubernetes: true,
            ..KubernetesSettings::default()
        },
    );
    configure(&mut settings);
    let app = Application::build(&settings)
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: crate::settings::client_with(crate::settings::ADMIN_TOKEN),
        database_url,
    }
}

/// A valid document with two ports, three kinds of address, two checks and an Ingress.
pub fn document(name: &str) -> Value {
    json!({
        "apiVersion": "extsvc.dev/v1alpha1",
        "kind": "ExternalService",
        "metadata": {"name": name, "labels": {"team": "payments"}},
        "spec": {
            "ports": [
                {"name": "https", "port": 443, "protocol": "TCP", "appProtocol": "https"},
                {"name": "metrics", "port": 9100, "protocol": "TCP"}
            ],
            "endpoints": [
                {"address": "192.0.2.10"},
                {"address": "2001:db8::10", "ports": ["https"], "zone": "zone-a"},
                {"address": "db.example.com"}
            ],
            "healthChecks": [{
                "name": "web",
                "http": {"port": "https", "path": "/healthz", "scheme": "HTTPS", "expectedStatuses": ["200-399"]},
                "periodSeconds": 10, "timeoutSeconds": 1, "initialDelaySeconds": 0,
                "successThreshold": 1, "failureThreshold": 3
            }],
            "ingress": {"rules": [{"host": "pay.example.com", "paths": [{"path": "/", "pathType": "Prefix", "port": "https"}]}]}
        }
    })
}

impl TestApp {
    pub fn collection(&self, namespace: &str) -> String {
        format!(
            "{}/api/v1/namespaces/{namespace}/external-services",
            self.address
        )
    }

    pub fn item(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection(namespace))
    }

    pub async fn post(&self, namespace: &str, body: &Value) -> Response {
        self.client
            .post(self.collection(namespace))
            .json(body)
            .send()
            .await
            .expect("POST answers")
    }

    pub async fn put(&self, namespace: &str, name: &str, body: &Value) -> Response {
        self.client
            .put(self.item(namespace, name))
            .json(body)
            .send()
            .await
            .expect("PUT answers")
    }

    pub async fn get(&self, url: &str) -> Response {
        self.client.get(url).send().await.expect("GET answers")
    }

    pub async fn delete(&self, namespace: &str, name: &str) -> Response {
        self.client
            .delete(self.item(namespace, name))
            .send()
            .await
            .expect("DELETE answers")
    }

    /// Registers `document(name)` and checks it was created.
    pub async fn register(&self, namespace: &str, name: &str) -> Value {
        let response = self.post(namespace, &document(name)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("a JSON document")
    }
}

/// The problem document of an error response, after checking its status and media type.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}

/// The pointers of a validation problem, in order.
pub fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["pointer"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
