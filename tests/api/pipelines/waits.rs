//! Waits for a condition: synced, ready, deleted.

use super::*;

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
