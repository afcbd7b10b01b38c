//! Nothing acknowledged is lost: the API keeps accepting writes while the Kubernetes API
//! server is down, and the mirror catches up when it returns.

use kube::ResourceExt;
use reqwest::StatusCode;
use serde_json::json;

use crate::controlplane::ControlPlane;
use crate::helpers::{Site, eventually, registration};

#[tokio::test]
async fn writes_made_while_the_api_server_is_down_all_reach_the_cluster_after_it_returns() {
    let cp = ControlPlane::start_private().await;
    cp.install_crds(&[extsvc::k8s::crd::crd()]).await;
    let op = Site::on(&cp).await.start("only").await;
    op.put("kept", &registration("kept")).await;
    op.put("changed", &registration("changed")).await;
    op.put("removed", &registration("removed")).await;
    eventually(30, "three resources", || async {
        let list = op
            .external_services()
            .list(&Default::default())
            .await
            .ok()?;
        (list.items.len() == 3).then_some(())
    })
    .await;

    cp.stop_apiserver().await;
    let mut changed = registration("changed");
    changed["spec"]["endpoints"] = json!([{"address": "198.51.100.7"}]);
    assert_eq!(op.put("changed", &changed).await, StatusCode::OK);
    assert_eq!(op.delete("removed").await, StatusCode::OK);
    for i in 0..5 {
        let name = format!("added-{i}");
        assert_eq!(
            op.put(&name, &registration(&name)).await,
            StatusCode::CREATED
        );
    }
    let (_, pending) = op.get("changed").await;
    assert_eq!(pending["metadata"]["generation"], 2);
    assert_eq!(
        pending["status"]["mirroredGeneration"], 1,
        "not in the cluster yet"
    );
    cp.start_apiserver().await;

    eventually(90, "every write in the cluster", || async {
        let list = op
            .external_services()
            .list(&Default::default())
            .await
            .ok()?;
        let mut names: Vec<_> = list.items.iter().map(|cr| cr.name_any()).collect();
        names.sort();
        let changed = list.items.iter().find(|cr| cr.name_any() == "changed")?;
        let expected = [
            "added-0", "added-1", "added-2", "added-3", "added-4", "changed", "kept",
        ];
        (names == expected && changed.spec.endpoints[0].address == "198.51.100.7").then_some(())
    })
    .await;
    eventually(60, "the new ones reconciled", || async {
        for i in 0..5 {
            if op.slices_of(&format!("added-{i}")).await.is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    eventually(30, "the API to show generation 2 mirrored", || async {
        let (_, doc) = op.get("changed").await;
        (doc["status"]["mirroredGeneration"] == 2).then_some(())
    })
    .await;
    op.stop().await;
}

/// An API server that accepts connections and then never answers (a peer that vanished
/// without closing them, as in a partition): every request fails after the client's
/// read timeout instead of holding its caller forever. Time is paused and advances by
/// itself whenever nothing else can run, so the two minutes pass at once.
#[tokio::test(start_paused = true)]
async fn a_request_to_an_api_server_that_stopped_answering_fails_instead_of_hanging() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let client = extsvc::k8s::client::client(kube::Config::new(url.parse().unwrap())).unwrap();
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client);

    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(3600),
        namespaces.list(&Default::default()),
    )
    .await
    .expect("the request ends within the hour");
    assert!(answer.is_err(), "{answer:?}");
    let waited = started.elapsed().as_secs();
    assert!((120..=130).contains(&waited), "gave up after {waited} s");
}
