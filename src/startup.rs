//! Builds the server from settings, runs it, and stops it gracefully.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::api;
use crate::config::Settings;
use crate::store::{Database, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not open the database")]
    OpenStore(#[source] StoreError),
    #[error("could not listen on {address}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Connects to the database (applying migrations) and binds the listener, so that
    /// `port()` is known before the server runs (tests bind port 0).
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let workers = settings
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let connections = settings
            .database_max_connections
            .unwrap_or(2 * workers as u32);
        let database = Database::new(settings.database_url.expose(), connections)
            .map_err(StartupError::OpenStore)?;
        database.migrate().await.map_err(StartupError::OpenStore)?;
        let listener =
            TcpListener::bind(settings.listen).map_err(|source| StartupError::Listen {
                address: settings.listen,
                source,
            })?;
        let port = listener.local_addr().map_err(StartupError::Serve)?.port();
        let share = database.max_connections().div_ceil(workers as u32);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(database.store(share)))
                .configure(api::configure)
                .default_service(web::to(api::no_route))
        })
        // Stop accepting on SIGTERM/SIGINT and let requests in flight finish.
        .shutdown_timeout(10)
        .workers(workers);
        let server = server.listen(listener).map_err(StartupError::Serve)?.run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, then drains and returns.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        self.server.await.map_err(StartupError::Serve)
    }
}
