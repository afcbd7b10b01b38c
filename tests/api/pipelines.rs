//! What a deployment pipeline leans on: dry runs (with one probe of the backends), waits
//! for a condition, event streams from every replica, and maintenance windows.
//!
//! Without Kubernetes nothing mirrors or reconciles, so the tests write what the mirror
//! and the controller would, behind the API's back, and watch the API react.

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

/// How long any one thing the tests wait for may take; far more than it should. Events
/// become readable only once every older write transaction on the PostgreSQL server has
/// ended, those of other tests' databases included, which may hold them for seconds.
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

// Dry runs.

#[tokio::test]
async fn a_dry_run_create_answers_as_the_write_would_and_writes_nothing() {
    let app = spawn_app().await;
    let url = format!("{}?dryRun=true", app.collection("payments"));
    let response = app
        .client
        .post(&url)
        .json(&document("billing-db"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("etag").is_none(), "no version made");
    let body = json_of(response).await;
    assert_eq!(body["metadata"]["name"], "billing-db");
    assert_eq!(body["metadata"]["namespace"], "payments");
    assert_eq!(body["metadata"]["generation"], 1);
    assert!(body["metadata"].get("resourceVersion").is_none(), "{body}");
    assert_eq!(body["spec"]["endpoints"][0]["address"], "192.0.2.10");

    assert_eq!(
        count(&app, "SELECT count(*) FROM external_services").await,
        0
    );
    assert_eq!(count(&app, "SELECT count(*) FROM outbox").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM service_events").await, 0);
    problem(
        app.get(&app.item("payments", "billing-db")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let audit = json_of(app.get(&audit_of(&app, "payments")).await).await;
    let entry = &audit["items"][0];
    assert_eq!(
        (&entry["method"], &entry["status"], &entry["outcome"]),
        (&json!("POST"), &json!(201), &json!("dry-run")),
        "{audit}"
    );
    assert_eq!(entry["generationAfter"], 1);

    // A dry run of a create passes what the create would not.
    app.register("payments", "billing-db").await;
    let taken = app
        .client
        .post(&url)
        .json(&document("billing-db"))
        .send()
        .await
        .unwrap();
    problem(taken, StatusCode::CONFLICT).await;
    // A dry run of a PUT that would create creates nothing either.
    let put = app
        .client
        .put(format!("{}?dryRun=true", app.item("payments", "orders-db")))
        .json(&document("orders-db"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    problem(
        app.get(&app.item("payments", "orders-db")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM external_services").await,
        1
    );
    assert_eq!(count(&app, "SELECT count(*) FROM outbox").await, 1);
}

#[tokio::test]
async fn a_dry_run_replace_or_delete_leaves_the_stored_service_as_it_was() {
    let app = spawn_app().await;
    let created = app.register("payments", "billing-db").await;
    let before = app.get(&app.item("payments", "billing-db")).await;
    let etag = before.headers()["etag"].clone();

    let mut changed = document("billing-db");
    changed["spec"]["ports"][0]["port"] = json!(8443);
    let replaced = app
        .client
        .put(format!(
            "{}?dryRun=true",
            app.item("payments", "billing-db")
        ))
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    assert!(replaced.headers().get("etag").is_none());
    let replaced = json_of(replaced).await;
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert!(replaced["metadata"].get("resourceVersion").is_none());
    assert_eq!(replaced["spec"]["ports"][0]["port"], 8443);
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);

    let deleted = app
        .client
        .delete(format!(
            "{}?dryRun=true",
            app.item("payments", "billing-db")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(json_of(deleted).await["metadata"]["name"], "billing-db");

    let after = app.get(&app.item("payments", "billing-db")).await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(after.headers()["etag"], etag);
    let after = json_of(after).await;
    assert_eq!(after["metadata"]["generation"], 1);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(after["spec"]["ports"][0]["port"], 443);
    // Only the real create reached the outbox and the events.
    assert_eq!(count(&app, "SELECT count(*) FROM outbox").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM service_events").await, 1);

    let audit = json_of(app.get(&audit_of(&app, "payments")).await).await;
    let entries: Vec<(&str, &str, i64, i64)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["generationBefore"].as_i64().unwrap_or(0),
                e["generationAfter"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("DELETE", "dry-run", 1, 0),
            ("PUT", "dry-run", 1, 2),
            ("POST", "ok", 0, 1)
        ],
        "newest first: {audit}"
    );
}

#[tokio::test]
async fn probe_goes_with_a_dry_run_of_a_create_or_replace_only() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let item = app.item("payments", "billing-db");
    let collection = app.collection("payments");
    let body = document("billing-db");
    let requests = [
        (
            "POST probe",
            app.client.post(format!("{collection}?probe=true")),
            "probe",
        ),
        (
            "POST dryRun=false",
            app.client
                .post(format!("{collection}?dryRun=false&probe=true")),
            "probe",
        ),
        (
            "PUT probe",
            app.client.put(format!("{item}?probe=true")),
            "probe",
        ),
        (
            "DELETE dry probe",
            app.client.delete(format!("{item}?dryRun=true&probe=true")),
            "probe",
        ),
        (
            "DELETE probe",
            app.client.delete(format!("{item}?probe=true")),
            "probe",
        ),
        (
            "POST dryRun=maybe",
            app.client.post(format!("{collection}?dryRun=maybe")),
            "dryRun",
        ),
        (
            "PUT probe=yes",
            app.client.put(format!("{item}?dryRun=true&probe=yes")),
            "probe",
        ),
    ];
    for (what, request, parameter) in requests {
        let response = request.json(&body).send().await.unwrap();
        let refused = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            refused["errors"][0]["parameter"], parameter,
            "{what}: {refused}"
        );
    }
    // Nothing was written or deleted by any of them.
    assert_eq!(app.get(&item).await.status(), StatusCode::OK);
    assert_eq!(count(&app, "SELECT count(*) FROM outbox").await, 1);
}

/// A test host in a network namespace of this process: probes go there and nowhere else.
fn test_host() -> (&'static crate::netns::TestHosts, IpAddr) {
    static HOSTS: std::sync::OnceLock<crate::netns::TestHosts> = std::sync::OnceLock::new();
    let hosts = HOSTS.get_or_init(|| crate::netns::TestHosts::create(1));
    (hosts, hosts.ips[0])
}

#[tokio::test]
async fn a_dry_run_with_probe_reports_each_check_on_each_address() {
    let (hosts, ip) = test_host();
    let app = spawn_app().await;
    // One port that listens (the kernel completes the handshake, no accept needed) and
    // one nothing listens on (a connection is refused), both on the test host.
    let open = hosts.listen(ip, 0).unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed_port = hosts.listen(ip, 0).unwrap().local_addr().unwrap().port();
    let check = |name: &str| {
        json!({
            "name": name, "tcp": {"port": name},
            "periodSeconds": 10, "timeoutSeconds": 2, "initialDelaySeconds": 0,
            "successThreshold": 1, "failureThreshold": 3
        })
    };
    let body = json!({
        "apiVersion": "extsvc.dev/v1alpha1",
        "kind": "ExternalService",
        "metadata": {"name": "local-db"},
        "spec": {
            "ports": [
                {"name": "closed", "port": closed_port, "protocol": "TCP"},
                {"name": "open", "port": open_port, "protocol": "TCP"}
            ],
            "endpoints": [{"address": ip.to_string()}],
            "healthChecks": [check("open"), check("closed")]
        }
    });

    let response = app
        .client
        .post(format!(
            "{}?dryRun=true&probe=true",
            app.collection("payments")
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("etag").is_none());
    let answer = json_of(response).await;
    assert_eq!(answer["document"]["metadata"]["name"], "local-db");
    assert_eq!(answer["document"]["metadata"]["generation"], 1);
    assert!(
        answer["document"]["metadata"]
            .get("resourceVersion")
            .is_none()
    );
    let probe = &answer["probe"];
    assert_eq!(
        (
            &probe["namespace"],
            &probe["name"],
            &probe["readyAddresses"],
            &probe["totalAddresses"]
        ),
        (&json!("payments"), &json!("local-db"), &json!(0), &json!(1)),
        "{answer}"
    );
    let address = &probe["addresses"][0];
    assert_eq!(address["address"], ip.to_string());
    assert_eq!(address["state"], "notReady");
    let checks = address["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{answer}");
    let (refused, accepted) = (&checks[0], &checks[1]);
    assert_eq!(
        (
            &refused["name"],
            &refused["port"],
            &refused["state"],
            &refused["lastResult"],
            &refused["lastError"]
        ),
        (
            &json!("closed"),
            &json!(closed_port),
            &json!("notReady"),
            &json!("failure"),
            &json!("connection refused")
        ),
        "{answer}"
    );
    assert_eq!(
        (
            &accepted["name"],
            &accepted["state"],
            &accepted["lastResult"]
        ),
        (&json!("open"), &json!("ready"), &json!("success")),
        "{answer}"
    );
    assert!(accepted.get("lastError").is_none(), "{answer}");
    problem(
        app.get(&app.item("payments", "local-db")).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // A replace probes the same way, and keeps nothing either.
    let registered = app.post("payments", &body).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let replaced = app
        .client
        .put(format!(
            "{}?dryRun=true&probe=true",
            app.item("payments", "local-db")
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let replaced = json_of(replaced).await;
    assert_eq!(
        replaced["probe"]["addresses"][0]["checks"][0]["lastError"],
        "connection refused"
    );
    assert!(
        replaced["document"]["metadata"]
            .get("resourceVersion")
            .is_none()
    );
    drop(open);
}

// Waits.

#[tokio::test]
async fn a_wait_for_synced_answers_as_soon_as_the_service_is_reconciled() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let url = format!(
        "{}?waitFor=synced&timeout=60s",
        app.item("payments", "billing-db")
    );
    let wait = waiting(&app, app.client.get(&url)).await;
    assert!(!wait.is_finished(), "nothing has synced yet");

    publish(
        &app,
        "payments",
        "billing-db",
        1,
        reconciled(1, &[("192.0.2.10", true)]),
    )
    .await;
    let response = timeout(DEADLINE, wait)
        .await
        .expect("the wait answers soon after the write")
        .expect("the wait task");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("etag").is_some());
    let body = json_of(response).await;
    // The service as the write left it: the wait did not answer before it.
    assert_eq!(body["status"]["mirroredGeneration"], 1, "{body}");
    assert_eq!(body["status"]["observedGeneration"], 1, "{body}");
    assert_eq!(body["status"]["conditions"][0]["type"], "Reconciled");

    // Once synced, a wait answers at once; a new generation is not synced until the
    // mirror and the controller catch up.
    let again = timeout(DEADLINE, app.get(&url)).await.expect("at once");
    assert_eq!(again.status(), StatusCode::OK);
    let mut changed = document("billing-db");
    changed["spec"]["ports"][0]["port"] = json!(8443);
    assert_eq!(
        app.put("payments", "billing-db", &changed).await.status(),
        StatusCode::OK
    );
    let stale = app
        .get(&format!(
            "{}?waitFor=synced&timeout=1",
            app.item("payments", "billing-db")
        ))
        .await;
    let stale = problem(stale, StatusCode::REQUEST_TIMEOUT).await;
    assert_eq!(
        stale["unmet"],
        json!([
            "generation 2 is not in the cluster yet",
            "the controller has not reconciled generation 2 yet"
        ]),
        "{stale}"
    );
}

#[tokio::test]
async fn a_wait_for_ready_times_out_with_what_is_unmet_or_is_met_by_min_ready() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let item = app.item("payments", "billing-db");

    // Not even mirrored yet.
    let response = app.get(&format!("{item}?waitFor=ready&timeout=1s")).await;
    let unmirrored = problem(response, StatusCode::REQUEST_TIMEOUT).await;
    assert_eq!(
        unmirrored["unmet"],
        json!([
            "generation 1 is not in the cluster yet",
            "the controller has not reported on it yet"
        ]),
        "{unmirrored}"
    );

    publish(
        &app,
        "payments",
        "billing-db",
        1,
        reconciled(1, &[("192.0.2.10", true), ("2001:db8::10", false)]),
    )
    .await;
    let current = json_of(app.get(&item).await).await;
    let started = Instant::now();
    let response = app.get(&format!("{item}?waitFor=ready&timeout=1s")).await;
    let timed_out = problem(response, StatusCode::REQUEST_TIMEOUT).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited its time"
    );
    assert!(
        timed_out["type"]
            .as_str()
            .unwrap()
            .ends_with("/wait-timed-out"),
        "{timed_out}"
    );
    assert_eq!(
        timed_out["unmet"],
        json!([
            "1 of 2 addresses ready, 2 wanted",
            "2001:db8::10: connection refused"
        ]),
        "{timed_out}"
    );
    assert_eq!(timed_out["current"], current);

    // One of two suffices when asked for: at once.
    let response = timeout(
        DEADLINE,
        app.get(&format!("{item}?waitFor=ready&minReady=1&timeout=60s")),
    )
    .await
    .expect("met at once");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["status"]["readyAddresses"], 1);

    // Two of two, once the second address comes up while the wait waits.
    let wait = waiting(
        &app,
        app.client
            .get(format!("{item}?waitFor=ready&minReady=2&timeout=60s")),
    )
    .await;
    publish(
        &app,
        "payments",
        "billing-db",
        1,
        reconciled(1, &[("192.0.2.10", true), ("2001:db8::10", true)]),
    )
    .await;
    let response = timeout(DEADLINE, wait)
        .await
        .expect("the wait answers soon after the write")
        .expect("the wait task");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["status"]["readyAddresses"], 2);
}

#[tokio::test]
async fn a_wait_for_deleted_answers_204_once_the_service_is_gone() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let url = format!(
        "{}?waitFor=deleted&timeout=60s",
        app.item("payments", "billing-db")
    );
    let wait = waiting(&app, app.client.get(&url)).await;
    assert!(!wait.is_finished(), "still registered");
    assert_eq!(
        app.delete("payments", "billing-db").await.status(),
        StatusCode::OK
    );
    // Deleted here, not yet in the cluster: the outbox still holds the delete. (No
    // mirror runs beside this server; the test drains the outbox as the mirror would.)
    let still: Value = json_of(
        app.get(&format!(
            "{}?waitFor=deleted&timeout=1s",
            app.item("payments", "billing-db")
        ))
        .await,
    )
    .await;
    assert_eq!(still["status"], 408, "{still}");
    assert_eq!(still["unmet"], json!(["the cluster has yet to delete it"]));
    assert!(!wait.is_finished(), "waiting for the cluster");
    sqlx::query("DELETE FROM outbox")
        .execute(&mut connect(&app).await)
        .await
        .expect("the outbox drained");
    let response = timeout(DEADLINE, wait)
        .await
        .expect("the wait answers soon after the cluster's delete")
        .expect("the wait task");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());

    // Gone already: at once.
    let response = timeout(DEADLINE, app.get(&url)).await.expect("at once");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Nothing to wait for to become ready.
    let url = format!("{}?waitFor=ready", app.item("payments", "billing-db"));
    problem(app.get(&url).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_wait_checks_its_parameters() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let item = app.item("payments", "billing-db");
    for (query, parameter) in [
        ("waitFor=bogus", "waitFor"),
        ("waitFor=ready&timeout=6m", "timeout"),
        ("waitFor=ready&timeout=301", "timeout"),
        ("waitFor=ready&timeout=soon", "timeout"),
        ("waitFor=ready&timeout=", "timeout"),
        ("waitFor=synced&minReady=1", "minReady"),
        ("waitFor=deleted&minReady=1", "minReady"),
        ("waitFor=ready&minReady=-1", "minReady"),
        ("waitFor=ready&minReady=all", "minReady"),
        ("timeout=5s", "waitFor"),
        ("minReady=1", "waitFor"),
    ] {
        let started = Instant::now();
        let refused = problem(
            app.get(&format!("{item}?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(refused["errors"][0]["parameter"], parameter, "{query}");
        assert!(started.elapsed() < DEADLINE, "{query}: refused at once");
    }
    // The longest wait allowed is allowed (and a name never registered is gone).
    let gone = app.item("payments", "never-registered");
    let response = timeout(
        DEADLINE,
        app.get(&format!("{gone}?waitFor=deleted&timeout=5m")),
    )
    .await
    .expect("at once");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

// Events.

#[tokio::test]
async fn a_service_stream_sees_what_is_published_and_replays_what_it_missed() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let url = events_of(&app, "payments", "billing-db");
    let mut stream = EventStream::open(&app, &url, Start::Now).await;

    publish(
        &app,
        "payments",
        "billing-db",
        1,
        reconciled(1, &[("192.0.2.10", true), ("2001:db8::10", false)]),
    )
    .await;
    let events = stream.take(4).await;
    assert_eq!(
        kinds(&events[..2]),
        ["Mirrored", "Reconciled"],
        "{events:#?}"
    );
    assert_eq!(events[0].data["generation"], 1);
    assert_eq!(
        (&events[0].data["namespace"], &events[0].data["name"]),
        (&json!("payments"), &json!("billing-db"))
    );
    assert_eq!(events[1].data["detail"]["reason"], "ChildrenApplied");
    let mut addresses: Vec<(&str, &str)> = events[2..]
        .iter()
        .map(|e| (e.kind.as_str(), e.address()))
        .collect();
    addresses.sort();
    assert_eq!(
        addresses,
        [
            ("AddressNotReady", "2001:db8::10"),
            ("AddressReady", "192.0.2.10")
        ]
    );
    let ready = events.iter().find(|e| e.kind == "AddressReady").unwrap();
    assert_eq!(ready.data["detail"]["ready"], true);
    assert!(
        events
            .windows(2)
            .all(|w| position(&w[0].id) < position(&w[1].id)),
        "in order: {events:#?}"
    );
    let seen = events[3].id.clone();
    drop(stream);

    // While nobody listens: the second address comes up, the spec changes.
    publish(
        &app,
        "payments",
        "billing-db",
        1,
        reconciled(1, &[("192.0.2.10", true), ("2001:db8::10", true)]),
    )
    .await;
    let mut changed = document("billing-db");
    changed["spec"]["ports"][0]["port"] = json!(8443);
    assert_eq!(
        app.put("payments", "billing-db", &changed).await.status(),
        StatusCode::OK
    );

    let mut resumed = EventStream::open(&app, &url, Start::After(&seen)).await;
    let missed = resumed.take(2).await;
    assert_eq!(
        kinds(&missed),
        ["AddressReady", "SpecChanged"],
        "{missed:#?}"
    );
    assert_eq!(missed[0].address(), "2001:db8::10");
    assert_eq!(missed[1].data["generation"], 2);
    // Then it follows, with nothing in between.
    assert_eq!(
        app.delete("payments", "billing-db").await.status(),
        StatusCode::OK
    );
    let deleted = resumed.next().await;
    assert_eq!(deleted.kind, "Deleted");
    assert_eq!(deleted.data["generation"], 2);
    drop(resumed);

    // A deleted service has no stream to open, but one that resumes still replays.
    problem(app.get(&url).await, StatusCode::NOT_FOUND).await;
    let mut after = EventStream::open(&app, &url, Start::After(&missed[1].id)).await;
    assert_eq!(after.next().await.kind, "Deleted");
}

#[tokio::test]
async fn a_stream_refuses_a_bad_last_event_id_and_an_unknown_service() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let url = events_of(&app, "payments", "billing-db");
    for id in ["nope", "12", "1-x", "-"] {
        let response = app
            .client
            .get(&url)
            .header("Last-Event-ID", id)
            .send()
            .await
            .unwrap();
        let refused = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(refused["errors"][0]["parameter"], "Last-Event-ID", "{id}");
    }
    let response = app
        .get(&format!("{}?lastEventId=nope", events_in(&app, "payments")))
        .await;
    problem(response, StatusCode::BAD_REQUEST).await;
    problem(
        app.get(&events_of(&app, "payments", "nope")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get(&events_of(&app, "billing", "billing-db")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn the_namespace_stream_carries_every_service_of_its_namespace_only() {
    let app = spawn_app().await;
    let mut stream = EventStream::open(&app, &events_in(&app, "payments"), Start::Now).await;
    app.register("payments", "billing-db").await;
    app.register("orders", "orders-db").await;
    app.register("payments", "ledger-db").await;
    let events = stream.take(2).await;
    let registered: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.data["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        registered,
        [("Registered", "billing-db"), ("Registered", "ledger-db")]
    );
    assert_eq!(events[0].data["detail"]["origin"], "api");

    // Resuming with the query parameter replays the same.
    let url = format!(
        "{}?lastEventId={}",
        events_in(&app, "payments"),
        events[0].id
    );
    drop(stream);
    let mut resumed = EventStream::open(&app, &url, Start::Url).await;
    let replayed = resumed.next().await;
    assert_eq!(
        (replayed.kind.as_str(), replayed.id.as_str()),
        ("Registered", events[1].id.as_str())
    );
    publish(
        &app,
        "payments",
        "billing-db",
        1,
        reconciled(1, &[("192.0.2.10", true)]),
    )
    .await;
    let next = resumed.next().await;
    assert_eq!(
        (next.kind.as_str(), next.data["name"].as_str()),
        ("Mirrored", Some("billing-db"))
    );
}

#[tokio::test]
async fn every_replica_streams_what_was_written_through_another() {
    let first = spawn_app().await;
    let second = replica(&first).await;
    let mut stream = EventStream::open(&second, &events_in(&second, "payments"), Start::Now).await;

    first.register("payments", "billing-db").await;
    let registered = stream.next().await;
    assert_eq!(
        (registered.kind.as_str(), registered.data["name"].as_str()),
        ("Registered", Some("billing-db"))
    );
    let mut changed = document("billing-db");
    changed["spec"]["ports"][0]["port"] = json!(8443);
    assert_eq!(
        first.put("payments", "billing-db", &changed).await.status(),
        StatusCode::OK
    );
    let spec_changed = stream.next().await;
    assert_eq!(
        (spec_changed.kind.as_str(), &spec_changed.data["generation"]),
        ("SpecChanged", &json!(2))
    );

    // And a wait on one replica is woken by a write through another.
    let wait = waiting(
        &second,
        second.client.get(format!(
            "{}?waitFor=deleted&timeout=60s",
            second.item("payments", "billing-db")
        )),
    )
    .await;
    assert_eq!(
        first.delete("payments", "billing-db").await.status(),
        StatusCode::OK
    );
    // The cluster's delete, as the mirror records it.
    sqlx::query("DELETE FROM outbox")
        .execute(&mut connect(&first).await)
        .await
        .expect("the outbox drained");
    let response = timeout(DEADLINE, wait)
        .await
        .expect("the wait answers soon after the delete")
        .expect("the wait task");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(stream.next().await.kind, "Deleted");
    assert_eq!(stream.next().await.kind, "RemovedFromCluster");
}

#[tokio::test]
async fn streams_and_waits_past_max_watches_are_refused_with_503() {
    let app = spawn_app_with(|settings| settings.max_watches = 1).await;
    app.register("payments", "billing-db").await;
    let item = app.item("payments", "billing-db");
    let _held = EventStream::open(&app, &events_in(&app, "payments"), Start::Now).await;

    for url in [
        events_in(&app, "payments"),
        events_of(&app, "payments", "billing-db"),
        format!("{item}?waitFor=ready&timeout=60s"),
    ] {
        let refused = timeout(DEADLINE, app.get(&url)).await.expect("at once");
        problem(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    // A plain read holds no watch.
    assert_eq!(app.get(&item).await.status(), StatusCode::OK);
}

// Maintenance.

fn maintenance_of(app: &TestApp, name: &str) -> String {
    format!("{}/maintenance", app.item("payments", name))
}

fn in_hours(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn maintenance_refuses_what_is_not_an_address_a_reason_or_a_time_in_range() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let url = maintenance_of(&app, "billing-db");
    let cases = [
        (
            json!({"addresses": ["198.51.100.7"], "reason": "", "until": in_hours(-1)}),
            vec!["/addresses/0", "/reason", "/until"],
        ),
        (
            json!({"addresses": ["192.0.2.10", "pay.example.com"], "reason": "x".repeat(257), "until": in_hours(24 * 31)}),
            vec!["/addresses/1", "/reason", "/until"],
        ),
        (
            json!({"addresses": ["192.0.2.10"], "reason": "kernel\u{7} upgrade", "until": "tomorrow"}),
            vec!["/reason", "/until"],
        ),
        (
            json!({"addresses": [], "reason": "kernel upgrade", "until": in_hours(1)}),
            vec!["/addresses"],
        ),
    ];
    for (body, expected) in cases {
        let response = app.client.post(&url).json(&body).send().await.unwrap();
        let refused = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(sorted(pointers(&refused)), expected, "{body}: {refused}");
    }
    let unknown = app
        .client
        .post(&url)
        .json(
            &json!({"addresses": ["192.0.2.10"], "reason": "r", "until": in_hours(1), "extra": 1}),
        )
        .send()
        .await
        .unwrap();
    let unknown = problem(unknown, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(pointers(&unknown), ["/extra"]);
    let list = json_of(app.get(&url).await).await;
    assert_eq!(list["items"], json!([]));
    assert_eq!(
        count(&app, "SELECT count(*) FROM maintenance_windows").await,
        0
    );
    problem(
        app.get(&maintenance_of(&app, "nope")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn maintenance_windows_start_show_and_end_with_their_events() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let url = maintenance_of(&app, "billing-db");
    let mut stream =
        EventStream::open(&app, &events_of(&app, "payments", "billing-db"), Start::Now).await;

    let until = in_hours(2);
    let started = app
        .client
        .post(&url)
        .json(&json!({"addresses": ["192.0.2.10"], "reason": " kernel upgrade ", "until": until}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::OK);
    let started = json_of(started).await;
    assert_eq!(
        (&started["namespace"], &started["name"]),
        (&json!("payments"), &json!("billing-db"))
    );
    let window = &started["items"][0];
    assert_eq!(started["items"].as_array().unwrap().len(), 1, "{started}");
    assert_eq!(
        (
            &window["address"],
            &window["reason"],
            &window["until"],
            &window["by"]
        ),
        (
            &json!("192.0.2.10"),
            &json!("kernel upgrade"),
            &json!(until),
            &json!("platform-admin")
        ),
        "{started}"
    );
    assert!(window["since"].is_string());
    assert_eq!(json_of(app.get(&url).await).await, started);

    let event = stream.next().await;
    assert_eq!(event.kind, "MaintenanceStarted");
    assert_eq!(event.address(), "192.0.2.10");
    assert_eq!(event.data["detail"]["reason"], "kernel upgrade");
    assert_eq!(event.data["detail"]["by"], "platform-admin");

    // The health report shows it on the address, as the probe engine publishes it.
    let store = extsvc::store::Database::new(&app.database_url, 1)
        .expect("a database")
        .store(1);
    let report = |address: &str| extsvc::resource::AddressHealth {
        address: address.to_owned(),
        state: extsvc::resource::HealthState::Ready,
        message: None,
        checks: Vec::new(),
        maintenance: None,
    };
    store
        .record_health(&[extsvc::resource::ServiceHealth {
            namespace: "payments".to_owned(),
            name: "billing-db".to_owned(),
            ready_addresses: 2,
            total_addresses: 2,
            addresses: vec![report("192.0.2.10"), report("2001:db8::10")],
            updated_at: None,
        }])
        .await
        .expect("a health report");
    let health = json_of(
        app.get(&format!("{}/health", app.item("payments", "billing-db")))
            .await,
    )
    .await;
    let addresses = health["addresses"].as_array().unwrap();
    let marked = addresses
        .iter()
        .find(|a| a["address"] == "192.0.2.10")
        .unwrap();
    assert_eq!(
        marked["maintenance"]["reason"], "kernel upgrade",
        "{health}"
    );
    let unmarked = addresses
        .iter()
        .find(|a| a["address"] == "2001:db8::10")
        .unwrap();
    assert!(unmarked.get("maintenance").is_none(), "{health}");

    // More addresses, named as the spec names them or not.
    let more = app
        .client
        .post(&url)
        .json(&json!({"addresses": ["DB.example.com", "2001:DB8:0::10"], "reason": "rack move", "until": in_hours(3)}))
        .send()
        .await
        .unwrap();
    assert_eq!(more.status(), StatusCode::OK);
    let more = json_of(more).await;
    let listed: Vec<&str> = more["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["address"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["192.0.2.10", "2001:db8::10", "db.example.com"]);
    let events = stream.take(2).await;
    assert_eq!(kinds(&events), ["MaintenanceStarted", "MaintenanceStarted"]);
    assert_eq!(
        sorted(events.iter().map(Event::address).collect()),
        ["2001:db8::10", "db.example.com"]
    );

    // Ended early, one address, then the rest.
    let one = app
        .client
        .delete(format!("{url}?address=192.0.2.10"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    let left: Vec<String> = json_of(one).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["address"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["2001:db8::10", "db.example.com"]);
    let ended = stream.next().await;
    assert_eq!(
        (ended.kind.as_str(), ended.address()),
        ("MaintenanceEnded", "192.0.2.10")
    );
    assert_eq!(ended.data["detail"]["reason"], "kernel upgrade");

    let rest = app.client.delete(&url).send().await.unwrap();
    assert_eq!(rest.status(), StatusCode::OK);
    assert_eq!(json_of(rest).await["items"], json!([]));
    let events = stream.take(2).await;
    assert_eq!(kinds(&events), ["MaintenanceEnded", "MaintenanceEnded"]);
    assert_eq!(json_of(app.get(&url).await).await["items"], json!([]));

    // The spec never changed.
    let service = json_of(app.get(&app.item("payments", "billing-db")).await).await;
    assert_eq!(service["metadata"]["generation"], 1);
}

/// POST takes `2001:DB8:0::10` and `DB.Example.com` and keeps them as `2001:db8::10` and
/// `db.example.com`; `DELETE ?address=` takes them spelled either way.
#[tokio::test]
async fn maintenance_ends_for_an_address_spelled_as_it_was_started() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let url = maintenance_of(&app, "billing-db");
    let body = json!({"addresses": ["2001:DB8:0::10", "DB.Example.com"], "reason": "rack move", "until": in_hours(1)});
    let started = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::OK);

    for address in ["2001:DB8:0::10", "DB.Example.com"] {
        let ended = app
            .client
            .delete(&url)
            .query(&[("address", address)])
            .send()
            .await
            .unwrap();
        assert_eq!(ended.status(), StatusCode::OK);
    }
    let left = json_of(app.get(&url).await).await;
    assert_eq!(left["items"], json!([]), "{left}");
    // An address with no window is not found, not silently fine.
    let none = app
        .client
        .delete(&url)
        .query(&[("address", "2001:db8::10")])
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_viewer_may_read_maintenance_but_not_start_or_end_it() {
    let app = spawn_app().await;
    let team = app
        .client
        .put(format!("{}/api/v1/teams/payments", app.address))
        .json(&json!({"namespaces": ["payments"], "ingressHosts": ["pay.example.com"]}))
        .send()
        .await
        .unwrap();
    assert!(team.status().is_success(), "{}", team.status());
    app.register("payments", "billing-db").await;
    let made = app
        .client
        .post(format!("{}/api/v1/teams/payments/tokens", app.address))
        .json(&json!({"name": "ci", "scopes": ["read"], "expiresInSeconds": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let viewer = client_with(json_of(made).await["token"].as_str().unwrap());
    let url = maintenance_of(&app, "billing-db");
    let body =
        json!({"addresses": ["192.0.2.10"], "reason": "kernel upgrade", "until": in_hours(1)});

    let refused = viewer.post(&url).json(&body).send().await.unwrap();
    problem(refused, StatusCode::FORBIDDEN).await;
    let refused = viewer.delete(&url).send().await.unwrap();
    problem(refused, StatusCode::FORBIDDEN).await;
    let read = viewer.get(&url).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(json_of(read).await["items"], json!([]));
    assert_eq!(
        count(&app, "SELECT count(*) FROM maintenance_windows").await,
        0
    );

    // A dry run is authorized as the write it stands for, before any work.
    let dry = format!("{}?dryRun=true", app.collection("payments"));
    let refused = viewer
        .post(&dry)
        .json(&document("from-viewer"))
        .send()
        .await
        .unwrap();
    problem(refused, StatusCode::FORBIDDEN).await;
    let refused = viewer
        .delete(format!(
            "{}?dryRun=true",
            app.item("payments", "billing-db")
        ))
        .send()
        .await
        .unwrap();
    problem(refused, StatusCode::FORBIDDEN).await;
}

/// Events wait for the transactions of this database that may still add one before
/// them, and for no other: a transaction left open in another database of the same
/// server (another application's, a long batch job) holds no stream back.
#[tokio::test]
async fn a_transaction_in_another_database_holds_no_stream_back() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    let mut stream =
        EventStream::open(&app, &events_of(&app, "payments", "billing-db"), Start::Now).await;
    let server = std::env::var("EXTSVC_TEST_DATABASE_URL").expect("the test server's URL");
    let mut elsewhere = sqlx::PgConnection::connect(&server)
        .await
        .expect("a connection");
    let mut open = elsewhere.begin().await.expect("a transaction");
    let _: (String,) = sqlx::query_as("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *open)
        .await
        .expect("an xid for it");

    let body =
        json!({"addresses": ["192.0.2.10"], "reason": "kernel upgrade", "until": in_hours(1)});
    let started = app
        .client
        .post(maintenance_of(&app, "billing-db"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::OK);

    // Within the stream's deadline, with the other transaction still open.
    assert_eq!(stream.next().await.kind, "MaintenanceStarted");
    open.rollback().await.expect("a rollback");
}

/// A replay longer than a page of the table arrives whole and in order, read a page at
/// a time (a stream holds one page in memory, not the whole replay).
#[tokio::test]
async fn a_replay_longer_than_a_page_arrives_whole_and_in_order() {
    let app = spawn_app().await;
    app.register("payments", "billing-db").await;
    // 1,200 changes in one transaction: one transaction id, 1,200 event ids.
    sqlx::query(
        "DO $$ BEGIN FOR i IN 1..1200 LOOP
             UPDATE external_services SET generation = generation + 1 WHERE name = 'billing-db';
         END LOOP; END $$",
    )
    .execute(&mut connect(&app).await)
    .await
    .expect("1,200 changes");
    let url = format!(
        "{}?lastEventId=0-0&follow=false",
        events_of(&app, "payments", "billing-db")
    );
    // The replay reaches as far as the replica has read: wait until it has read them all.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let body = timeout(DEADLINE, app.get(&url))
            .await
            .expect("the replay answers")
            .text()
            .await
            .expect("the replay ends");
        let generations: Vec<i64> = body
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str::<Value>(data).expect("JSON"))
            .filter(|event| event["type"] == "SpecChanged")
            .map(|event| event["generation"].as_i64().expect("a generation"))
            .collect();
        if generations.len() == 1200 {
            assert_eq!(generations, (2..=1201).collect::<Vec<i64>>());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 1,200 replayed",
            generations.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
