//! The command line client, run as a CI pipeline would: the real binary, real files.

use std::process::Output;

use sqlx::Connection;

use crate::helpers::{TestApp, spawn_app};

async fn extsvc(app: &TestApp, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_extsvc"));
    command
        .args(args)
        .env("EXTSVC_SERVER", &app.address)
        .env("EXTSVC_TOKEN", crate::settings::ADMIN_TOKEN)
        .env_remove("EXTSVC_NAMESPACE");
    command.output().await.expect("the extsvc binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn service(name: &str, port: u16) -> String {
    format!(
        "metadata:\n  name: {name}\nspec:\n  ports:\n  - name: tcp\n    port: {port}\n  endpoints:\n  - address: 192.0.2.1\n"
    )
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

    let path = file.to_str().unwrap();

    let output = extsvc(&app, &["apply", "-f", path]).await;

    assert_eq!(output.status.code(), Some(3), "invalid input");
    assert_eq!(
        stderr(&output),
        format!(
            "error: {path}, document 1, default/cache: 1 field is invalid (422)\n  {path}:6: /spec/ports/0/port: must be between 1 and 65535\nerror: 1 of 1 documents failed\n"
        )
    );
}

#[tokio::test]
async fn apply_of_a_directory_applies_its_manifests_in_name_order() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let json = serde_json::json!({"metadata": {"name": "db"}, "spec": {"ports": [{"name": "pg", "port": 5432}], "endpoints": [{"address": "192.0.2.2"}]}});
    std::fs::write(dir.path().join("a.json"), json.to_string()).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        format!("{}---\n{}", service("cache", 6379), service("queue", 5672)),
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not a manifest: [").unwrap();
    std::fs::create_dir(dir.path().join("more")).unwrap();
    std::fs::write(dir.path().join("more/c.yml"), service("search", 9200)).unwrap();
    let path = dir.path().to_str().unwrap();

    let first = extsvc(&app, &["apply", "-n", "ops", "-f", path]).await;
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        stdout(&first),
        "ops/db created\nops/cache created\nops/queue created\n"
    );

    let recursive = extsvc(&app, &["apply", "-n", "ops", "-R", "-f", path]).await;
    assert!(recursive.status.success(), "{recursive:?}");
    assert_eq!(
        stdout(&recursive),
        "ops/db unchanged\nops/cache unchanged\nops/queue unchanged\nops/search created\n"
    );

    let again = extsvc(&app, &["apply", "-n", "ops", "--recursive", "-f", path]).await;
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        stdout(&again),
        "ops/db unchanged\nops/cache unchanged\nops/queue unchanged\nops/search unchanged\n"
    );

    let empty = tempfile::tempdir().unwrap();
    let nothing = extsvc(&app, &["apply", "-f", empty.path().to_str().unwrap()]).await;
    assert_eq!(nothing.status.code(), Some(3));
    assert_eq!(
        stderr(&nothing),
        format!(
            "error: no documents to apply in {}\n",
            empty.path().display()
        )
    );
}

