//! What a deployment pipeline leans on: dry runs (with one probe of the backends), waits
//! for a condition, event streams from every replica, and maintenance windows.
//!
//! Without Kubernetes nothing mirrors or reconciles, so the tests write what the mirror
//! and the controller would, behind the API's back, and watch the API react. This file
//! holds what the tests share; each part has a file of its own.

mod dry_runs;
mod events;
mod maintenance;
mod waits;

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use extsvc::config::KubernetesSettings;
use extsvc::startup::Application;

use crate::helpers::{TestApp, document, pointers, problem, spawn_app, spawn_app_with};
use crate::settings::client_with;

/// How long any one thing the tests wait for may take; far more than it should.
const DEADLINE: Duration = Duration::from_secs(30);

async fn connect(app: &TestApp) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("a connection to the app's database")
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&mut connect(app).await)
        .await
        .expect("a count")
}

/// What the mirror and the controller write once generation `mirrored` reached the
/// cluster and was reconciled: `status` is an `ExternalServiceStatus`.
async fn publish(app: &TestApp, namespace: &str, name: &str, mirrored: i64, status: Value) {
    let updated = sqlx::query(
        "UPDATE external_services SET mirrored_generation = $3, status = $4
         WHERE namespace = $1 AND name = $2",
    )
    .bind(namespace)
    .bind(name)
    .bind(mirrored)
    .bind(status)
    .execute(&mut connect(app).await)
    .await
    .expect("the status is written");
    assert_eq!(
        updated.rows_affected(),
        1,
        "{namespace}/{name} is registered"
    );
}

/// A reconciled status of `generation` with `addresses` (address, ready); an address
/// that is not ready says `connection refused`.
fn reconciled(generation: i64, addresses: &[(&str, bool)]) -> Value {
    let ready = addresses.iter().filter(|(_, ready)| *ready).count();
    let addresses: Vec<Value> = addresses
        .iter()
        .map(|(address, ready)| {
            if *ready {
                json!({"address": address, "ready": true})
            } else {
                json!({"address": address, "ready": false, "message": "connection refused"})
            }
        })
        .collect();
    json!({
        "observedGeneration": generation,
        "conditions": [{
            "type": "Reconciled", "status": "True", "reason": "ChildrenApplied",
            "message": "", "lastTransitionTime": "2026-12-01T10:00:00Z"
        }],
        "readyAddresses": ready,
        "totalAddresses": addresses.len(),
        "addresses": addresses,
    })
}

/// A second replica of `app`: another server on the same database.
async fn replica(app: &TestApp) -> TestApp {
    let settings = crate::settings::settings(
        &app.database_url,
        KubernetesSettings {
            no_kubernetes: true,
            ..KubernetesSettings::default()
        },
    );
    let server = Application::build(&settings)
        .await
        .expect("the second replica builds");
    let address = format!("http://127.0.0.1:{}", server.port());
    tokio::spawn(server.run_until_stopped());
    TestApp {
        address,
        client: client_with(crate::settings::ADMIN_TOKEN),
        database_url: app.database_url.clone(),
    }
}

