//! What the API does when the database holds it up: it answers, rather than waiting.

use std::time::Duration;

use reqwest::StatusCode;
use sqlx::Connection;

use crate::helpers::{document, problem, spawn_app};

#[tokio::test]
async fn a_write_held_up_by_a_row_lock_fails_with_503_instead_of_waiting() {
    let app = spawn_app().await;
    app.register("team", "billing-db").await;

    // Another session (a migration, an operator at psql) holds the row.
    let mut other = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("a second connection");
    let mut tx = other.begin().await.expect("BEGIN");
    sqlx::query("SELECT 1 FROM external_services WHERE name = 'billing-db' FOR UPDATE")
        .execute(&mut *tx)
        .await
        .expect("lock the row");

    // The server's lock_timeout is 5 s; the client gives it far longer.
    let response = app
        .client
        .put(app.item("team", "billing-db"))
        .json(&document("billing-db"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("an answer before the client gives up");
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;

    tx.rollback().await.expect("ROLLBACK");
    let response = app.put("team", "billing-db", &document("billing-db")).await;
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test]
async fn readyz_answers_while_requests_hold_every_connection_of_the_pool() {
    let app = spawn_app().await;
    app.register("team", "billing-db").await;
    let mut other = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("a second connection");
    let mut tx = other.begin().await.expect("BEGIN");
    sqlx::query("SELECT 1 FROM external_services WHERE name = 'billing-db' FOR UPDATE")
        .execute(&mut *tx)
        .await
        .expect("lock the row");

    // As many writes as the API has connections (4), each holding one while it waits
    // for the lock (up to the server's 5 s lock_timeout).
    let writes: Vec<_> = (0..4)
        .map(|_| {
            let request = app
                .client
                .put(app.item("team", "billing-db"))
                .json(&document("billing-db"))
                .send();
            tokio::spawn(request)
        })
        .collect();
    let mut watcher = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("a third connection");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("count the waiting writes");
        if waiting == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{waiting} of 4 writes wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let response = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("/readyz answers");
    assert_eq!(response.status(), StatusCode::OK);
    // Answered before any write gave its connection back: not from the API's pool.
    assert!(writes.iter().all(|write| !write.is_finished()));

    tx.rollback().await.expect("ROLLBACK");
    for write in writes {
        write.await.expect("the request task").expect("an answer");
    }
}
