//! The probe engine: HTTP(S), TCP and gRPC checks on every address, kubelet's threshold
//! semantics, and the health table the controller reads readiness from.

mod check;
mod engine;
mod grpc;
mod http;
mod once;
mod publisher;
mod state;
mod target;

pub use check::{Dialer, Tls};
pub use engine::{DEFAULT_MAX_IN_FLIGHT, Engine, Unresolved};
pub use once::probe_once;
pub use publisher::publish;
pub use target::{ProbeTarget, ProbedAddress, probe_targets};