/// Sends `request` (a wait) and returns once the wait is provably under way, so that
/// whatever the test does next happens while it waits: the wait subscribes to events
/// before its first look at the service, and that look is held by a table lock until it
/// is seen blocked.
async fn waiting(app: &TestApp, request: RequestBuilder) -> JoinHandle<Response> {
    let mut locker = connect(app).await;
    let mut tx = locker.begin().await.expect("BEGIN");
    sqlx::query("LOCK TABLE external_services IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .expect("LOCK TABLE");
    let wait = tokio::spawn(async move { request.send().await.expect("the wait answers") });
    let mut watcher = connect(app).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("count the blocked queries");
        if blocked > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the wait never looked at the service"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.rollback().await.expect("ROLLBACK");
    wait
}

/// A server-sent event.
#[derive(Debug, Clone)]
struct Event {
    id: String,
    kind: String,
    data: Value,
}

impl Event {
    fn address(&self) -> &str {
        self.data["detail"]["address"].as_str().unwrap_or_default()
    }
}

/// `txid-id`, in the order the stream sends events.
fn position(id: &str) -> (i64, i64) {
    let (txid, id) = id.split_once('-').expect("an id like 7514-210");
    (txid.parse().expect("a txid"), id.parse().expect("an id"))
}

/// An open `text/event-stream`, read frame by frame.
struct EventStream {
    response: Response,
    buffer: Vec<u8>,
    /// Events at or before this position were committed before the stream opened.
    opened_after: Option<(i64, i64)>,
}

/// Where a stream starts.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// From now on.
    Now,
    /// After this event, sent as `Last-Event-ID`.
    After(&'a str),
    /// Where the URL's `lastEventId` says.
    Url,
}

/// The position of the last event recorded so far.
async fn last_position(app: &TestApp) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT txid, id FROM service_events ORDER BY txid DESC, id DESC LIMIT 1")
        .fetch_optional(&mut connect(app).await)
        .await
        .expect("the last event")
}

impl EventStream {
    /// Opens `url` on `app` from `from`, and reads the `retry:` that comes first.
    ///
    /// A stream that does not resume starts where the replica's reader of the events
    /// table stands, which may be a little before the request: an event committed just
    /// before (a registration) can come first. Those are left out here, so that a test
    /// sees what happened after it opened the stream, and nothing else.
    async fn open(app: &TestApp, url: &str, from: Start<'_>) -> Self {
        let mut request = app.client.get(url);
        let opened_after = match from {
            Start::Now => last_position(app).await,
            Start::After(id) => {
                request = request.header("Last-Event-ID", id);
                None
            }
            Start::Url => None,
        };
        let response = timeout(DEADLINE, request.send())
            .await
            .expect("the stream opens in time")
            .expect("the stream opens");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        let mut stream = Self {
            response,
            buffer: Vec::new(),
            opened_after,
        };
        assert_eq!(stream.frame().await, "retry: 2000");
        stream
    }

    /// The next frame, without its blank line.
    async fn frame(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return String::from_utf8(frame[..end].to_vec()).expect("UTF-8 frames");
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("the next frame in time")
                .expect("the stream reads")
                .expect("the stream stays open");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next event; keepalive comments are skipped.
    async fn next(&mut self) -> Event {
        loop {
            let frame = self.frame().await;
            if frame.starts_with(':') {
                continue;
            }
            let (mut id, mut kind, mut data) = (None, None, None);
            for line in frame.lines() {
                let (field, value) = line.split_once(": ").expect("a field: value line");
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => kind = Some(value.to_owned()),
                    "data" => data = Some(serde_json::from_str(value).expect("JSON data")),
                    other => panic!("an unexpected field {other} in {frame:?}"),
                }
            }
            let event = Event {
                id: id.expect("an id"),
                kind: kind.expect("an event type"),
                data: data.expect("data"),
            };
            assert_eq!(event.data["id"], event.id.as_str());
            assert_eq!(event.data["type"], event.kind.as_str());
            if self
                .opened_after
                .is_some_and(|opened| position(&event.id) <= opened)
            {
                continue;
            }
            return event;
        }
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next().await);
        }
        events
    }
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

fn events_of(app: &TestApp, namespace: &str, name: &str) -> String {
    format!("{}/events", app.item(namespace, name))
}

fn events_in(app: &TestApp, namespace: &str) -> String {
    format!("{}/api/v1/namespaces/{namespace}/events", app.address)
}

fn audit_of(app: &TestApp, namespace: &str) -> String {
    format!("{}/api/v1/audit?namespace={namespace}", app.address)
}

async fn json_of(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}

fn maintenance_of(app: &TestApp, name: &str) -> String {
    format!("{}/maintenance", app.item("payments", name))
}

fn in_hours(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
