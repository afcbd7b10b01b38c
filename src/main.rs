use std::process::ExitCode;

use clap::{Parser, Subcommand};

use extsvc::api::ApiDoc;
use extsvc::cli::{self, ClientCommand};
use extsvc::config::Settings;
use extsvc::startup::Application;
use extsvc::telemetry;

/// Register backends that live outside Kubernetes and use them from inside it.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Log as JSON lines.
    #[arg(long, global = true, env = "EXTSVC_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<Settings>),
    /// Print the OpenAPI document.
    Openapi,
    /// Print the ExternalService CustomResourceDefinition.
    Crd,
    #[command(flatten)]
    Client(ClientCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_json);
    let result = match cli.command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Openapi => ApiDoc::to_pretty_json()
            .map(|json| print!("{json}"))
            .map_err(anyhow::Error::from),
        Command::Crd => extsvc::k8s::crd::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Client(command) => {
            return match cli::run(command).await {
                Ok(()) => ExitCode::SUCCESS,
                // Failures of each document were reported as they happened.
                Err(error @ cli::CliError::Failures { .. }) => {
                    eprintln!("error: {error}");
                    error.exit_code()
                }
                Err(error) => {
                    eprintln!("error: {}", telemetry::chain(&error));
                    error.exit_code()
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", telemetry::chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(&settings).await?;
    tracing::info!(
        "serving on http://{}:{}  (Swagger UI: /swagger-ui/)",
        settings.listen.ip(),
        app.port()
    );
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
