//! Publishes the engine's health to PostgreSQL, where every replica's API reads it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::ServiceKey;
use crate::resource::HealthTransition;
use crate::store::Store;

use super::Engine;

/// How stale a state or an error in the health API may be.
const INTERVAL: Duration = Duration::from_secs(2);
/// How stale probe times, latencies and counters may be, in intervals.
const REFRESH_EVERY: u32 = 15;
/// Transitions held back while the database is unreachable, at most.
const MAX_PENDING: usize = 100_000;

/// Writes reports whose state or error changed and new transitions every couple of
/// seconds, reports only probed again every half minute, and all of them once more when
/// `shutdown` is cancelled.
pub async fn publish(engine: Engine, store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    let mut pending: Vec<(ServiceKey, HealthTransition)> = Vec::new();
    for round in 1u32.. {
        let last = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        // A report that fails to be written is written again with the next probe's
        // change; transitions happen once, so they wait here until they are stored.
        let all = last || round % REFRESH_EVERY == 0;
        if let Err(error) = store.record_health(&engine.take_changed_reports(all)).await {
            tracing::warn!(error = %crate::telemetry::chain(&error), "could not publish health");
        }
        pending.extend(engine.take_transitions());
        match store.record_transitions(&pending).await {
            Ok(()) => pending.clear(),
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::chain(&error), "could not record health transitions");
                let excess = pending.len().saturating_sub(MAX_PENDING);
                pending.drain(..excess);
            }
        }
        if last {
            return;
        }
    }
}
