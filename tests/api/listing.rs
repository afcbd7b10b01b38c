//! Listing: pages, continue tokens and label selectors.

use std::collections::HashSet;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, document, problem, spawn_app};
use sqlx::Connection;

async fn register_many(app: &TestApp, namespace: &str, names: impl Iterator<Item = String>) {
    futures::stream::iter(names)
        .map(|name| async move {
            let status = app.post(namespace, &document(&name)).await.status();
            assert_eq!(status, StatusCode::CREATED, "{name}");
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

async fn page(app: &TestApp, url: &str) -> Value {
    let response = app.get(url).await;
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.json().await.unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["metadata"]["namespace"].as_str().unwrap(),
                item["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn walking_1000_items_page_by_page_returns_each_exactly_once_while_items_are_added() {
    let app = spawn_app().await;
    register_many(&app, "a", (0..500).map(|i| format!("svc-{i:04}"))).await;
    register_many(&app, "b", (0..500).map(|i| format!("svc-{i:04}"))).await;

    let mut seen = Vec::new();
    let mut url = format!("{}/api/v1/external-services?limit=70", app.address);
    let mut pages = 0;
    loop {
        let list = page(&app, &url).await;
        assert_eq!(list["kind"], "ExternalServiceList");
        seen.extend(names(&list));
        pages += 1;
        // Items added during the walk, before and after the cursor.
        register_many(
            &app,
            "a",
            [format!("added-{pages}"), format!("zz-added-{pages}")].into_iter(),
        )
        .await;
        match list["metadata"]["continue"].as_str() {
            Some(token) => {
                url = format!(
                    "{}/api/v1/external-services?limit=70&continue={token}",
                    app.address
                )
            }
            None => break,
        }
    }

    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an item came twice");
    for ns in ["a", "b"] {
        for i in 0..500 {
            assert!(
                unique.contains(&format!("{ns}/svc-{i:04}")),
                "{ns}/svc-{i:04} missing"
            );
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "pages come in namespace/name order");
    assert!(pages >= 15);
}

#[tokio::test]
async fn a_namespaced_list_has_only_that_namespace_and_defaults_to_50() {
    let app = spawn_app().await;
    register_many(&app, "a", (0..60).map(|i| format!("svc-{i:02}"))).await;
    register_many(&app, "b", (0..3).map(|i| format!("svc-{i:02}"))).await;

    let first = page(&app, &app.collection("a")).await;
    assert_eq!(names(&first).len(), 50);
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a second page");
    let second = page(&app, &format!("{}?continue={token}", app.collection("a"))).await;
    assert_eq!(names(&second).len(), 10);
    assert!(
        second["metadata"].get("continue").is_none(),
        "the last page has no token"
    );
    assert!(
        names(&first)
            .iter()
            .chain(&names(&second))
            .all(|n| n.starts_with("a/"))
    );
}

#[tokio::test]
async fn limit_and_continue_are_checked() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "limit=-1",
        "continue=%%%",
        "continue=bm90aGluZw",
    ] {
        let response = app.get(&format!("{}?{query}", app.collection("a"))).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        let parameter = query.split('=').next().unwrap();
        assert_eq!(body["errors"][0]["parameter"], parameter, "{query}");
    }
    assert_eq!(
        app.get(&format!("{}?limit=500", app.collection("a")))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn label_selectors_filter_like_kubernetes() {
    let app = spawn_app().await;
    for (name, labels) in [
        ("prod-db", json!({"env": "prod", "tier": "db"})),
        ("prod-web", json!({"env": "prod"})),
        ("dev-db", json!({"env": "dev", "tier": "db"})),
        ("bare", json!({})),
    ] {
        let mut doc = document(name);
        doc["metadata"]["labels"] = labels;
        assert_eq!(app.post("ns", &doc).await.status(), StatusCode::CREATED);
    }
    let cases = [
        ("env=prod", vec!["prod-db", "prod-web"]),
        ("env==prod,tier=db", vec!["prod-db"]),
        ("env!=prod", vec!["bare", "dev-db"]),
        ("env in (dev, staging)", vec!["dev-db"]),
        ("env notin (prod)", vec!["bare", "dev-db"]),
        ("tier", vec!["dev-db", "prod-db"]),
        ("!tier", vec!["bare", "prod-web"]),
        ("!env", vec!["bare"]),
        ("env=qa", vec![]),
        ("env=prod,env=dev", vec![]),
        ("env=prod,env in (prod, dev)", vec!["prod-db", "prod-web"]),
        ("env in (prod, dev),tier", vec!["dev-db", "prod-db"]),
        ("env in (prod, dev),tier notin (db)", vec!["prod-web"]),
        ("env=prod,!tier", vec!["prod-web"]),
        ("env notin (prod, dev),!tier", vec!["bare"]),
    ];
    for (selector, expected) in cases {
        let url =
            reqwest::Url::parse_with_params(&app.collection("ns"), [("labelSelector", selector)])
                .unwrap();
        let list = page(&app, url.as_str()).await;
        let got: Vec<_> = names(&list)
            .into_iter()
            .map(|n| n.trim_start_matches("ns/").to_owned())
            .collect();
        assert_eq!(got, expected, "{selector}");
    }
}

#[tokio::test]
async fn a_malformed_label_selector_is_400() {
    let app = spawn_app().await;
    let url =
        reqwest::Url::parse_with_params(&app.collection("ns"), [("labelSelector", "env in (a")])
            .unwrap();

    let body = problem(app.get(url.as_str()).await, StatusCode::BAD_REQUEST).await;

    assert_eq!(body["errors"][0]["parameter"], "labelSelector");
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("character 10")
    );
}

#[tokio::test]
async fn a_selector_lists_the_same_across_namespaces_and_pages() {
    let app = spawn_app().await;
    for namespace in ["a", "b"] {
        for i in 0..12 {
            let mut doc = document(&format!("svc-{i:02}"));
            doc["metadata"]["labels"] = json!({"shard": (i % 3).to_string()});
            assert_eq!(
                app.post(namespace, &doc).await.status(),
                StatusCode::CREATED
            );
        }
    }
    let mut seen = Vec::new();
    let first = format!(
        "{}/api/v1/external-services?limit=3&labelSelector=shard%3D1",
        app.address
    );
    let mut url = first.clone();
    loop {
        let list = page(&app, &url).await;
        seen.extend(names(&list));
        match list["metadata"]["continue"].as_str() {
            Some(token) => url = format!("{first}&continue={token}"),
            None => break,
        }
    }
    let expected: Vec<_> = ["a", "b"]
        .iter()
        .flat_map(|ns| [1, 4, 7, 10].map(|i| format!("{ns}/svc-{i:02}")))
        .collect();
    assert_eq!(seen, expected);
}

/// Each listing statement, exactly as the store compiles it, with the arguments of a page.
const LISTINGS: &[(&str, &str, &str)] = &[
    (
        "a namespace",
        include_str!("../../src/store/queries/list_services_in_namespace.sql"),
        "'bench', '', '{}', '{}', 51",
    ),
    (
        "a namespace, from its middle",
        include_str!("../../src/store/queries/list_services_in_namespace.sql"),
        "'bench', 'svc-15000', '{}', '{}', 51",
    ),
    (
        "a namespace, shard!=7,!owner",
        include_str!("../../src/store/queries/list_services_in_namespace.sql"),
        r#"'bench', '', '{owner}', ARRAY['{"shard": "7"}'::jsonb], 51"#,
    ),
    (
        "every namespace",
        include_str!("../../src/store/queries/list_services.sql"),
        "'', '', '{}', '{}', 51",
    ),
    (
        "every namespace, from the middle",
        include_str!("../../src/store/queries/list_services.sql"),
        "'bench', 'svc-15000', '{}', '{}', 51",
    ),
    (
        "a namespace, shard=7 (1%)",
        include_str!("../../src/store/queries/select_services_in_namespace.sql"),
        r#"'bench', '', '{"shard": "7"}', '{}', '{}', '{}', NULL, 51"#,
    ),
    (
        "a namespace, shard=7,team,!owner,shard!=8",
        include_str!("../../src/store/queries/select_services_in_namespace.sql"),
        r#"'bench', '', '{"shard": "7"}', '{team}', '{owner}', ARRAY['{"shard": "8"}'::jsonb], NULL, 51"#,
    ),
    (
        "every namespace, shard=7 (1%)",
        include_str!("../../src/store/queries/select_services.sql"),
        r#"'', '', '{"shard": "7"}', '{}', '{}', '{}', NULL, 51"#,
    ),
    (
        "health of a namespace",
        include_str!("../../src/store/queries/list_health_in_namespace.sql"),
        "'bench', '', 501",
    ),
    (
        "health of every namespace",
        include_str!("../../src/store/queries/list_health.sql"),
        "'', '', 501",
    ),
    (
        "unready of a namespace (1%)",
        include_str!("../../src/store/queries/list_unready_in_namespace.sql"),
        "'bench', '', 501",
    ),
    (
        "unready of every namespace (1%)",
        include_str!("../../src/store/queries/list_unready.sql"),
        "'', '', 501",
    ),
];

/// The most rows one node of a plan (EXPLAIN ANALYZE, JSON) produced or threw away, and
/// where: a sort of the whole table reads every row, a walk that stops at the page few.
fn most_rows_touched(node: &Value) -> (u64, String) {
    let count = |key: &str| node[key].as_u64().unwrap_or(0);
    let touched = (count("Actual Rows")
        + count("Rows Removed by Filter")
        + count("Rows Removed by Index Recheck"))
        * count("Actual Loops").max(1);
    let here = (
        touched,
        format!(
            "{} {}",
            node["Node Type"].as_str().unwrap_or("?"),
            node["Index Name"].as_str().unwrap_or("")
        ),
    );
    node["Plans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(most_rows_touched)
        .fold(here, |a, b| if b.0 > a.0 { b } else { a })
}

#[tokio::test]
async fn every_listing_reads_a_page_not_the_table_even_before_statistics_exist() {
    let app = spawn_app().await;
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    // A bulk import, and autoanalyze not yet round: the state in which the planner
    // believed the table small and sorted all of it for every page.
    sqlx::raw_sql(
        r#"ALTER TABLE external_services SET (autovacuum_enabled = false);
           ALTER TABLE service_health SET (autovacuum_enabled = false);
           INSERT INTO external_services (namespace, name, labels, spec)
           SELECT ns, 'svc-' || lpad(i::text, 5, '0'),
                  jsonb_build_object('team', 'bench', 'shard', (i % 100)::text), '{}'
           FROM generate_series(1, 30000) i,
                LATERAL (SELECT CASE WHEN i <= 10 THEN 'a' WHEN i > 29990 THEN 'z' ELSE 'bench' END) n(ns);
           INSERT INTO service_health (namespace, name, ready_addresses, total_addresses, report)
           SELECT namespace, name, CASE WHEN labels->>'shard' = '0' THEN 0 ELSE 1 END, 1, '{}'
           FROM external_services;"#,
    )
    .execute(&mut db)
    .await
    .unwrap();
    let analyzed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT greatest(last_analyze, last_autoanalyze) FROM pg_stat_user_tables WHERE relname = 'external_services'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    let reltuples: f32 =
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'external_services'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(
        reltuples < 1000.0,
        "the test needs stale statistics ({reltuples} rows known, analyzed {analyzed:?})"
    );

    for statistics in ["none", "fresh"] {
        if statistics == "fresh" {
            sqlx::raw_sql("ANALYZE external_services, service_health")
                .execute(&mut db)
                .await
                .unwrap();
        }
        for (shape, statement, arguments) in LISTINGS {
            // A prepared statement's first plans are custom (made for its arguments);
            // later ones may be generic (made for any): both must walk an index.
            for mode in ["force_custom_plan", "force_generic_plan"] {
                // The statements are this crate's own files, the arguments its literals.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET plan_cache_mode = {mode}; PREPARE listing AS {statement}"
                )))
                .execute(&mut db)
                .await
                .unwrap();
                let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) EXECUTE listing({arguments})"
                )))
                .persistent(false)
                .fetch_one(&mut db)
                .await
                .unwrap();
                sqlx::raw_sql("DEALLOCATE listing")
                    .execute(&mut db)
                    .await
                    .unwrap();
                let (rows, node) = most_rows_touched(&plan[0]["Plan"]);
                // Without statistics every shape is served by an index: a walk that stops
                // at the page, or the label index and a sort of the few it finds. With
                // them the planner may walk the names for a 1% selector instead, reading
                // about 100 rows per match: 5,100 for a page.
                let bound = if statistics == "none" { 1_000 } else { 6_000 };
                assert!(
                    rows <= bound,
                    "{shape} ({mode}, statistics {statistics}): {node} touched {rows} of 30,000 rows\n{plan:#}"
                );
            }
        }
    }
}

#[tokio::test]
async fn applying_migrations_refreshes_the_planners_statistics() {
    let app = spawn_app().await;
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let never_analyzed: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_stat_user_tables
         WHERE relname IN ('external_services', 'outbox', 'service_health', 'health_transitions')
           AND last_analyze IS NULL",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(never_analyzed, Vec::<String>::new());
}
