//! What the commands print: tables for people, JSON or YAML for programs.

use serde::Serialize;

use crate::resource::{
    ExternalServiceDocument, HealthState, MaintenanceList, ProbeResult, ServiceEvent, ServiceHealth,
};

use super::{CliError, Output};

/// `value` as pretty JSON or YAML.
pub fn value<T: Serialize>(value: &T, output: Output) -> Result<(), CliError> {
    let value = serde_json::to_value(value).map_err(CliError::Print)?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(CliError::Print)?
        ),
        Output::Yaml | Output::Table => print!("{}", yaml(&value)),
    }
    Ok(())
}

fn yaml(value: &serde_json::Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| value.to_string())
}

pub fn services(items: &[ExternalServiceDocument]) {
    println!(
        "{:<20} {:<30} {:<24} {:>9} {:>7} {:>10}",
        "NAMESPACE", "NAME", "PORTS", "ADDRESSES", "READY", "GENERATION"
    );
    for item in items {
        let ports: Vec<_> = item
            .spec
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.name, p.port))
            .collect();
        let ready = item
            .status
            .as_ref()
            .and_then(|s| s.cluster.as_ref())
            .and_then(|c| c.ready.clone())
            .unwrap_or_else(|| "-".to_owned());
        println!(
            "{:<20} {:<30} {:<24} {:>9} {:>7} {:>10}",
            item.metadata.namespace.as_deref().unwrap_or_default(),
            item.metadata.name.as_deref().unwrap_or_default(),
            ports.join(","),
            item.spec.endpoints.len(),
            ready,
            item.metadata.generation.unwrap_or_default(),
        );
    }
}

fn state(state: HealthState) -> &'static str {
    match state {
        HealthState::Ready => "ready",
        HealthState::NotReady => "not-ready",
        HealthState::Unknown => "unknown",
    }
}

/// One line per check on each address; an address without checks gets one line.
pub fn health(health: &ServiceHealth) {
    println!(
        "{}/{}: {} of {} addresses ready",
        health.namespace, health.name, health.ready_addresses, health.total_addresses
    );
    println!(
        "{:<40} {:<10} {:<16} {:>5} {:<8} {:>9}  DETAIL",
        "ADDRESS", "STATE", "CHECK", "PORT", "RESULT", "LATENCY"
    );
    for address in &health.addresses {
        let note = match (&address.maintenance, &address.message) {
            (Some(window), _) => format!("maintenance until {}: {}", window.until, window.reason),
            (None, Some(message)) => message.clone(),
            (None, None) => String::new(),
        };
        if address.checks.is_empty() {
            println!(
                "{:<40} {:<10} {:<16} {:>5} {:<8} {:>9}  {note}",
                address.address,
                state(address.state),
                "-",
                "-",
                "-",
                "-"
            );
        }
        for check in &address.checks {
            let result = match check.last_result {
                Some(ProbeResult::Success) => "success",
                Some(ProbeResult::Failure) => "failure",
                None => "-",
            };
            let latency = check
                .last_latency_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}ms"));
            let detail = [
                note.as_str(),
                check.last_error.as_deref().unwrap_or_default(),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
            println!(
                "{:<40} {:<10} {:<16} {:>5} {:<8} {:>9}  {detail}",
                address.address,
                state(check.state),
                check.name,
                check.port,
                result,
                latency
            );
        }
    }
}

/// One event: a line for people, a JSON object a line, or a YAML document.
pub fn event(event: &ServiceEvent, output: Output) -> Result<(), CliError> {
    match output {
        Output::Table => {
            let detail = match &event.detail {
                serde_json::Value::Object(map) if map.is_empty() => String::new(),
                serde_json::Value::Object(map) => map
                    .iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => format!("{k}={s}"),
                        other => format!("{k}={other}"),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                other => other.to_string(),
            };
            let generation = event
                .generation
                .map_or_else(String::new, |g| format!(" generation={g}"));
            println!(
                "{}  {:<18} {}/{}{generation} {detail}",
                event.time, event.type_, event.namespace, event.name
            );
        }
        Output::Json => println!("{}", serde_json::to_string(event).map_err(CliError::Print)?),
        Output::Yaml => print!(
            "---\n{}",
            yaml(&serde_json::to_value(event).map_err(CliError::Print)?)
        ),
    }
    Ok(())
}

pub fn maintenance(list: &MaintenanceList) {
    if list.items.is_empty() {
        println!(
            "{}/{}: no address in maintenance",
            list.namespace, list.name
        );
        return;
    }
    println!("{:<40} {:<21} {:<24} REASON", "ADDRESS", "UNTIL", "BY");
    for window in &list.items {
        println!(
            "{:<40} {:<21} {:<24} {}",
            window.address, window.until, window.by, window.reason
        );
    }
}
