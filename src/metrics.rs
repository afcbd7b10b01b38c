//! Prometheus metrics, served at `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::ServiceKey;

/// Kinds of object this process writes to Kubernetes.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Kind {
    ExternalService,
    ExternalServiceStatus,
    Service,
    EndpointSlice,
    Endpoints,
    Ingress,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Operation {
    Apply,
    Delete,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: Kind,
    pub operation: Operation,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Result {
    Ok,
    Error,
}

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

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Success,
    /// The backend answered, unhealthy (a status, NOT_SERVING).
    Failure,
    Timeout,
    /// No answer: refused, reset, TLS.
    Error,
}

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

    /// The text exposition format.
    pub fn encode(&self) -> std::result::Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
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
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"extsvc_service_ready_addresses{namespace="payments",name="billing-db"} 1"#
            ),
            "{text}"
        );

        metrics.forget_services();

        let text = metrics.encode().unwrap();
        assert!(!text.contains("billing-db"), "{text}");
    }
}
