//! What the probe engine costs: probes a second and CPU per probe, and what holding many
//! targets costs in CPU and memory.
//!
//! Run by bench/probe.sh, which starts nginx on many loopback addresses and compares with
//! blackbox_exporter. One mode per process, so that peak memory is this mode's own:
//!
//! - `MODE=throughput`: TARGETS checks of kind CHECK (`http` or `tcp`) with a 1 s period,
//!   more than the engine can run, so it runs flat out; after WARMUP seconds, counts the
//!   probes finished in DURATION seconds and the process's CPU time over the same window.
//! - `MODE=hold`: TARGETS HTTP checks with a PERIOD s period; after WARMUP seconds, the
//!   CPU used over DURATION seconds as a share of one core, and the peak resident memory.
//!
//! Targets go to PORT on 127.0.0.1..127.0.0.ADDRESSES (many destinations, so that
//! connections in TIME_WAIT do not run out of ports), PER_SERVICE addresses per service,
//! CHECKS checks per address. MAX_IN_FLIGHT bounds concurrent probes. PUBLISH (seconds,
//! 0 = never) drains the changed reports and serialises them as the publisher would before
//! writing them to PostgreSQL, to show what that costs. RUNTIME is `multi` (default, as in
//! `extsvc serve`) or `current` (one thread). NGINX_PIDS lets the result show the server's
//! CPU and the machine's load from other processes over the same window.
//!
//! The last line is `RESULT key=value ...` for the script; probes are counted from the
//! engine's own `extsvc_probe_results_total` (successes and others apart), and the engine's
//! reports are checked at the end: every check's last probe should have succeeded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use extsvc::domain::{AddressPolicy, DnsLabel, PortName, ServiceKey, ServiceName, ServiceSpec};
use extsvc::metrics::{Exposition, Metrics};
use extsvc::probe::{DEFAULT_MAX_IN_FLIGHT, Dialer, Engine, ProbedAddress, Tls, probe_targets};
use extsvc::resource::{ExternalServiceSpec, ProbeResult};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn env<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={value}: {e}")),
        Err(_) => Ok(default),
    }
}

/// User and system CPU time of this process.
fn cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// CPU seconds the whole machine spent busy (user, nice, system, irq, softirq), so
/// that load from other processes shows next to the figures.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|i| ticks.get(*i))
        .sum::<f64>()
        / clock_ticks()
}

/// utime + stime of other processes (nginx), in seconds.
fn processes_cpu(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command, which may hold spaces: state is field 3, utime 14.
            let rest = stat.rsplit_once(") ")?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / clock_ticks()
}

/// A line of /proc/self/status in MiB (`VmHWM`, `VmRSS`).
fn memory_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Probes finished so far, by `check/outcome`.
fn probe_counts(metrics: &Metrics) -> anyhow::Result<HashMap<String, f64>> {
    let text = metrics.encode(Exposition::Prometheus)?;
    let mut counts = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("extsvc_probe_results_total{"))
    {
        let check = line.split('"').nth(1).unwrap_or_default();
        let outcome = line.split('"').nth(3).unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().unwrap_or_default().parse()?;
        *counts.entry(format!("{check}/{outcome}")).or_default() += value;
    }
    Ok(counts)
}

