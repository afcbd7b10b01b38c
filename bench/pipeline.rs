//! How soon a pipeline learns that its backend is ready, and what open event streams cost.
//!
//! Run by bench/pipeline.sh, which starts PostgreSQL, a control plane and `extsvc serve`.
//! Part 1 registers one service whose backend (on a test host in a network namespace)
//! answers its health check with 503, then RUNS times: turns the backend healthy and
//! measures until `extsvc wait --for ready` returns, and, side by side, until a client
//! polling `/health` once a second (the peer) sees it ready; then turns it unhealthy and
//! waits for that to show. Part 2 opens STREAMS event streams and reads the server's
//! memory and CPU time (from /proc, SERVER_PID) before, with them open and idle for
//! IDLE_SECONDS, and after.

#[path = "../tests/support/netns.rs"]
mod netns;
// Shared with the tests, which use all of it.
#[allow(dead_code)]
#[path = "../tests/operator/backend.rs"]
mod backend;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};

/// The health check's period: the goal is to be back within it plus 100 ms.
const PERIOD: Duration = Duration::from_secs(1);

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

struct Server {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Server {
    fn item(&self, namespace: &str, name: &str) -> String {
        format!(
            "{}/api/v1/namespaces/{namespace}/external-services/{name}",
            self.base
        )
    }

    async fn json(&self, url: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?)
    }

    /// Ready addresses, as `/health` says.
    async fn health_ready(&self, namespace: &str, name: &str) -> anyhow::Result<(u64, u64)> {
        let health = self
            .json(&format!("{}/health", self.item(namespace, name)))
            .await?;
        Ok((
            health["readyAddresses"].as_u64().unwrap_or(0),
            health["totalAddresses"].as_u64().unwrap_or(0),
        ))
    }
}

/// The peer: polls `/health` once a second until every address is ready.
async fn poll_until_ready(api: &Server, namespace: &str, name: &str) -> anyhow::Result<()> {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let (ready, total) = api.health_ready(namespace, name).await?;
        if total > 0 && ready == total {
            return Ok(());
        }
    }
}

/// `extsvc wait`, the real binary.
async fn cli_wait(api: &Server, namespace: &str, name: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(env("EXTSVC_BIN", "target/release/extsvc"))
        .args([
            "wait",
            name,
            "-n",
            namespace,
            "--for",
            "ready",
            "--timeout",
            "60s",
        ])
        .env("EXTSVC_SERVER", &api.base)
        .env("EXTSVC_TOKEN", &api.token)
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "extsvc wait ended with {status}");
    Ok(())
}

