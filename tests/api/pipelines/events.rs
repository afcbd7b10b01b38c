//! Event streams: what they carry, what a reconnect replays, every replica alike.

use super::*;

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
