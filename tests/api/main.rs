//! Black-box tests of the REST API: the real server on port 0, a real PostgreSQL with a
//! fresh database per test, spoken to over HTTP.

#[path = "../support/postgres.rs"]
mod postgres;
#[path = "../support/prometheus.rs"]
mod prometheus;

mod helpers;

mod cli;
mod database;
mod documents;
mod health;
mod legacy;
mod listing;
mod logs;
mod namespaces;
mod openapi;
mod policies;
mod system;
mod validation;
