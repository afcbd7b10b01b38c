//! The command line client, run as a CI pipeline would: the real binary, real files.

use std::process::Output;

use crate::helpers::{TestApp, spawn_app};

async fn extsvc(app: &TestApp, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_extsvc"));
    command
        .args(args)
        .env("EXTSVC_SERVER", &app.address)
        .env_remove("EXTSVC_NAMESPACE");
    command.output().await.expect("the extsvc binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn apply_get_list_and_delete_work_from_files() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("services.yaml");
    let legacy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/samples/legacy/tcp-probe.yaml"
    ))
    .unwrap();
    std::fs::write(
        &file,
        format!(
            "metadata:\n  name: cache\nspec:\n  ports:\n  - name: redis\n    port: 6379\n  endpoints:\n  - address: 192.0.2.1\n---\n{legacy}"
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();

    let first = extsvc(&app, &["apply", "-n", "ops", "-f", path]).await;
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        stdout(&first),
        "ops/cache created\nexternal-services/example-externalservice-tcp created\n"
    );

    let second = extsvc(&app, &["apply", "-n", "ops", "-f", path]).await;
    assert_eq!(
        stdout(&second),
        "ops/cache unchanged\nexternal-services/example-externalservice-tcp unchanged\n"
    );

    std::fs::write(&file, "metadata:\n  name: cache\nspec:\n  ports:\n  - name: redis\n    port: 6380\n  endpoints:\n  - address: 192.0.2.1\n").unwrap();
    let third = extsvc(&app, &["apply", "-n", "ops", "-f", path]).await;
    assert_eq!(stdout(&third), "ops/cache configured\n");

    let get = extsvc(&app, &["get", "-n", "ops", "cache", "-o", "json"]).await;
    let document: serde_json::Value = serde_json::from_slice(&get.stdout).expect("JSON output");
    assert_eq!(document["spec"]["ports"][0]["port"], 6380);

    let list = extsvc(&app, &["list", "-A"]).await;
    let lines: Vec<_> = stdout(&list).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[1].starts_with("external-services") && lines[2].starts_with("ops"));

    let delete = extsvc(&app, &["delete", "-n", "ops", "cache"]).await;
    assert!(delete.status.success());
    let missing = extsvc(&app, &["get", "-n", "ops", "cache"]).await;
    assert!(!missing.status.success());
}

#[tokio::test]
async fn apply_of_an_invalid_document_fails_and_names_the_field() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "metadata:\n  name: cache\nspec:\n  ports:\n  - name: redis\n    port: 0\n  endpoints:\n  - address: 192.0.2.1\n").unwrap();

    let output = extsvc(&app, &["apply", "-f", file.to_str().unwrap()]).await;

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/spec/ports/0/port: must be between 1 and 65535"),
        "{stderr}"
    );
}
