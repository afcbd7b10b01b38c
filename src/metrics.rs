//! Prometheus metrics, served at `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// Every metric of the process, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    writes: Family<WriteLabels, Counter>,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Histogram,
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
        Self {
            registry: Arc::new(registry),
            writes,
            reconciles,
            reconcile_duration,
        }
    }
}

impl Metrics {
    pub fn count_write(&self, kind: Kind, operation: Operation) {
        self.writes
            .get_or_create(&WriteLabels { kind, operation })
            .inc();
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
