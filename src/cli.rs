//! Client commands for CI pipelines: apply, get, list and delete over the REST API.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use secrecy::SecretString;
use serde_json::Value;

use crate::client::{Applied, Client};
use crate::telemetry;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create or replace the services in YAML or JSON files (like `kubectl apply`).
    Apply {
        #[command(flatten)]
        target: Target,
        /// Files or directories to apply; `-` reads standard input. A directory gives its
        /// `*.yaml`, `*.yml` and `*.json` files in name order. YAML files may hold several
        /// documents.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Also apply the files in the subdirectories of a directory given with `-f`.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Replace a service only while it is still at the `metadata.resourceVersion` its
        /// document carries (as `get` prints it); a stale document fails with 412.
        #[arg(long)]
        check_version: bool,
    },
    /// Print one service.
    Get {
        #[command(flatten)]
        target: Target,
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
        output: Output,
    },
    /// List services, one line each.
    List {
        #[command(flatten)]
        target: Target,
        /// List every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector, e.g. `team=payments,tier!=db`.
        #[arg(short = 'l', long)]
        selector: Option<String>,
    },
    /// Delete a service.
    Delete {
        #[command(flatten)]
        target: Target,
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct Target {
    /// URL of the extsvc API.
    #[arg(
        long,
        env = "EXTSVC_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Bearer token: an API token (`extsvc_...`), an OIDC ID token, or a Kubernetes
    /// service-account token.
    #[arg(long, env = "EXTSVC_TOKEN", hide_env_values = true, global = true)]
    token: Option<SecretString>,
    /// Namespace; documents that name their own namespace keep it.
    #[arg(
        short,
        long,
        env = "EXTSVC_NAMESPACE",
        default_value = "default",
        global = true
    )]
    namespace: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Yaml,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("could not read {path}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no documents to apply in {paths}")]
    NoDocuments { paths: String },
    #[error("{path} is not YAML or JSON: {detail}")]
    ParseFile { path: String, detail: String },
    #[error("{path}: a document has no metadata.name")]
    Unnamed { path: String },
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("could not print the result")]
    Print(#[source] serde_json::Error),
    #[error("{failed} of {total} documents failed")]
    Failures { failed: usize, total: usize },
}

pub async fn run(command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Apply {
            target,
            files,
            recursive,
            check_version,
        } => apply(&target, &files, recursive, check_version).await,
        ClientCommand::Get {
            target,
            name,
            output,
        } => {
            let document = Client::new(&target.server, target.token.clone())
                .get(&target.namespace, &name)
                .await?;
            let value = serde_json::to_value(&document).map_err(CliError::Print)?;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&value).map_err(CliError::Print)?
                ),
                Output::Yaml => print!("{}", to_yaml(&value)),
            }
            Ok(())
        }
        ClientCommand::List {
            target,
            all_namespaces,
            selector,
        } => {
            let namespace = (!all_namespaces).then_some(target.namespace.as_str());
            let items = Client::new(&target.server, target.token.clone())
                .list(namespace, selector.as_deref())
                .await?;
            println!(
                "{:<20} {:<30} {:<24} {:>9} {:>10}",
                "NAMESPACE", "NAME", "PORTS", "ADDRESSES", "GENERATION"
            );
            for item in items {
                let ports: Vec<_> = item
                    .spec
                    .ports
                    .iter()
                    .map(|p| format!("{}/{}", p.name, p.port))
                    .collect();
                println!(
                    "{:<20} {:<30} {:<24} {:>9} {:>10}",
                    item.metadata.namespace.unwrap_or_default(),
                    item.metadata.name.unwrap_or_default(),
                    ports.join(","),
                    item.spec.endpoints.len(),
                    item.metadata.generation.unwrap_or_default(),
                );
            }
            Ok(())
        }
        ClientCommand::Delete { target, name } => {
            Client::new(&target.server, target.token.clone())
                .delete(&target.namespace, &name)
                .await?;
            println!("{}/{name} deleted", target.namespace);
            Ok(())
        }
    }
}

fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| value.to_string())
}

async fn apply(
    target: &Target,
    paths: &[PathBuf],
    recursive: bool,
    check_version: bool,
) -> Result<(), CliError> {
    let client = Client::new(&target.server, target.token.clone());
    let mut files = Vec::new();
    for path in paths {
        manifest_files(path, recursive, &mut files)?;
    }
    let mut documents = Vec::new();
    for file in &files {
        documents.extend(
            read_documents(file)?
                .into_iter()
                .map(|doc| (file.display().to_string(), doc)),
        );
    }
    if documents.is_empty() {
        let paths: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(CliError::NoDocuments {
            paths: paths.join(", "),
        });
    }
    let mut failed = 0;
    for (path, document) in &documents {
        let Some(name) = document["metadata"]["name"].as_str() else {
            return Err(CliError::Unnamed { path: path.clone() });
        };
        let namespace = document["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&target.namespace);
        match client.apply(namespace, name, document, check_version).await {
            Ok(applied) => {
                let what = match applied {
                    Applied::Created => "created",
                    Applied::Configured => "configured",
                    Applied::Unchanged => "unchanged",
                };
                println!("{namespace}/{name} {what}");
            }
            Err(error) => {
                failed += 1;
                // Name the service, unless the error already does.
                let subject = format!("{namespace}/{name}");
                let text = telemetry::chain(&error);
                if text.contains(&subject) {
                    eprintln!("error: {text}");
                } else {
                    eprintln!("error: {subject}: {text}");
                }
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Failures {
            failed,
            total: documents.len(),
        });
    }
    Ok(())
}

/// The files `path` names, as `kubectl apply -f` takes them: a file (or `-`) itself, a
/// directory's YAML and JSON files in name order, and with `recursive` its
/// subdirectories' in the same walk. Symbolic links to directories are not followed.
fn manifest_files(path: &Path, recursive: bool, files: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let read_error = |source| CliError::ReadFile {
        path: path.display().to_string(),
        source,
    };
    if path.as_os_str() == "-" || !std::fs::metadata(path).map_err(read_error)?.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path)
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .map_err(read_error)?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let entry_path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|source| CliError::ReadFile {
                path: entry_path.display().to_string(),
                source,
            })?
            .is_dir();
        let manifest = entry_path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if is_dir {
            if recursive {
                manifest_files(&entry_path, recursive, files)?;
            }
        } else if manifest && entry_path.is_file() {
            files.push(entry_path);
        }
    }
    Ok(())
}

/// Every document in a file: JSON, or YAML with `---` between documents.
fn read_documents(path: &Path) -> Result<Vec<Value>, CliError> {
    let name = path.display().to_string();
    let mut text = String::new();
    let read = if name == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|source| CliError::ReadFile {
        path: name.clone(),
        source,
    })?;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| CliError::ParseFile {
            path: name.clone(),
            detail: e.to_string(),
        })?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}
