//! Which namespaces take writes: at most `--max-services-per-namespace` registrations in
//! each, and only the `--watch-namespace` when one is set.

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

#[tokio::test]
async fn with_a_watch_namespace_writes_to_another_namespace_are_refused_not_lost() {
    let app =
        spawn_app_with(|settings| settings.kubernetes.watch_namespace = Some("team".into())).await;
    app.register("team", "a").await;

    for response in [
        app.post("other", &document("b")).await,
        app.put("other", "b", &document("b")).await,
        app.delete("other", "b").await,
    ] {
        let refused = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(refused["errors"][0]["pointer"], "/metadata/namespace");
        let detail = refused["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("serves namespace team only"), "{detail}");
    }
    assert_eq!(
        app.get(&app.item("other", "b")).await.status(),
        StatusCode::NOT_FOUND,
        "nothing written"
    );
}
