//! Maintenance windows: addresses out of rotation for a while.

use super::*;

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
