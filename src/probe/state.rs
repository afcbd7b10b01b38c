//! Kubelet's threshold semantics for one check on one address.

use std::time::SystemTime;

use crate::resource::HealthState;

/// How one probe ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub success: bool,
    /// Why it failed: `connection refused`, `timeout after 1s`, `status 503`, ...
    pub error: Option<String>,
    pub latency: std::time::Duration,
    pub at: SystemTime,
}

/// The state of one check on one address.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckState {
    pub state: HealthState,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub last: Option<Outcome>,
    pub last_transition: Option<SystemTime>,
}

/// A change of `state`, for history and events.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub from: HealthState,
    pub to: HealthState,
}

impl CheckState {
    /// A new check: unknown, or what the last published status said (so that a restart
    /// does not flap an address).
    pub fn new(seed: Option<bool>) -> Self {
        Self {
            state: match seed {
                Some(true) => HealthState::Ready,
                Some(false) => HealthState::NotReady,
                None => HealthState::Unknown,
            },
            consecutive_successes: 0,
            consecutive_failures: 0,
            last: None,
            last_transition: None,
        }
    }

    /// The state to keep when the check's definition changes: its readiness and last
    /// result, with the consecutive counts started afresh under the new thresholds.
    pub fn carried(&self) -> Self {
        Self {
            consecutive_successes: 0,
            consecutive_failures: 0,
            ..self.clone()
        }
    }

    /// Counts `outcome`. Not ready becomes ready after `success_threshold` successes in a
    /// row; ready becomes not ready after `failure_threshold` failures in a row; unknown
    /// becomes not ready at the first failure (it never was ready).
    pub fn record(
        &mut self,
        outcome: Outcome,
        success_threshold: u32,
        failure_threshold: u32,
    ) -> Option<Change> {
        let from = self.state;
        if outcome.success {
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
        }
        let to = match from {
            HealthState::Ready if self.consecutive_failures >= failure_threshold => {
                HealthState::NotReady
            }
            HealthState::Unknown if !outcome.success => HealthState::NotReady,
            HealthState::NotReady | HealthState::Unknown
                if self.consecutive_successes >= success_threshold =>
            {
                HealthState::Ready
            }
            state => state,
        };
        let at = outcome.at;
        self.last = Some(outcome);
        (to != from).then(|| {
            self.state = to;
            self.last_transition = Some(at);
            Change { from, to }
        })
    }
}

/// An address's state from its checks: ready when all are, not ready when one is.
pub fn address_state(checks: impl IntoIterator<Item = HealthState>) -> HealthState {
    let mut state = HealthState::Ready;
    for check in checks {
        match check {
            HealthState::NotReady => return HealthState::NotReady,
            HealthState::Unknown => state = HealthState::Unknown,
            HealthState::Ready => {}
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(success: bool) -> Outcome {
        Outcome {
            success,
            error: (!success).then(|| "status 503".to_owned()),
            latency: std::time::Duration::from_millis(1),
            at: SystemTime::UNIX_EPOCH,
        }
    }

    /// Feeds results (`+` success, `-` failure) and returns the state after each.
    fn run(seed: Option<bool>, results: &str, success: u32, failure: u32) -> Vec<HealthState> {
        let mut state = CheckState::new(seed);
        results
            .chars()
            .map(|c| {
                state.record(outcome(c == '+'), success, failure);
                state.state
            })
            .collect()
    }

    use HealthState::{NotReady as N, Ready as R, Unknown as U};

    #[test]
    fn thresholds_count_consecutive_results_exactly() {
        // success 2, failure 3: a single success or two failures change nothing.
        assert_eq!(run(None, "+", 2, 3), [U]);
        assert_eq!(run(None, "++", 2, 3), [U, R]);
        assert_eq!(run(None, "++--+---", 2, 3), [U, R, R, R, R, R, R, N]);
        assert_eq!(run(None, "++---+-+", 2, 3), [U, R, R, R, N, N, N, N]);
        assert_eq!(run(None, "++---+++", 2, 3), [U, R, R, R, N, N, R, R]);
    }

    #[test]
    fn a_flapping_backend_never_turns_ready_with_a_success_threshold_above_one() {
        assert!(run(Some(false), "+-+-+-+-+-", 2, 1).iter().all(|s| *s == N));
    }

    #[test]
    fn an_unknown_check_is_not_ready_at_its_first_failure() {
        assert_eq!(run(None, "-", 1, 3), [N]);
    }

    #[test]
    fn a_seeded_ready_check_stays_ready_until_the_failure_threshold() {
        assert_eq!(run(Some(true), "--+---", 1, 3), [R, R, R, R, R, N]);
    }

    #[test]
    fn a_change_is_reported_once() {
        let mut state = CheckState::new(None);
        assert_eq!(
            state.record(outcome(true), 1, 1),
            Some(Change { from: U, to: R })
        );
        assert_eq!(state.record(outcome(true), 1, 1), None);
        assert_eq!(
            state.record(outcome(false), 1, 1),
            Some(Change { from: R, to: N })
        );
        assert_eq!(state.consecutive_failures, 1);
        assert_eq!(
            state.last.as_ref().and_then(|l| l.error.clone()).as_deref(),
            Some("status 503")
        );
    }

    #[test]
    fn an_address_is_ready_only_when_every_check_is() {
        let ready = CheckState::new(Some(true));
        let unknown = CheckState::new(None);
        let down = CheckState::new(Some(false));
        assert_eq!(address_state([ready.state, ready.state]), R);
        assert_eq!(address_state([ready.state, unknown.state]), U);
        assert_eq!(address_state([unknown.state, down.state]), N);
        assert_eq!(address_state([]), R, "no check applies");
    }
}
