//! Client commands for CI pipelines: apply, wait, get, list, health, events, maintenance
//! and delete over the REST API, with exit codes a pipeline can branch on.

mod locate;
mod print;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use secrecy::SecretString;
use serde_json::Value;

use crate::client::{Applied, ApplyOptions, Client, ClientError, StreamItem};
use crate::resource::{MaintenanceRequest, WaitFor};
use crate::telemetry;

/// Exit codes, as `--help` and the README list them.
pub const EXIT_CODES: &str = "Exit codes: 0 done; 1 any other error (the server failed, a bad answer); \
2 bad usage; 3 invalid input (a document or parameter the server or this command refused); \
4 not found; 5 unauthenticated or forbidden; 6 conflict (the name is taken, the document is \
stale, the service is read-only); 7 timed out waiting; 8 server unreachable; 9 a dry run's \
probe found addresses not ready.";

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create or replace the services in YAML or JSON files (like `kubectl apply`).
    #[command(after_help = EXIT_CODES)]
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
        /// Validate and authorize every document and show what would change, writing
        /// nothing.
        #[arg(long)]
        dry_run: bool,
        /// With `--dry-run`: also run every health check once on every address and print
        /// what it found; exit 9 if an address is not ready.
        #[arg(long, requires = "dry_run")]
        probe: bool,
        /// After applying, wait until every service is ready (or `--for synced`).
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
        /// What `--wait` waits for.
        #[arg(long = "for", value_enum, default_value_t = Condition::Ready, requires = "wait")]
        condition: Condition,
        /// How long `--wait` waits for all of them together, e.g. `90s`, `2m`.
        #[arg(long, default_value = "2m", value_parser = duration)]
        timeout: Duration,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Wait until a service is ready, synced or deleted (like `kubectl wait`).
    #[command(after_help = EXIT_CODES)]
    Wait {
        #[command(flatten)]
        target: Target,
        name: String,
        #[arg(long = "for", value_enum, default_value_t = Condition::Ready)]
        condition: Condition,
        /// How long to wait, e.g. `90s`, `2m`.
        #[arg(long, default_value = "2m", value_parser = duration)]
        timeout: Duration,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print one service.
    #[command(after_help = EXIT_CODES)]
    Get {
        #[command(flatten)]
        target: Target,
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
        output: Output,
    },
    /// List services, one line each.
    #[command(after_help = EXIT_CODES)]
    List {
        #[command(flatten)]
        target: Target,
        /// List every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector, e.g. `team=payments,tier!=db`.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print what the health checks found, per address and check.
    #[command(after_help = EXIT_CODES)]
    Health {
        #[command(flatten)]
        target: Target,
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print what happened to a service (kept an hour by default), or follow it live.
    #[command(after_help = EXIT_CODES)]
    Events {
        #[command(flatten)]
        target: Target,
        name: String,
        /// Keep printing events as they happen, from now on.
        #[arg(short, long)]
        follow: bool,
        /// `json` prints one JSON object a line.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Take addresses out of rotation for a while, list the windows, or end them.
    #[command(after_help = EXIT_CODES)]
    Maintenance {
        #[command(flatten)]
        target: Target,
        name: String,
        /// An IP or DNS name among the service's endpoints; repeat for several.
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// Why, as people will read it in status, health and events.
        #[arg(long, required_unless_present_any = ["end", "list"])]
        reason: Option<String>,
        /// How long, e.g. `2h`, `30m`.
        #[arg(long = "for", value_parser = duration, required_unless_present_any = ["end", "list"])]
        duration: Option<Duration>,
        /// End the windows of `--address` (or all) now.
        #[arg(long, conflicts_with_all = ["reason", "duration", "list"])]
        end: bool,
        /// Only list the windows in force.
        #[arg(long, conflicts_with_all = ["reason", "duration"])]
        list: bool,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Delete a service.
    #[command(after_help = EXIT_CODES)]
    Delete {
        #[command(flatten)]
        target: Target,
        name: String,
        /// Check that the delete would go through, deleting nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait until it is gone from the cluster too.
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
        #[arg(long, default_value = "2m", value_parser = duration)]
        timeout: Duration,
    },
}

/// `--for` of `wait` and `apply --wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Condition {
    Ready,
    Synced,
    Deleted,
}

impl Condition {
    fn wait_for(self) -> WaitFor {
        match self {
            Self::Ready => WaitFor::Ready,
            Self::Synced => WaitFor::Synced,
            Self::Deleted => WaitFor::Deleted,
        }
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::api::parse_duration(text).ok_or_else(|| "a duration like 90s, 2m or 1h30m".to_owned())
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
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
    #[error("{path}, document {index}: it has no metadata.name")]
    Unnamed { path: String, index: usize },
    #[error("--address is needed to start maintenance")]
    NoAddresses,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("could not print the result")]
    Print(#[source] serde_json::Error),
    /// Every failure was reported already; `code` is the first one's.
    #[error("{failed} of {total} documents failed")]
    Failures {
        failed: usize,
        total: usize,
        code: u8,
    },
    #[error("{0}")]
    NotReady(String),
}

impl CliError {
    /// The exit code this error ends the command with (see [`EXIT_CODES`]).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    fn code(&self) -> u8 {
        match self {
            Self::ReadFile { .. } | Self::NoDocuments { .. } | Self::ParseFile { .. } => 3,
            Self::Unnamed { .. } | Self::NoAddresses => 3,
            Self::Failures { code, .. } => *code,
            Self::NotReady(_) => 9,
            Self::Print(_) => 1,
            Self::Client(error) => client_code(error),
        }
    }
}

/// The exit code of a client error (see [`EXIT_CODES`]).
fn client_code(error: &ClientError) -> u8 {
    use reqwest::StatusCode;
    match error {
        ClientError::Send { .. } | ClientError::BadUrl { .. } => 8,
        ClientError::TimedOut { .. } => 7,
        ClientError::Stale { .. } => 6,
        ClientError::Decode { .. } => 1,
        ClientError::Problem { status, .. } => match *status {
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY => 3,
            StatusCode::NOT_FOUND => 4,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => 5,
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => 6,
            StatusCode::REQUEST_TIMEOUT => 7,
            _ => 1,
        },
    }
}

pub async fn run(command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Apply {
            target,
            files,
            recursive,
            check_version,
            dry_run,
            probe,
            wait,
            condition,
            timeout,
            output,
        } => {
            let options = ApplyOptions {
                check_version,
                dry_run,
                probe,
            };
            let applied = apply(&target, &files, recursive, options, output).await?;
            if wait {
                let deadline = tokio::time::Instant::now() + timeout;
                for (namespace, name) in applied {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    wait_for(
                        &target,
                        &namespace,
                        &name,
                        condition.wait_for(),
                        left,
                        output,
                    )
                    .await?;
                }
            }
            Ok(())
        }
        ClientCommand::Wait {
            target,
            name,
            condition,
            timeout,
            output,
        } => {
            let namespace = target.namespace.clone();
            wait_for(
                &target,
                &namespace,
                &name,
                condition.wait_for(),
                timeout,
                output,
            )
            .await
        }
        ClientCommand::Get {
            target,
            name,
            output,
        } => {
            let document = target.client().get(&target.namespace, &name).await?;
            match output {
                Output::Table => print::services(&[document]),
                _ => print::value(&document, output)?,
            }
            Ok(())
        }
        ClientCommand::List {
            target,
            all_namespaces,
            selector,
            output,
        } => {
            let namespace = (!all_namespaces).then_some(target.namespace.as_str());
            let items = target.client().list(namespace, selector.as_deref()).await?;
            match output {
                Output::Table => print::services(&items),
                _ => print::value(&items, output)?,
            }
            Ok(())
        }
        ClientCommand::Health {
            target,
            name,
            output,
        } => {
            let health = target.client().health(&target.namespace, &name).await?;
            match output {
                Output::Table => print::health(&health),
                _ => print::value(&health, output)?,
            }
            Ok(())
        }
        ClientCommand::Events {
            target,
            name,
            follow,
            output,
        } => {
            let mut failed = None;
            target
                .client()
                .events(&target.namespace, &name, follow, |item| {
                    if let StreamItem::Event(event) = item
                        && let Err(error) = print::event(&event, output)
                    {
                        failed = Some(error);
                    }
                })
                .await?;
            failed.map_or(Ok(()), Err)
        }
        ClientCommand::Maintenance {
            target,
            name,
            addresses,
            reason,
            duration,
            end,
            list,
            output,
        } => {
            let client = target.client();
            let namespace = &target.namespace;
            let windows = match (end, list, reason, duration) {
                (true, _, _, _) if addresses.is_empty() => {
                    client.end_maintenance(namespace, &name, None).await?
                }
                (true, _, _, _) => {
                    let mut windows = None;
                    for address in &addresses {
                        windows = Some(
                            client
                                .end_maintenance(namespace, &name, Some(address))
                                .await?,
                        );
                    }
                    windows.ok_or(CliError::NoAddresses)?
                }
                (false, false, Some(reason), Some(duration)) => {
                    if addresses.is_empty() {
                        return Err(CliError::NoAddresses);
                    }
                    // The server refuses a window over 30 days; so far it must only add up.
                    let until = chrono::Duration::from_std(duration)
                        .ok()
                        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
                    let request = MaintenanceRequest {
                        addresses,
                        reason,
                        until: until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    };
                    client.start_maintenance(namespace, &name, &request).await?
                }
                _ => client.maintenance(namespace, &name).await?,
            };
            match output {
                Output::Table => print::maintenance(&windows),
                _ => print::value(&windows, output)?,
            }
            Ok(())
        }
        ClientCommand::Delete {
            target,
            name,
            dry_run,
            wait,
            timeout,
        } => {
            let namespace = target.namespace.clone();
            target.client().delete(&namespace, &name, dry_run).await?;
            if dry_run {
                println!("{namespace}/{name} deleted (dry run)");
                return Ok(());
            }
            println!("{namespace}/{name} deleted");
            if wait {
                wait_for(
                    &target,
                    &namespace,
                    &name,
                    WaitFor::Deleted,
                    timeout,
                    Output::Table,
                )
                .await?;
            }
            Ok(())
        }
    }
}

impl Target {
    fn client(&self) -> Client {
        Client::new(&self.server, self.token.clone())
    }
}

/// How long one long poll lasts: a progress line on a terminal is refreshed this often;
/// without one, polls stay under the idle timeout of most proxies.
const POLL_ON_TERMINAL: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_secs(50);

/// Waits for one service, with a progress line on a terminal.
async fn wait_for(
    target: &Target,
    namespace: &str,
    name: &str,
    condition: WaitFor,
    timeout: Duration,
    output: Output,
) -> Result<(), CliError> {
    let terminal = std::io::stderr().is_terminal();
    let poll = if terminal { POLL_ON_TERMINAL } else { POLL };
    let progress = |unmet: &[String]| {
        if terminal {
            let line = unmet.join("; ");
            let line: String = line.chars().take(150).collect();
            eprint!(
                "\r\x1b[Kwaiting for {namespace}/{name} to be {}: {line}",
                condition.as_str()
            );
            let _ = std::io::stderr().flush();
        }
    };
    let result = target
        .client()
        .wait(namespace, name, condition, timeout, poll, progress)
        .await;
    if terminal {
        eprint!("\r\x1b[K");
    }
    let document = result?;
    match (output, document) {
        (Output::Table, _) | (_, None) => {
            println!("{namespace}/{name} {}", condition.as_str());
        }
        (output, Some(document)) => print::value(&document, output)?,
    }
    Ok(())
}

/// One document of a file: where it is, and what it says.
struct Document {
    path: String,
    /// 1-based, among the file's documents.
    index: usize,
    text: String,
    first_line: usize,
    value: Value,
}

impl Document {
    /// `path, document N`, the service unless the error names it, and the line of each
    /// field the server refused.
    fn locate(&self, subject: &str, error: ClientError) -> String {
        let mut where_ = format!("{}, document {}", self.path, self.index);
        if !error.to_string().contains(subject) {
            where_ = format!("{where_}, {subject}");
        }
        match error {
            ClientError::Problem {
                status,
                detail,
                errors,
            } => {
                let fields: String = errors
                    .iter()
                    .map(
                        |(pointer, detail)| match locate::line_of(&self.text, pointer) {
                            Some(line) => format!(
                                "\n  {}:{}: {pointer}: {detail}",
                                self.path,
                                self.first_line + line - 1
                            ),
                            None => format!("\n  {pointer}: {detail}"),
                        },
                    )
                    .collect();
                format!("{where_}: {detail} ({}){fields}", status.as_u16())
            }
            other => format!("{where_}: {}", telemetry::chain(&other)),
        }
    }
}

/// Applies every document; the services applied, in order.
async fn apply(
    target: &Target,
    paths: &[PathBuf],
    recursive: bool,
    options: ApplyOptions,
    output: Output,
) -> Result<Vec<(String, String)>, CliError> {
    let client = target.client();
    let mut files = Vec::new();
    for path in paths {
        manifest_files(path, recursive, &mut files)?;
    }
    let mut documents = Vec::new();
    for file in &files {
        documents.extend(read_documents(file)?);
    }
    if documents.is_empty() {
        let paths: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(CliError::NoDocuments {
            paths: paths.join(", "),
        });
    }
    // Every document is checked for a name before any is applied.
    if let Some(unnamed) = documents
        .iter()
        .find(|d| !d.value["metadata"]["name"].is_string())
    {
        return Err(CliError::Unnamed {
            path: unnamed.path.clone(),
            index: unnamed.index,
        });
    }
    let (mut failed, mut first_code, mut not_ready) = (0, None, Vec::new());
    let mut applied = Vec::new();
    let suffix = if options.dry_run { " (dry run)" } else { "" };
    for document in &documents {
        let Some(name) = document.value["metadata"]["name"].as_str() else {
            return Err(CliError::Unnamed {
                path: document.path.clone(),
                index: document.index,
            });
        };
        let namespace = document.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&target.namespace);
        match client
            .apply(namespace, name, &document.value, options)
            .await
        {
            Ok((what, probe)) => {
                let what = match what {
                    Applied::Created => "created",
                    Applied::Configured => "configured",
                    Applied::Unchanged => "unchanged",
                };
                println!("{namespace}/{name} {what}{suffix}");
                if let Some(probe) = probe {
                    match output {
                        Output::Table => print::health(&probe),
                        _ => print::value(&probe, output)?,
                    }
                    if probe.ready_addresses < probe.total_addresses {
                        not_ready.push(format!(
                            "{namespace}/{name}: {} of {} addresses ready",
                            probe.ready_addresses, probe.total_addresses
                        ));
                    }
                }
                applied.push((namespace.to_owned(), name.to_owned()));
            }
            Err(error) => {
                failed += 1;
                first_code.get_or_insert(client_code(&error));
                let subject = format!("{namespace}/{name}");
                eprintln!("error: {}", document.locate(&subject, error));
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Failures {
            failed,
            total: documents.len(),
            code: first_code.unwrap_or(1),
        });
    }
    if !not_ready.is_empty() {
        return Err(CliError::NotReady(format!(
            "the probe found addresses not ready: {}",
            not_ready.join("; ")
        )));
    }
    Ok(applied)
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

/// Every document in a file (JSON, or YAML with `---` between documents), with where
/// each starts, so that an error can name its line.
fn read_documents(path: &Path) -> Result<Vec<Document>, CliError> {
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
    let mut documents = Vec::new();
    for chunk in locate::documents(&text) {
        let value: Value = serde_saphyr::from_str(chunk.text).map_err(|e| CliError::ParseFile {
            path: name.clone(),
            detail: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        documents.push(Document {
            path: name.clone(),
            index: documents.len() + 1,
            text: chunk.text.to_owned(),
            first_line: chunk.first_line,
            value,
        });
    }
    Ok(documents)
}