#[tokio::test]
async fn errors_are_one_sentence_ending_in_the_status_code() {
    let app = spawn_app().await;

    let missing = extsvc(&app, &["get", "-n", "ops", "x"]).await;
    assert_eq!(missing.status.code(), Some(4), "not found");
    assert_eq!(stderr(&missing), "error: no external service ops/x (404)\n");

    // A registration the mirror took from the cluster is read-only here.
    app.register("ops", "cache").await;
    let mut database = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("a connection");
    sqlx::query("UPDATE external_services SET origin = 'cluster' WHERE name = 'cache'")
        .execute(&mut database)
        .await
        .expect("UPDATE");
    let read_only = extsvc(&app, &["delete", "-n", "ops", "cache"]).await;
    assert_eq!(read_only.status.code(), Some(6), "conflict");
    let refusal = "external service ops/cache was made in the cluster; change it there, e.g. with kubectl (409)\n";
    assert_eq!(stderr(&read_only), format!("error: {refusal}"));
    // apply names the service only where the server's detail does not.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache.yaml");
    std::fs::write(&file, service("cache", 6379)).unwrap();
    let path = file.to_str().unwrap();
    let apply = extsvc(&app, &["apply", "-n", "ops", "-f", path]).await;
    assert_eq!(apply.status.code(), Some(6));
    assert_eq!(
        stderr(&apply),
        format!("error: {path}, document 1: {refusal}error: 1 of 1 documents failed\n")
    );

    let unreachable = tokio::process::Command::new(env!("CARGO_BIN_EXE_extsvc"))
        .args(["get", "x", "--server", "http://127.0.0.1:1"])
        .output()
        .await
        .expect("the extsvc binary runs");
    assert_eq!(unreachable.status.code(), Some(8), "unreachable");
    assert!(
        stderr(&unreachable)
            .starts_with("error: could not reach http://127.0.0.1:1: error sending request: "),
        "{unreachable:?}"
    );
}

#[tokio::test]
async fn apply_with_check_version_refuses_a_document_older_than_the_service() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.yaml");
    std::fs::write(&file, service("db", 5432)).unwrap();
    let path = file.to_str().unwrap();
    assert!(extsvc(&app, &["apply", "-f", path]).await.status.success());
    // Exported as a pipeline would keep it, then changed by someone else.
    let exported = dir.path().join("exported.yaml");
    let get = extsvc(&app, &["get", "db"]).await;
    std::fs::write(&exported, &get.stdout).unwrap();
    let exported = exported.to_str().unwrap();
    let version = serde_saphyr::from_slice::<serde_json::Value>(&get.stdout).unwrap()["metadata"]
        ["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stdout(&extsvc(&app, &["apply", "--check-version", "-f", exported]).await),
        "default/db unchanged\n"
    );
    std::fs::write(&file, service("db", 5433)).unwrap();
    assert!(extsvc(&app, &["apply", "-f", path]).await.status.success());

    let stale = extsvc(&app, &["apply", "--check-version", "-f", exported]).await;
    assert_eq!(stale.status.code(), Some(6), "conflict");
    assert_eq!(
        stderr(&stale),
        format!(
            "error: {exported}, document 1: default/db is no longer at resourceVersion {version} as the document says; get it again, or apply without --check-version to overwrite it (412)\nerror: 1 of 1 documents failed\n"
        )
    );
    let get: serde_json::Value =
        serde_json::from_slice(&extsvc(&app, &["get", "db", "-o", "json"]).await.stdout).unwrap();
    assert_eq!(get["spec"]["ports"][0]["port"], 5433);

    // Without the flag the server ignores resourceVersion, as its API says.
    let overwrite = extsvc(&app, &["apply", "-f", exported]).await;
    assert_eq!(stdout(&overwrite), "default/db configured\n");
}

