//! End to end against a real kube-apiserver and a real PostgreSQL: registrations made
//! through the API become ExternalServices, and those become a Service, EndpointSlices,
//! Endpoints and an Ingress. Every test has its own namespace, database and operator
//! (scoped to that namespace), so tests run side by side on one control plane.

#[path = "../support/controlplane.rs"]
mod controlplane;
#[path = "../support/oidc.rs"]
mod issuer;
#[path = "../support/netns.rs"]
mod netns;
#[path = "../support/postgres.rs"]
mod postgres;
#[path = "../support/prometheus.rs"]
mod prometheus;
#[path = "../support/settings.rs"]
mod settings;

mod backend;
mod helpers;

mod access;
mod address_policy;
mod children;
mod cluster_controllers;
mod cluster_made;
mod examples;
mod health;
mod installation;
mod metrics;
mod outage;
mod outbox;
mod ownership;
mod pipelines;
mod repair;
mod replicas;
mod service_accounts;
