//! Several replicas: one leader writes, the others serve the API; another takes over
//! when the leader stops.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use reqwest::StatusCode;

use crate::helpers::{Site, control_plane, eventually, registration};

#[tokio::test]
async fn of_two_replicas_one_leads_and_the_other_takes_over_when_it_stops() {
    let site = Site::on(control_plane().await).await;
    let one = site.start("replica-one").await;
    let two = site.start("replica-two").await;
    let leases: Api<Lease> = Api::namespaced(one.kube.clone(), &site.namespace);
    let holder = || async {
        let lease = leases.get_opt("extsvc-leader").await.ok().flatten()?;
        lease.spec?.holder_identity
    };

    let leader = eventually(30, "a leader", holder).await;
    // Either replica's API takes the registration; the leader's controller acts on it.
    assert_eq!(
        two.put("billing-db", &registration("billing-db")).await,
        StatusCode::CREATED
    );
    one.slices_eventually("its slices", "billing-db", 3).await;
    let (follower, leading) = if leader == "replica-one" {
        (two, one)
    } else {
        (one, two)
    };
    assert_eq!(
        follower.metric("extsvc_kubernetes_writes_total").await,
        0.0,
        "only the leader writes"
    );
    assert!(leading.metric("extsvc_kubernetes_writes_total").await > 0.0);

    leading.stop().await;

    let successor = eventually(30, "a new leader", || async {
        holder().await.filter(|h| *h != leader)
    })
    .await;
    assert_ne!(successor, leader);
    assert_eq!(
        follower.put("second", &registration("second")).await,
        StatusCode::CREATED
    );
    follower
        .slices_eventually("the new leader to reconcile", "second", 3)
        .await;
}

#[tokio::test]
async fn a_replica_whose_election_gives_up_fails_its_liveness_check() {
    let cp = control_plane().await;
    let site = Site::on(cp).await;
    // The Lease's namespace is gone: creating the Lease is refused, and retrying cannot
    // help, so the election gives up and this replica would never run the controller.
    let namespaces: Api<Namespace> = Api::all(cp.client().await);
    namespaces
        .delete(&site.namespace, &Default::default())
        .await
        .expect("delete the namespace");
    eventually(60, "the namespace to go", || async {
        namespaces
            .get_opt(&site.namespace)
            .await
            .ok()
            .and_then(|namespace| namespace.is_none().then_some(()))
    })
    .await;

    let replica = site.start("orphan").await;
    let healthz = format!("{}/healthz", replica.address);
    let reason = eventually(30, "/healthz to fail", || async {
        let response = replica.http.get(&healthz).send().await.ok()?;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE)
            .then_some(response.text().await.ok()?)
    })
    .await;
    assert!(reason.contains("leader election gave up"), "{reason}");
    // The API itself still answers, for whoever reads it until the restart.
    let readyz = replica
        .http
        .get(format!("{}/readyz", replica.address))
        .send()
        .await
        .expect("/readyz answers");
    assert_eq!(readyz.status(), StatusCode::OK);
}
