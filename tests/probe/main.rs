//! The probe engine against real servers on loopback ports: HTTP, HTTPS, TCP and gRPC
//! checks, kubelet's thresholds, target changes, jitter and bounded concurrency. Every
//! test runs its own engine and servers; nothing leaves the machine.

mod helpers;
mod servers;

mod grpc;
mod http;
mod scheduling;
mod thresholds;
mod tls;
