//! Several replicas: one leader writes, the others serve the API; another takes over
//! when the leader stops.

use k8s_openapi::api::coordination::v1::Lease;
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
