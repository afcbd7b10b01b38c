//! extsvc: register backends that live outside Kubernetes and use them from inside it.

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod controller;
pub mod domain;
pub mod k8s;
pub mod metrics;
pub mod probe;
pub mod resource;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
