//! The cluster's own addresses, read from the cluster for the address policy: the
//! Service ranges (`ServiceCIDR` objects) and the API server's addresses (the slices of
//! `default/kubernetes`). Pod ranges are not published by the API; `--cluster-cidrs`
//! gives them.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

use crate::domain::AddressPolicy;

/// How often the ranges are read again.
const REFRESH: Duration = Duration::from_secs(60);
/// How long a starting replica waits for them.
const FIRST_READ: Duration = Duration::from_secs(10);

/// Reads the ranges into `policy`, replacing what it learned before.
pub async fn learn(client: &kube::Client, policy: &AddressPolicy) -> Result<(), kube::Error> {
    let mut ranges = Vec::new();
    let cidrs = Api::<ServiceCIDR>::all(client.clone())
        .list(&ListParams::default())
        .await;
    match cidrs {
        Ok(list) => ranges.extend(list.items.into_iter().flat_map(|cidr| {
            let name = cidr.metadata.name.unwrap_or_default();
            let nets = cidr.spec.and_then(|spec| spec.cidrs).unwrap_or_default();
            nets.into_iter().filter_map(move |net| {
                Some((
                    net.parse::<IpNet>().ok()?,
                    format!("the cluster's Services, ServiceCIDR {name}"),
                ))
            })
        })),
        // Before Kubernetes 1.33 there are none; --cluster-cidrs says it instead.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(error),
    }
    let api_server = ListParams::default().labels("kubernetes.io/service-name=kubernetes");
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&api_server)
        .await?;
    ranges.extend(
        slices
            .items
            .iter()
            .flat_map(|slice| &slice.endpoints)
            .flat_map(|endpoint| &endpoint.addresses)
            .filter_map(|address| address.parse::<IpAddr>().ok())
            .map(|ip| (IpNet::from(ip), "the cluster's API server".to_owned())),
    );
    policy.learn(ranges);
    Ok(())
}

/// The first read, as a replica starts: bounded, and only logged when it fails (the
/// next read is a minute away).
pub async fn learn_at_start(client: &kube::Client, policy: &AddressPolicy) {
    match tokio::time::timeout(FIRST_READ, learn(client, policy)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(error = %crate::telemetry::chain(&error), "could not read the cluster's address ranges yet");
        }
        Err(_) => tracing::warn!("the cluster's address ranges did not arrive within 10 s"),
    }
}

/// Reads the ranges again every minute until `shutdown`; a failed read keeps the last.
pub async fn keep_learning(
    client: kube::Client,
    policy: AddressPolicy,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFRESH) => {}
        }
        if let Err(error) = learn(&client, &policy).await {
            tracing::warn!(error = %crate::telemetry::chain(&error), "could not read the cluster's address ranges; keeping the last");
        }
    }
}
