//! A namespace holds at most `--max-services-per-namespace` registrations.

use reqwest::StatusCode;

use crate::helpers::{document, problem, spawn_app_with};

#[tokio::test]
async fn a_full_namespace_refuses_new_names_and_still_takes_changes() {
    let app = spawn_app_with(|settings| settings.max_services_per_namespace = 2).await;
    app.register("team", "a").await;
    app.register("team", "b").await;

    let refused = problem(
        app.post("team", &document("c")).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        refused["type"],
        "https://extsvc.dev/problems/quota-exceeded"
    );
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("namespace team already holds 2"),
        "{refused}"
    );
    problem(
        app.put("team", "c", &document("c")).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        app.get(&app.item("team", "c")).await.status(),
        StatusCode::NOT_FOUND,
        "nothing written"
    );

    // Changing what is there, and other namespaces, are not held back.
    let mut changed = document("a");
    changed["metadata"]["labels"]["tier"] = "gold".into();
    assert_eq!(
        app.put("team", "a", &changed).await.status(),
        StatusCode::OK
    );
    app.register("other", "c").await;

    // Room again after a delete.
    assert!(app.delete("team", "b").await.status().is_success());
    app.register("team", "c").await;
}
