//! Publishes the engine's health to PostgreSQL, where every replica's API reads it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::ServiceKey;
use crate::resource::HealthTransition;
use crate::store::Store;

use super::Engine;

/// How stale an error in the health API may be (a readiness change is published at once).
const INTERVAL: Duration = Duration::from_secs(2);
/// Transitions that come together are published together.
const SETTLE: Duration = Duration::from_millis(50);
/// How stale probe times, latencies and counters may be, in intervals.
const REFRESH_EVERY: u32 = 15;
/// Transitions held back while the database is unreachable, at most.
const MAX_PENDING: usize = 100_000;

/// Writes readiness changes at once, reports whose error changed every couple of
/// seconds, reports only probed again every half minute, and all of them once more when
/// `shutdown` is cancelled.
pub async fn publish(engine: Engine, store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    let mut pending: Vec<(ServiceKey, HealthTransition)> = Vec::new();
    let mut ticks = 0u32;
    loop {
        let (last, refresh) = tokio::select! {
            () = shutdown.cancelled() => (true, true),
            _ = tick.tick() => {
                ticks = ticks.wrapping_add(1);
                (false, ticks.is_multiple_of(REFRESH_EVERY))
            }
            () = engine.transitioned() => {
                tokio::time::sleep(SETTLE).await;
                (false, false)
            }
        };
        // A report that fails to be written is written again with the next probe's
        // change; transitions happen once, so they wait here until they are stored.
        let all = refresh;
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
