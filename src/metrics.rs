//! Prometheus metrics, served at `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::ServiceKey;

/// Enums whose variants are label values, written in lower snake case as Prometheus
/// convention has them (`outcome="error"`), not as the variant is named.
macro_rules! label_values {
    ($type:ty { $($variant:ident => $value:literal),+ $(,)? }) => {
        impl $type {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value),+
                }
            }
        }

        impl EncodeLabelValue for $type {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

/// Kinds of object this process writes to Kubernetes.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Kind {
    ExternalService,
    ExternalServiceStatus,
    Service,
    EndpointSlice,
    Endpoints,
    Ingress,
}

label_values!(Kind {
    ExternalService => "external_service",
    ExternalServiceStatus => "external_service_status",
    Service => "service",
    EndpointSlice => "endpoint_slice",
    Endpoints => "endpoints",
    Ingress => "ingress",
});

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Delete,
}

label_values!(Operation {
    Apply => "apply",
    Delete => "delete",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: Kind,
    pub operation: Operation,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Result {
    Ok,
    Error,
}

label_values!(Result {
    Ok => "ok",
    Error => "error",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub result: Result,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `http`, `https`, `tcp` or `grpc`.
    pub check: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeResultLabels {
    pub check: &'static str,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The backend answered, unhealthy (a status, NOT_SERVING).
    Failure,
    Timeout,
    /// No answer: refused, reset, TLS.
    Error,
}

label_values!(Outcome {
    Success => "success",
    Failure => "failure",
    Timeout => "timeout",
    Error => "error",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub namespace: String,
    pub name: String,
}

/// Every metric of the process, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    writes: Family<WriteLabels, Counter>,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Histogram,
    probe_duration: Family<ProbeLabels, Histogram>,
    probe_results: Family<ProbeResultLabels, Counter>,
    ready_addresses: Family<ServiceLabels, Gauge>,
    addresses: Family<ServiceLabels, Gauge>,
    unknown_registrations: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("extsvc");
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "kubernetes_writes",
            "Writes sent to the Kubernetes API",
            writes.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of ExternalServices, by result",
            reconciles.clone(),
        );
        // Known label sets start at zero, so that rates over them are defined from the
        // first scrape rather than from the first write.
        for kind in [
            Kind::ExternalService,
            Kind::ExternalServiceStatus,
            Kind::Service,
            Kind::EndpointSlice,
            Kind::Endpoints,
            Kind::Ingress,
        ] {
            for operation in [Operation::Apply, Operation::Delete] {
                drop(writes.get_or_create(&WriteLabels { kind, operation }));
            }
        }
        for result in [Result::Ok, Result::Error] {
            drop(reconciles.get_or_create(&ReconcileLabels { result }));
        }
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one ExternalService",
            reconcile_duration.clone(),
        );
        let probe_duration = Family::<ProbeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "probe_duration_seconds",
            "Time a health probe took, by kind of check",
            probe_duration.clone(),
        );
        let probe_results = Family::<ProbeResultLabels, Counter>::default();
        registry.register(
            "probe_results",
            "Health probes, by kind of check and outcome",
            probe_results.clone(),
        );
        let ready_addresses = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "service_ready_addresses",
            "Addresses of a service that are ready",
            ready_addresses.clone(),
        );
        let addresses = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "service_addresses",
            "Addresses a service publishes",
            addresses.clone(),
        );
        let unknown_registrations = Gauge::default();
        registry.register(
            "mirror_unknown_registrations",
            "ExternalServices that carry a registration this database does not know (kept)",
            unknown_registrations.clone(),
        );
        Self {
            registry: Arc::new(registry),
            writes,
            reconciles,
            reconcile_duration,
            probe_duration,
            probe_results,
            ready_addresses,
            addresses,
            unknown_registrations,
        }
    }
}

impl Metrics {
    pub fn count_write(&self, kind: Kind, operation: Operation) {
        self.writes
            .get_or_create(&WriteLabels { kind, operation })
            .inc();
    }

    pub fn observe_probe(&self, check: &'static str, outcome: Outcome, duration: Duration) {
        self.probe_duration
            .get_or_create(&ProbeLabels { check })
            .observe(duration.as_secs_f64());
        self.probe_results
            .get_or_create(&ProbeResultLabels { check, outcome })
            .inc();
    }

    pub fn set_addresses(&self, service: &ServiceKey, ready: usize, total: usize) {
        let labels = service_labels(service);
        self.ready_addresses
            .get_or_create(&labels)
            .set(ready as i64);
        self.addresses.get_or_create(&labels).set(total as i64);
    }

    pub fn forget_service(&self, service: &ServiceKey) {
        let labels = service_labels(service);
        self.ready_addresses.remove(&labels);
        self.addresses.remove(&labels);
    }

    /// Drops every per-service gauge: a replica that stops leading stops probing, and
    /// must not go on exporting its last counts beside the new leader's.
    pub fn forget_services(&self) {
        self.ready_addresses.clear();
        self.addresses.clear();
    }

    pub fn set_unknown_registrations(&self, count: usize) {
        self.unknown_registrations.set(count as i64);
    }

    /// Times a reconcile until the returned guard is dropped.
    pub fn time_reconcile(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
            result: Result::Error,
        }
    }

    /// Every metric, in the given text format.
    pub fn encode(&self, format: Exposition) -> std::result::Result<String, std::fmt::Error> {
        let mut text = String::new();
        match format {
            Exposition::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?
            }
            Exposition::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)?
            }
        }
        Ok(text)
    }
}

