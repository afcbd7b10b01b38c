//! The mirror deletes an ExternalService only when an outbox row says its registration was
//! deleted, and writes only over its own installation's: a database that does not know a
//! resource (empty, restored, or another installation's) neither deletes nor overwrites it.

use kube::ResourceExt;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Site, absent, control_plane, eventually, existing, registration};

#[tokio::test]
async fn a_database_that_does_not_know_a_resource_neither_deletes_nor_overwrites_it() {
    let site = Site::on(control_plane().await).await;
    let first = site.start("first").await;
    assert_eq!(
        first.put("billing-db", &registration("billing-db")).await,
        StatusCode::CREATED
    );
    let made = existing(
        &first.external_services(),
        "the ExternalService",
        "billing-db",
    )
    .await;
    let service = existing(&first.services(), "its Service", "billing-db").await;
    first.stop().await;

    // The next replica starts on an empty database (a wrong DATABASE_URL, a lost one, or
    // a second installation): its first full pass finds a resource it has no row for.
    let second = site.with_another_database().await.start("second").await;
    eventually(30, "the resource counted as unknown", || async {
        let unknown = second.metric("extsvc_mirror_unknown_registrations").await;
        (unknown == 1.0).then_some(())
    })
    .await;

    // A registration of the same name there is refused, not written over the other's.
    let other = json!({
        "metadata": {"name": "billing-db"},
        "spec": {"ports": [{"name": "http", "port": 80}],
                 "endpoints": [{"address": "192.0.2.99"}]}
    });
    assert_eq!(second.put("billing-db", &other).await, StatusCode::CREATED);
    let (_, refused) = eventually(30, "the refusal in the API", || async {
        let (status, doc) = second.get("billing-db").await;
        let error = doc["status"]["mirrorError"].as_str()?.to_owned();
        error
            .contains("another installation")
            .then_some((status, error))
    })
    .await;
    assert!(refused.contains("billing-db"), "{refused}");

    let kept = existing(
        &second.external_services(),
        "the ExternalService",
        "billing-db",
    )
    .await;
    assert_eq!(kept.uid(), made.uid());
    assert_eq!(kept.spec, made.spec);
    let children = existing(&second.services(), "its Service", "billing-db").await;
    assert_eq!(children.uid(), service.uid());
}

#[tokio::test]
async fn deleting_a_registration_deletes_its_resource_even_before_the_watch_saw_it() {
    let site = Site::on(control_plane().await).await;
    let op = site.start("only").await;
    // Created and deleted at once: the delete row may be handled before the watch has
    // shown the mirror its own resource.
    for round in 0..3 {
        let name = format!("short-lived-{round}");
        assert_eq!(
            op.put(&name, &registration(&name)).await,
            StatusCode::CREATED
        );
        assert_eq!(op.delete(&name).await, StatusCode::OK);
    }
    assert_eq!(
        op.put("kept", &registration("kept")).await,
        StatusCode::CREATED
    );
    existing(&op.external_services(), "the ExternalService", "kept").await;
    for round in 0..3 {
        let name = format!("short-lived-{round}");
        absent(
            &op.external_services(),
            "the deleted registration's resource",
            &name,
        )
        .await;
    }
    eventually(30, "nothing counted as unknown", || async {
        let unknown = op.metric("extsvc_mirror_unknown_registrations").await;
        (unknown == 0.0).then_some(())
    })
    .await;
}
