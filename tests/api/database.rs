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