fn delta(after: &HashMap<String, f64>, before: &HashMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// One validated spec with `checks` identical checks; its endpoint is a placeholder
/// (validation refuses loopback), the probed addresses are given to `probe_targets`.
fn spec(check: &str, checks: usize, port: u16, period: u64) -> anyhow::Result<ServiceSpec> {
    let probe = match check {
        "http" => json!({"http": {"port": "web", "path": "/"}}),
        "tcp" => json!({"tcp": {"port": "web"}}),
        other => anyhow::bail!("CHECK={other}: http or tcp"),
    };
    let health_checks: Vec<serde_json::Value> = (0..checks)
        .map(|i| {
            let mut health_check =
                json!({"name": format!("up{i}"), "periodSeconds": period, "timeoutSeconds": 1});
            if let (Some(o), Some(p)) = (health_check.as_object_mut(), probe.as_object()) {
                o.extend(p.clone());
            }
            health_check
        })
        .collect();
    let wire: ExternalServiceSpec = serde_json::from_value(json!({
        "ports": [{"name": "web", "port": port}],
        "endpoints": [{"address": "192.0.2.1"}],
        "healthChecks": health_checks,
    }))?;
    ServiceSpec::parse(&wire).map_err(|e| anyhow::anyhow!("invalid bench spec: {e:?}"))
}

// The engine runs its probes on a thread of its own; this runtime only drives the
// measurement, as `extsvc serve`'s runs the other roles.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

async fn run() -> anyhow::Result<()> {
    let mode: String = env("MODE", "throughput".to_owned())?;
    let hold = match mode.as_str() {
        "throughput" => false,
        "hold" => true,
        other => anyhow::bail!("MODE={other}: throughput or hold"),
    };
    let check: String = env("CHECK", "http".to_owned())?;
    let port: u16 = env("PORT", 8080)?;
    let targets: usize = env("TARGETS", if hold { 30_000 } else { 40_000 })?;
    let period: u64 = env("PERIOD", if hold { 10 } else { 1 })?;
    let addresses: usize = env("ADDRESSES", 250_usize)?.clamp(1, 254);
    let per_service: usize = env("PER_SERVICE", 10_usize)?.clamp(1, addresses);
    let max_in_flight: usize = env("MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)?;
    let warmup: u64 = env("WARMUP", if hold { 20 } else { 3 })?;
    let seconds: u64 = env("DURATION", if hold { 60 } else { 10 })?;
    let publish: u64 = env("PUBLISH", 0)?;

    let checks_per_address: usize = env("CHECKS", 1_usize)?.clamp(1, 16);
    let spec = spec(&check, checks_per_address, port, period)?;
    let ports: BTreeSet<PortName> = [PortName::parse("web")?].into();
    let metrics = Metrics::default();
    let shutdown = CancellationToken::new();
    // Nothing here acts on readiness changes; a dropped receiver makes the engine's
    // wake-ups fail silently instead of queueing.
    // The backends are on loopback, which the default address policy denies.
    let dialer = Dialer {
        tls: Tls::from_system_roots()?,
        policy: std::sync::Arc::new(
            AddressPolicy::parse(Some("none"), None).map_err(std::io::Error::other)?,
        ),
    };
    let (engine, _) = Engine::start(dialer, max_in_flight, metrics.clone(), shutdown.clone())?;

    let namespace = DnsLabel::parse("bench")?;
    let mut keys = Vec::new();
    // TARGETS counts checks; each address carries CHECKS of them.
    let wanted_addresses = targets.div_ceil(checks_per_address);
    let mut next = 0;
    while next < wanted_addresses {
        let count = per_service.min(wanted_addresses - next);
        let ips: Vec<IpAddr> = (next..next + count)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % addresses) as u8)))
            .collect();
        let key = ServiceKey {
            namespace: namespace.clone(),
            name: ServiceName::parse(&format!("s{}", keys.len()))?,
        };
        let wanted = probe_targets(
            &spec,
            ips.iter().map(|ip| ProbedAddress {
                ip: *ip,
                resolved_from: None,
                ports: &ports,
            }),
        );
        engine.set_targets(&key, ips, wanted, &BTreeMap::new());
        keys.push(key);
        next += count;
    }
    let targets = wanted_addresses * checks_per_address;
    eprintln!(
        "{mode}: {targets} {check} targets ({checks_per_address} per address) in {} services on {addresses} addresses, period {period}s, max in flight {max_in_flight}, publish {publish}s",
        keys.len()
    );

    // The publisher's work, minus the database: changed reports built and serialised,
    // those only probed again every 15th round (as src/probe/publisher.rs).
    let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    if publish > 0 {
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        let published = published.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(publish));
            for round in 1u32.. {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let reports = engine.take_changed_reports(round % 15 == 0);
                let bytes: usize = reports
                    .iter()
                    .map(|r| serde_json::to_vec(r).map_or(0, |v| v.len()))
                    .sum();
                let _ = engine.take_transitions();
                published.fetch_add(reports.len() as u64, std::sync::atomic::Ordering::Relaxed);
                std::hint::black_box(bytes);
            }
        });
    }

    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let nginx: Vec<u32> = env("NGINX_PIDS", String::new())?
        .split([' ', ','])
        .filter_map(|p| p.parse().ok())
        .collect();
    let (busy_0, nginx_0) = (machine_busy(), processes_cpu(&nginx));
    let (counts_0, cpu_0, wall_0) = (probe_counts(&metrics)?, cpu(), Instant::now());
    let published_0 = published.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    // CPU first: encoding the metrics (thousands of series) is the benchmark's work.
    let (cpu_1, wall) = (cpu(), wall_0.elapsed());
    let counts_1 = probe_counts(&metrics)?;
    let (busy, nginx_cpu) = (machine_busy() - busy_0, processes_cpu(&nginx) - nginx_0);
    let published = published.load(std::sync::atomic::Ordering::Relaxed) - published_0;
    shutdown.cancel();

    let window = delta(&counts_1, &counts_0);
    let probes: f64 = window.values().sum();
    let successes: f64 = window
        .iter()
        .filter(|(k, _)| **k == format!("{check}/success"))
        .map(|(_, v)| v)
        .sum();
    let cpu_seconds = (cpu_1 - cpu_0).as_secs_f64();
    let wall = wall.as_secs_f64();

    // The engine's own view: every check should have succeeded last time and never failed.
    let (mut checks, mut ok) = (0, 0);
    for key in &keys {
        for address in engine.report(key).map(|r| r.addresses).unwrap_or_default() {
            for c in address.checks {
                checks += 1;
                ok += usize::from(
                    c.last_result == Some(ProbeResult::Success) && c.consecutive_failures == 0,
                );
            }
        }
    }

    eprintln!("outcomes in the window: {window:?}");
    eprintln!(
        "{probes:.0} probes in {wall:.1}s = {:.0}/s ({:.0}/s due); CPU {cpu_seconds:.2}s = {:.1}% of a core, {:.4} ms per probe; {ok}/{checks} checks last succeeded; peak RSS {:.1} MiB",
        probes / wall,
        targets as f64 / period as f64,
        100.0 * cpu_seconds / wall,
        1000.0 * cpu_seconds / probes.max(1.0),
        memory_mib("VmHWM"),
    );
    println!(
        "RESULT mode={mode} check={check} targets={targets} checks_per_address={checks_per_address} services={} period={period} per_service={per_service} max_in_flight={max_in_flight} publish={publish} \
         probes={probes:.0} successes={successes:.0} seconds={wall:.3} rate={:.1} due_rate={:.1} cpu_seconds={cpu_seconds:.3} \
         cpu_ms_per_probe={:.4} core_percent={:.2} checks={checks} checks_ok={ok} reports_published={published} \
         rss_peak_mib={:.1} rss_mib={:.1} nginx_cpu_seconds={nginx_cpu:.3} machine_busy_cores={:.3} others_cores={:.3}",
        keys.len(),
        probes / wall,
        targets as f64 / period as f64,
        1000.0 * cpu_seconds / probes.max(1.0),
        100.0 * cpu_seconds / wall,
        memory_mib("VmHWM"),
        memory_mib("VmRSS"),
        busy / wall,
        (busy - cpu_seconds - nginx_cpu).max(0.0) / wall,
    );
    Ok(())
}
