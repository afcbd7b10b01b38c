//! Dry runs: everything a write does, kept; with one probe of the backends.

use super::*;

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