#[tokio::test]
async fn a_bad_document_is_named_by_file_index_and_line() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.yaml");
    std::fs::write(
        &file,
        format!(
            "{}---\n# the second one\nmetadata:\n  name: broken\nspec:\n  ports:\n  - name: pg\n    port: 70000\n  endpoints:\n  - address: 192.0.2.1\n",
            service("fine", 5432)
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();

    let output = extsvc(&app, &["apply", "-f", path]).await;

    assert_eq!(output.status.code(), Some(3), "invalid input");
    assert_eq!(stdout(&output), "default/fine created\n");
    assert_eq!(
        stderr(&output),
        format!(
            "error: {path}, document 2, default/broken: 1 field is invalid (422)\n  {path}:16: /spec/ports/0/port: must be between 1 and 65535\nerror: 1 of 2 documents failed\n"
        )
    );
}

#[tokio::test]
async fn a_dry_run_says_what_would_happen_and_writes_nothing() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.yaml");
    std::fs::write(&file, service("db", 5432)).unwrap();
    let path = file.to_str().unwrap();

    let dry = extsvc(&app, &["apply", "--dry-run", "-f", path]).await;
    assert!(dry.status.success(), "{dry:?}");
    assert_eq!(stdout(&dry), "default/db created (dry run)\n");
    assert_eq!(extsvc(&app, &["get", "db"]).await.status.code(), Some(4));
    let mut database = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("a connection");
    let (rows, outbox): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM external_services), (SELECT count(*) FROM outbox)",
    )
    .fetch_one(&mut database)
    .await
    .expect("counts");
    assert_eq!((rows, outbox), (0, 0));

    assert!(extsvc(&app, &["apply", "-f", path]).await.status.success());
    let same = extsvc(&app, &["apply", "--dry-run", "-f", path]).await;
    assert_eq!(stdout(&same), "default/db unchanged (dry run)\n");
    std::fs::write(&file, service("db", 5433)).unwrap();
    let changed = extsvc(&app, &["apply", "--dry-run", "-f", path]).await;
    assert_eq!(stdout(&changed), "default/db configured (dry run)\n");
    let get: serde_json::Value =
        serde_json::from_slice(&extsvc(&app, &["get", "db", "-o", "json"]).await.stdout).unwrap();
    assert_eq!(get["spec"]["ports"][0]["port"], 5432);

    let delete = extsvc(&app, &["delete", "db", "--dry-run"]).await;
    assert_eq!(stdout(&delete), "default/db deleted (dry run)\n");
    assert!(extsvc(&app, &["get", "db"]).await.status.success());
}

#[tokio::test]
async fn wait_times_out_with_its_code_and_says_why() {
    let app = spawn_app().await;
    app.register("ops", "db").await;

    let output = extsvc(
        &app,
        &[
            "wait",
            "-n",
            "ops",
            "db",
            "--for",
            "synced",
            "--timeout",
            "1s",
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert_eq!(
        stderr(&output),
        "error: ops/db is not synced after 1s\n  generation 1 is not in the cluster yet\n  the controller has not reported on it yet\n"
    );
    let gone = extsvc(&app, &["wait", "-n", "ops", "nothing", "--for", "deleted"]).await;
    assert!(gone.status.success(), "{gone:?}");
    assert_eq!(stdout(&gone), "ops/nothing deleted\n");
    let missing = extsvc(&app, &["wait", "-n", "ops", "nothing", "--timeout", "1s"]).await;
    assert_eq!(missing.status.code(), Some(4));
}

#[tokio::test]
async fn maintenance_events_and_health_from_the_command_line() {
    let app = spawn_app().await;
    app.register("ops", "db").await;

    let start = extsvc(
        &app,
        &[
            "maintenance",
            "-n",
            "ops",
            "db",
            "--address",
            "192.0.2.10",
            "--reason",
            "kernel upgrade",
            "--for",
            "2h",
        ],
    )
    .await;
    assert!(start.status.success(), "{start:?}");
    assert!(stdout(&start).contains("192.0.2.10"), "{}", stdout(&start));
    assert!(stdout(&start).contains("kernel upgrade"));
    let unknown = extsvc(
        &app,
        &[
            "maintenance",
            "-n",
            "ops",
            "db",
            "--address",
            "10.9.9.9",
            "--reason",
            "x",
            "--for",
            "1h",
        ],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(3));
    assert!(
        stderr(&unknown).contains("/addresses/0: is not an address of this service"),
        "{}",
        stderr(&unknown)
    );

    let events = extsvc(&app, &["events", "-n", "ops", "db", "-o", "json"]).await;
    assert!(events.status.success(), "{events:?}");
    let types: Vec<String> = stdout(&events)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("a JSON line")["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(types, ["Registered", "MaintenanceStarted"]);

    let end = extsvc(&app, &["maintenance", "-n", "ops", "db", "--end"]).await;
    assert_eq!(stdout(&end), "ops/db: no address in maintenance\n");
    let health = extsvc(&app, &["health", "-n", "ops", "db", "-o", "json"]).await;
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).expect("JSON health");
    assert_eq!(health["name"], "db");
}
