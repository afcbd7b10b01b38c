//! How fast a registration reaches the cluster, and what it costs the API server.
//!
//! Run by bench/operator.sh, which starts PostgreSQL, a control plane and `extsvc serve`.
//! Registers COUNT services through the REST API (CONCURRENCY at a time, at most RATE a
//! second when RATE is set, else as fast as the API takes them), measures for
//! each the time from the API's 201 to its first EndpointSlice seen by a watch, counts the
//! server's writes to Kubernetes per service (its /metrics), then waits QUIET_SECONDS and
//! checks that an unchanged world made no writes at all.
//!
//! With MODE=ceiling it measures the peer instead: the API server's own ceiling for
//! server-side applies of EndpointSlices like the controller's, COUNT of them at
//! CONCURRENCY (32, the controller's) in flight, so a burst's services per second can be
//! read against the writes per second this machine's API server can take at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The server's writes to Kubernetes so far, by kind.
async fn writes(http: &reqwest::Client, api: &str) -> anyhow::Result<HashMap<String, f64>> {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut by_kind = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("extsvc_kubernetes_writes_total{"))
    {
        let kind = line.split('"').nth(1).unwrap_or_default().to_owned();
        let operation = line.split('"').nth(3).unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().unwrap_or_default().parse()?;
        *by_kind.entry(format!("{kind} {operation}")).or_default() += value;
    }
    Ok(by_kind)
}

fn total(writes: &HashMap<String, f64>) -> f64 {
    writes.values().sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Server-side applies `count` new EndpointSlices, `concurrency` at a time; returns
/// applies per second.
async fn apply_ceiling(
    slices: Api<EndpointSlice>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
        .map(|i| {
            let slices = slices.clone();
            async move {
                let name = format!("ceiling-{i:05}");
                let slice = serde_json::json!({
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP"},
                              {"name": "metrics", "port": 9100, "protocol": "TCP"}],
                    "endpoints": [{"addresses": [format!("198.51.100.{}", 1 + i % 250)], "conditions": {"ready": true}},
                                  {"addresses": ["192.0.2.10"], "conditions": {"ready": true}}]
                });
                let params = PatchParams::apply("extsvc-bench").force();
                slices.patch(&name, &params, &Patch::Apply(&slice)).await?;
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let api = env("EXTSVC_URL", "http://127.0.0.1:8080");
    let namespace = env("BENCH_NAMESPACE", "bench");
    let count: usize = env("COUNT", "1000").parse()?;
    let ceiling = env("MODE", "operator") == "ceiling";
    let concurrency: usize = env("CONCURRENCY", if ceiling { "32" } else { "4" }).parse()?;
    let quiet: u64 = env("QUIET_SECONDS", "30").parse()?;
    let rate: f64 = env("RATE", "0").parse()?;
    let client = kube::Client::try_default().await?;
    // The platform admin's token the script gave the server.
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", env("EXTSVC_ADMIN_TOKEN", ""));
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse()?);
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let fresh = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    if namespaces.get_opt(&namespace).await?.is_none() {
        namespaces.create(&PostParams::default(), &fresh).await?;
    }

    if ceiling {
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
        let per_second = apply_ceiling(slices, count, concurrency).await?;
        println!(
            "API server ceiling: {per_second:.0} server-side applies/s of new EndpointSlices, {concurrency} in flight"
        );
        return Ok(());
    }

    // First sighting of each service's EndpointSlice.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let watch_seen = seen.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(
            watcher(slices, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while let Some(event) = events.next().await {
            if let Ok(slice) = event
                && let Some(service) = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                && let Ok(mut seen) = watch_seen.lock()
            {
                seen.entry(service.clone()).or_insert_with(Instant::now);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    let writes_before = writes(&http, &api).await?;
    let started = Instant::now();
    let pace = (rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
    let starts = futures::stream::unfold((0..count, pace), |(mut ids, mut pace)| async move {
        let id = ids.next()?;
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        Some((id, (ids, pace)))
    });
    let registered: HashMap<String, Instant> = starts
        .map(|i| {
            let (http, api, namespace) = (http.clone(), api.clone(), namespace.clone());
            async move {
                let name = format!("svc-{i:05}");
                let body = serde_json::json!({
                    "metadata": {"name": name, "labels": {"bench": "operator"}},
                    "spec": {
                        "ports": [{"name": "https", "port": 443}, {"name": "metrics", "port": 9100}],
                        "endpoints": [{"address": format!("198.51.100.{}", 1 + i % 250)}, {"address": "192.0.2.10"}]
                    }
                });
                let url = format!("{api}/api/v1/namespaces/{namespace}/external-services");
                let response = http.post(url).json(&body).send().await?;
                anyhow::ensure!(response.status() == reqwest::StatusCode::CREATED, "{name}: {}", response.status());
                Ok::<_, anyhow::Error>((name, Instant::now()))
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let registering = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = seen
            .lock()
            .map(|s| registered.keys().filter(|n| s.contains_key(*n)).count())
            .unwrap_or(0);
        if done == count {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {count} slices after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_published = started.elapsed();
    // Let statuses and the last watch events settle before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes_after = writes(&http, &api).await?;
    tokio::time::sleep(Duration::from_secs(quiet)).await;
    let writes_quiet = total(&writes(&http, &api).await?) - total(&writes_after);

    let mut latencies: Vec<Duration> = {
        let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        registered
            .iter()
            .map(|(name, at)| seen[name].saturating_duration_since(*at))
            .collect()
    };
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let offered = if rate > 0.0 {
        format!("at most {rate}/s")
    } else {
        "as fast as accepted".to_owned()
    };
    println!(
        "extsvc operator benchmark: {count} services, {concurrency} registrations in flight, {offered}, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "registration to EndpointSlice: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 100.0))
    );
    let write_rate = (total(&writes_after) - total(&writes_before)) / all_published.as_secs_f64();
    println!(
        "registered in {:.1} s ({:.0}/s); every slice published after {:.1} s ({:.0} services/s, {write_rate:.0} writes/s{})",
        registering.as_secs_f64(),
        count as f64 / registering.as_secs_f64(),
        all_published.as_secs_f64(),
        count as f64 / all_published.as_secs_f64(),
        match env("API_SERVER_CEILING", "").parse::<f64>() {
            Ok(ceiling) => format!(" = {:.2} of the API server's ceiling", write_rate / ceiling),
            Err(_) => String::new(),
        }
    );
    let mut kinds: Vec<_> = writes_after
        .iter()
        .map(|(kind, after)| {
            (
                kind.clone(),
                (after - writes_before.get(kind).copied().unwrap_or(0.0)) / count as f64,
            )
        })
        .filter(|(_, per_service)| *per_service > 0.0)
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    let breakdown: Vec<_> = kinds
        .iter()
        .map(|(kind, n)| format!("{kind} {n:.2}"))
        .collect();
    println!(
        "writes to the API server per service: {:.2} ({})",
        (total(&writes_after) - total(&writes_before)) / count as f64,
        breakdown.join(", ")
    );
    println!("writes during {quiet} s of quiet afterwards: {writes_quiet}");
    anyhow::ensure!(writes_quiet == 0.0, "an unchanged world made writes");
    Ok(())
}