/// The text formats of `/metrics`. They differ where tools notice: OpenMetrics names a
/// counter's family without `_total` and ends with `# EOF`, so a body must be declared
/// as what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// The Prometheus text format 0.0.4, which every scraper reads.
    Prometheus,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl Exposition {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it ranks OpenMetrics 1.0.0
    /// above plain text (as Prometheus does), the classic format otherwise, on a tie,
    /// and without the header.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let mut openmetrics = Preference::default();
        let mut text = Preference::default();
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let mut quality = 1.0_f32;
            let mut version = None;
            for parameter in parts {
                let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    // An unreadable weight refuses the range rather than guessing.
                    "q" => quality = value.parse().unwrap_or(0.0),
                    "version" => version = Some(value.to_owned()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if matches!(version.as_deref(), None | Some("1.0.0")) =>
                {
                    openmetrics.exact(quality)
                }
                // Any version of plain text: 1.0.0 only adds UTF-8 names, which we do not use.
                "text/plain" => text.exact(quality),
                "text/*" => text.wildcard(quality),
                "application/*" => openmetrics.wildcard(quality),
                "*/*" => {
                    text.wildcard(quality);
                    openmetrics.wildcard(quality);
                }
                _ => {}
            }
        }
        if openmetrics.quality() > text.quality() {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }
}

/// How much an `Accept` header wants one format: a range that names it outranks any
/// wildcard that merely covers it.
#[derive(Default)]
struct Preference {
    exact: Option<f32>,
    wildcard: Option<f32>,
}

impl Preference {
    fn exact(&mut self, quality: f32) {
        self.exact = Some(self.exact.map_or(quality, |q| q.max(quality)));
    }

    fn wildcard(&mut self, quality: f32) {
        self.wildcard = Some(self.wildcard.map_or(quality, |q| q.max(quality)));
    }

    fn quality(&self) -> f32 {
        self.exact.or(self.wildcard).unwrap_or(0.0)
    }
}

fn service_labels(service: &ServiceKey) -> ServiceLabels {
    ServiceLabels {
        namespace: service.namespace.to_string(),
        name: service.name.to_string(),
    }
}

/// Records one reconcile's duration and result when dropped; an early return counts as
/// an error unless `succeeded` was called.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
    result: Result,
}

impl ReconcileTimer<'_> {
    pub fn succeeded(&mut self) {
        self.result = Result::Ok;
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                result: self.result,
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DnsLabel, ServiceName};

    #[test]
    fn a_replica_that_stops_leading_exports_no_service_gauges() {
        let metrics = Metrics::default();
        let key = ServiceKey {
            namespace: DnsLabel::parse("payments").unwrap(),
            name: ServiceName::parse("billing-db").unwrap(),
        };
        metrics.set_addresses(&key, 1, 2);
        let text = metrics.encode(Exposition::Prometheus).unwrap();
        assert!(
            text.contains(
                r#"extsvc_service_ready_addresses{namespace="payments",name="billing-db"} 1"#
            ),
            "{text}"
        );

        metrics.forget_services();

        let text = metrics.encode(Exposition::Prometheus).unwrap();
        assert!(!text.contains("billing-db"), "{text}");
    }

    #[test]
    fn label_values_are_lower_case() {
        let metrics = Metrics::default();
        metrics.count_write(Kind::EndpointSlice, Operation::Apply);
        metrics.observe_probe("tcp", Outcome::Error, Duration::from_millis(3));
        drop(metrics.time_reconcile());

        let text = metrics.encode(Exposition::Prometheus).unwrap();

        for sample in [
            r#"extsvc_kubernetes_writes_total{kind="endpoint_slice",operation="apply"} 1"#,
            r#"extsvc_probe_results_total{check="tcp",outcome="error"} 1"#,
            r#"extsvc_reconciles_total{result="error"} 1"#,
        ] {
            assert!(text.contains(sample), "{sample} in {text}");
        }
    }

    #[test]
    fn the_classic_format_names_counters_with_total_and_has_no_eof() {
        let metrics = Metrics::default();
        metrics.count_write(Kind::Service, Operation::Delete);

        let classic = metrics.encode(Exposition::Prometheus).unwrap();
        assert!(
            classic.contains("# TYPE extsvc_kubernetes_writes_total counter\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");

        let openmetrics = metrics.encode(Exposition::OpenMetrics).unwrap();
        assert!(
            openmetrics.contains("# TYPE extsvc_kubernetes_writes counter\n"),
            "{openmetrics}"
        );
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    }

    #[test]
    fn accept_chooses_openmetrics_only_when_it_ranks_first() {
        use Exposition::{OpenMetrics, Prometheus};
        for (accept, expected) in [
            (None, Prometheus),
            (Some(""), Prometheus),
            (Some("*/*"), Prometheus),
            (Some("text/plain"), Prometheus),
            (Some("application/json"), Prometheus),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                OpenMetrics,
            ),
            // Prometheus 2.42.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // Prometheus 2.x with `scrape_protocols` preferring the classic format.
            (
                Some(
                    "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1",
                ),
                Prometheus,
            ),
            (
                Some("application/openmetrics-text;version=0.0.1"),
                Prometheus,
            ),
            (Some("application/openmetrics-text;q=0"), Prometheus),
            (
                Some("application/openmetrics-text;q=0.2, text/*;q=0.1"),
                OpenMetrics,
            ),
            (Some("application/*, text/plain;q=0.9"), OpenMetrics),
            (Some("application/openmetrics-text, text/plain"), Prometheus),
        ] {
            assert_eq!(Exposition::negotiate(accept), expected, "{accept:?}");
        }
    }
}