/// The server's resident memory (kB) and CPU time (clock ticks) so far.
fn usage(pid: &str) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    Ok((rss, ticks))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let api = Server {
        http: reqwest::Client::new(),
        base: env("EXTSVC_URL", "http://127.0.0.1:8080"),
        token: env("EXTSVC_TOKEN", ""),
    };
    let namespace = env("BENCH_NAMESPACE", "bench-pipeline");
    let runs: usize = env("RUNS", "100").parse()?;
    let streams: usize = env("STREAMS", "1000").parse()?;
    let idle = Duration::from_secs(env("IDLE_SECONDS", "30").parse()?);

    let kube = kube::Client::try_default().await?;
    let namespaces: Api<Namespace> = Api::all(kube);
    let _ = namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(namespace.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await;

    // Part 1: wait latency.
    let hosts = netns::TestHosts::create(1);
    let backend = backend::Backend::start(&hosts, hosts.ips[0], 0, 503);
    let name = "wait-bench";
    let registration = json!({
        "metadata": {"name": name},
        "spec": {
            "ports": [{"name": "http", "port": backend.address.port()}],
            "endpoints": [{"address": backend.address.ip().to_string()}],
            "healthChecks": [{"name": "up", "http": {"port": "http", "path": "/healthz"},
                              "periodSeconds": PERIOD.as_secs(), "timeoutSeconds": 1,
                              "successThreshold": 1, "failureThreshold": 1}]
        }
    });
    let put = api
        .http
        .put(api.item(&namespace, name))
        .bearer_auth(&api.token)
        .json(&registration)
        .send()
        .await?;
    anyhow::ensure!(put.status().is_success(), "register: {}", put.status());

    let (mut waited, mut polled) = (Vec::new(), Vec::new());
    for run in 0..runs {
        // Not ready, as the status and the health API both say, before each run.
        backend.set_status(503);
        loop {
            let document = api.json(&api.item(&namespace, name)).await?;
            let (health_ready, _) = api.health_ready(&namespace, name).await?;
            if document["status"]["readyAddresses"] == 0
                && document["status"]["observedGeneration"] == 1
                && health_ready == 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (wait, poll) = (
            tokio::spawn({
                let api = Server {
                    http: api.http.clone(),
                    base: api.base.clone(),
                    token: api.token.clone(),
                };
                let namespace = namespace.clone();
                async move { cli_wait(&api, &namespace, name).await }
            }),
            tokio::spawn({
                let api = Server {
                    http: api.http.clone(),
                    base: api.base.clone(),
                    token: api.token.clone(),
                };
                let namespace = namespace.clone();
                async move { poll_until_ready(&api, &namespace, name).await }
            }),
        );
        // Let the CLI start and its long poll arrive (a new process), and put the
        // peer's polls at a random phase of the probe period.
        tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(0..1000))).await;
        let healthy_at = Instant::now();
        backend.set_status(200);
        let (wait, poll) = tokio::join!(
            async {
                wait.await??;
                anyhow::Ok(healthy_at.elapsed())
            },
            async {
                poll.await??;
                anyhow::Ok(healthy_at.elapsed())
            }
        );
        waited.push(wait?);
        polled.push(poll?);
        if (run + 1) % 10 == 0 {
            eprintln!("{} runs", run + 1);
        }
    }
    waited.sort();
    polled.sort();
    let (w50, w99) = (percentile(&waited, 50.0), percentile(&waited, 99.0));
    let (p50, p99) = (percentile(&polled, 50.0), percentile(&polled, 99.0));
    println!(
        "backend healthy -> ready, over {runs} runs (probe period {}):",
        ms(PERIOD)
    );
    println!(
        "  extsvc wait:            p50 {} / p99 {}",
        ms(w50),
        ms(w99)
    );
    println!(
        "  peer (polls /health 1/s): p50 {} / p99 {}",
        ms(p50),
        ms(p99)
    );
    println!(
        "  wait / peer: p50 {:.2} / p99 {:.2}; goal p99 < {} (one period + 100 ms): {}",
        w50.as_secs_f64() / p50.as_secs_f64(),
        w99.as_secs_f64() / p99.as_secs_f64(),
        ms(PERIOD + Duration::from_millis(100)),
        if w99 < PERIOD + Duration::from_millis(100) {
            "met"
        } else {
            "missed"
        }
    );

    // Part 2: idle event streams.
    let Ok(pid) = std::env::var("SERVER_PID") else {
        return Ok(());
    };
    let quiet_start = usage(&pid)?;
    tokio::time::sleep(idle).await;
    let before = usage(&pid)?;
    let url = format!("{}/events", api.item(&namespace, name));
    let mut open = Vec::new();
    for _ in 0..streams {
        // A connection each, as browsers and CI jobs would have.
        let client = reqwest::Client::new();
        let response = client.get(&url).bearer_auth(&api.token).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "stream: {}",
            response.status()
        );
        let mut body = response.bytes_stream();
        // The first chunk (`retry:`) says the stream is set up.
        body.next().await;
        open.push((client, body));
    }
    let opened = usage(&pid)?;
    tokio::time::sleep(idle).await;
    let idled = usage(&pid)?;
    let ticks_per_second = 100.0;
    drop(open);
    println!(
        "{streams} open event streams, idle for {} s:",
        idle.as_secs()
    );
    println!(
        "  server memory: {} MB before, {} MB with them open (+{:.1} MB; goal under 50 MB)",
        before.0 / 1024,
        opened.0 / 1024,
        (opened.0.saturating_sub(before.0)) as f64 / 1024.0
    );
    let share = |ticks: u64| 100.0 * ticks as f64 / ticks_per_second / idle.as_secs_f64();
    println!(
        "  server CPU, {} s idle: {:.2}% of one core without streams, {:.2}% with them",
        idle.as_secs(),
        share(before.1 - quiet_start.1),
        share(idled.1 - opened.1)
    );
    Ok(())
}
