//! Whatever is changed by hand in the cluster comes back as the registration says.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::helpers::{
    TestOperator, eventually, existing, registration, slice_addresses, spawn_operator,
};

const SLICE_MANAGER: &str = "endpointslice.kubernetes.io/managed-by";
const OUR_SLICES: &str = "controller.extsvc.dev";

/// An operator with `billing-db` registered, and its three EndpointSlices.
async fn registered() -> (TestOperator, Vec<EndpointSlice>) {
    let op = spawn_operator().await;
    op.put("billing-db", &registration("billing-db")).await;
    let slices = op.slices_eventually("three slices", "billing-db", 3).await;
    (op, slices)
}

#[tokio::test]
async fn children_deleted_by_hand_are_recreated() {
    let (op, slices) = registered().await;
    let service = existing(&op.services(), "the Service", "billing-db").await;

    op.services()
        .delete("billing-db", &DeleteParams::default())
        .await
        .unwrap();
    let slice = slices[0].name_any();
    op.endpoint_slices()
        .delete(&slice, &DeleteParams::default())
        .await
        .unwrap();

    eventually(30, "a new Service", || async {
        let again = op.services().get_opt("billing-db").await.ok().flatten()?;
        (again.uid() != service.uid()).then_some(())
    })
    .await;
    existing(&op.endpoint_slices(), "the slice back", &slice).await;
}

#[tokio::test]
async fn a_child_edited_by_hand_is_put_back() {
    let (op, slices) = registered().await;
    let before = slice_addresses(&slices);
    let name = slices[0].name_any();

    // Someone marks our endpoint not ready, with their own field manager.
    let mut edited = slices[0].clone();
    edited.metadata.managed_fields = None;
    for endpoint in &mut edited.endpoints {
        endpoint.conditions.as_mut().unwrap().ready = Some(false);
    }
    op.endpoint_slices()
        .replace(&name, &Default::default(), &edited)
        .await
        .unwrap();

    eventually(30, "the slice repaired", || async {
        let slices = op.slices_of("billing-db").await;
        (slice_addresses(&slices) == before).then_some(())
    })
    .await;
}

#[tokio::test]
async fn fields_another_manager_adds_to_a_child_are_removed_then_nothing_is_written() {
    let (op, slices) = registered().await;
    let before = slice_addresses(&slices);
    let slice = slices[0].name_any();
    let endpoints = existing(&op.endpoints(), "the Endpoints", "billing-db")
        .await
        .subsets;
    let intruder = PatchParams::apply("intruder").force();

    // A selector would make the cluster's own controllers write Endpoints for this
    // Service too: the two writers this project exists to avoid (on a single-stack API
    // server a headless Service with a selector must be single-stack, hence the
    // families). An extra port and an extra endpoint are not ours either.
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "spec": {"selector": {"app": "billing"},
                 "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                 "ports": [{"name": "extra", "port": 8080, "protocol": "TCP"}]}
    });
    op.services()
        .patch("billing-db", &intruder, &Patch::Apply(&service))
        .await
        .unwrap();
    let endpoint = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "addressType": slices[0].address_type,
        "endpoints": [{"addresses": [if slices[0].address_type == "IPv6" { "2001:db8::99" } else { "192.0.2.99" }]}]
    });
    op.endpoint_slices()
        .patch(&slice, &intruder, &Patch::Apply(&endpoint))
        .await
        .unwrap();

    eventually(30, "the Service without selector or extra port", || async {
        let spec = op.services().get("billing-db").await.ok()?.spec?;
        let ports: Vec<_> = spec.ports?.into_iter().filter_map(|p| p.name).collect();
        (spec.selector.is_none_or(|s| s.is_empty()) && ports == ["https", "metrics"]).then_some(())
    })
    .await;
    // While the selector was there, the cluster's own controllers wrote the Endpoints
    // and made a slice of their own. The Endpoints are ours again once the selector is
    // gone; the cluster's slice stays (its controller leaves the slices of a Service that
    // lost its selector) and is not ours to delete, but it lists no endpoint.
    eventually(30, "our slices without the extra endpoint", || async {
        let (ours, theirs): (Vec<_>, Vec<_>) = op
            .slices_of("billing-db")
            .await
            .into_iter()
            .partition(|s| s.labels().get(SLICE_MANAGER) == Some(&OUR_SLICES.to_owned()));
        let foreign_endpoints = theirs.iter().map(|s| s.endpoints.len()).sum::<usize>();
        (ours.len() == 3 && slice_addresses(&ours) == before && foreign_endpoints == 0)
            .then_some(())
    })
    .await;
    eventually(30, "the Endpoints as they were", || async {
        let now = op.endpoints().get("billing-db").await.ok()?.subsets;
        (now == endpoints).then_some(())
    })
    .await;

    // Repaired for good: a reconcile (woken by a label someone adds to the resource)
    // finds nothing to write. The cluster's endpoints controller may still write the
    // Endpoints once more (it saw the selector late), which a reconcile rightly repairs;
    // a child that is never right would cost a write in every round.
    let mut rounds = Vec::new();
    for round in 0..5 {
        let writes = op.metric("extsvc_kubernetes_writes_total").await;
        let reconciles = op.metric("extsvc_reconciles_total").await;
        let label = json!({"metadata": {"labels": {"touched-by": format!("intruder-{round}")}}});
        op.external_services()
            .patch("billing-db", &PatchParams::default(), &Patch::Merge(&label))
            .await
            .unwrap();
        eventually(30, "a reconcile after the label", || async {
            (op.metric("extsvc_reconciles_total").await > reconciles).then_some(())
        })
        .await;
        let written = op.metric("extsvc_kubernetes_writes_total").await - writes;
        if written == 0.0 {
            return;
        }
        rounds.push(written);
    }
    panic!("every reconcile wrote something: {rounds:?} writes in 5 rounds");
}

#[tokio::test]
async fn a_resource_edited_or_deleted_by_hand_is_reasserted_from_the_registration() {
    let op = spawn_operator().await;
    op.put("billing-db", &registration("billing-db")).await;
    let cr = existing(&op.external_services(), "the ExternalService", "billing-db").await;

    let patch = json!({"spec": {"endpoints": [{"address": "198.51.100.99"}]}});
    op.external_services()
        .patch("billing-db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(30, "the spec put back", || async {
        let now = op.external_services().get("billing-db").await.ok()?;
        (now.spec == cr.spec).then_some(())
    })
    .await;

    op.external_services()
        .delete("billing-db", &DeleteParams::default())
        .await
        .unwrap();
    eventually(30, "the resource back", || async {
        let again = op
            .external_services()
            .get_opt("billing-db")
            .await
            .ok()
            .flatten()?;
        (again.uid() != cr.uid() && again.spec == cr.spec).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_status_written_by_someone_else_is_put_back() {
    let (op, _) = registered().await;
    let api = op.external_services();
    let ours = eventually(30, "the status", || async {
        let status = api.get("billing-db").await.ok()?.status?;
        (status.ready.as_deref() == Some("3/3")).then_some(status)
    })
    .await;

    // A former leader, or someone with kubectl, writes a status of its own.
    let wrong = json!({"status": {"ready": "0/3", "readyAddresses": 0}});
    api.patch_status("billing-db", &PatchParams::default(), &Patch::Merge(&wrong))
        .await
        .unwrap();

    eventually(30, "our status back", || async {
        let status = api.get("billing-db").await.ok()?.status?;
        (status.ready == ours.ready && status.ready_addresses == ours.ready_addresses).then_some(())
    })
    .await;
}
