//! Black-box tests of the REST API: the real server on port 0, a real PostgreSQL with a
//! fresh database per test, spoken to over HTTP.

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

mod helpers;

mod cli;
mod database;
mod documents;
mod health;
mod legacy;
mod listing;
mod logs;
mod namespaces;
mod oidc;
mod openapi;
mod pipelines;
mod policies;
mod swagger;
mod system;
mod teams;
mod validation;
