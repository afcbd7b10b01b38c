//! The CI examples under examples/ci/, run against a real server and control plane:
//! `register-and-wait.sh` with bash and curl, and the steps of the GitHub Actions and
//! GitLab CI examples with the real `extsvc` binary, as a pipeline would run them.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::backend::Backend;
use crate::health::{hosts, take_ip};
use crate::helpers::{TestOperator, eventually, spawn_operator};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ci");

fn example(file: &str) -> String {
    std::fs::read_to_string(format!("{EXAMPLES}/{file}"))
        .unwrap_or_else(|e| panic!("examples/ci/{file}: {e}"))
}

/// What a run of a script did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// The health register-and-wait.sh printed: its one line of JSON.
    fn health(&self) -> Value {
        self.stdout
            .lines()
            .filter(|line| line.starts_with('{'))
            .find_map(|line| serde_json::from_str::<Value>(line).ok())
            .unwrap_or_else(|| panic!("no health in the output: {self}"))
    }

    /// The reasons register-and-wait.sh gave for timing out, one a line.
    fn reasons(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .skip_while(|line| !line.ends_with("; why:"))
            .skip(1)
            .take_while(|line| line.starts_with("  "))
            .map(str::trim)
            .collect()
    }
}

/// `bash args...` in `dir`, with the environment a pipeline of `op`'s namespace would
/// have, ended if it runs longer than `limit`.
async fn bash(
    op: &TestOperator,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Run {
    let mut command = tokio::process::Command::new("bash");
    command
        .args(args)
        .current_dir(dir)
        .env("EXTSVC_SERVER", &op.address)
        .env("EXTSVC_TOKEN", crate::settings::ADMIN_TOKEN)
        .env("EXTSVC_NAMESPACE", &op.namespace)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    // curl talks to the server on loopback directly, whatever proxy the machine has.
    for proxy in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        command.env_remove(proxy);
    }
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("bash {args:?} did not end within {limit:?}"))
        .expect("bash runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `bash register-and-wait.sh manifest name` against `op`, for at most
/// `wait_timeout` seconds of waiting (and 60 s more for everything else).
async fn register_and_wait(
    op: &TestOperator,
    manifest: &Path,
    name: &str,
    wait_timeout: u64,
) -> Run {
    let script = format!("{EXAMPLES}/register-and-wait.sh");
    let manifest = manifest.to_str().expect("a UTF-8 path");
    let timeout = wait_timeout.to_string();
    bash(
        op,
        Path::new(manifest).parent().expect("a directory"),
        &[&script, manifest, name],
        &[("WAIT_TIMEOUT", &timeout)],
        Duration::from_secs(wait_timeout + 60),
    )
    .await
}

/// examples/ci/service.yaml without its health checks, so that nothing is ever sent to
/// its documentation addresses (and each is ready once in the cluster); written as
/// `deploy/external-services/billing-db.yaml` in `dir`, as the pipelines expect it.
fn example_without_checks(dir: &Path) -> (Value, std::path::PathBuf) {
    let mut document: Value = serde_saphyr::from_str(&example("service.yaml")).expect("YAML");
    document["spec"]
        .as_object_mut()
        .expect("a spec")
        .remove("healthChecks");
    let manifests = dir.join("deploy/external-services");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifest = manifests.join("billing-db.yaml");
    std::fs::write(&manifest, serde_saphyr::to_string(&document).unwrap()).unwrap();
    (document, manifest)
}

#[tokio::test]
async fn the_script_registers_a_service_and_waits_until_it_is_ready() {
    let op = spawn_operator().await;
    let example = example("service.yaml");
    // The example as it stands is a valid document, its health checks included; a dry run
    // writes nothing and sends no traffic to its addresses.
    let dry_run = op
        .http
        .put(format!("{}?dryRun=true", op.item("billing-db")))
        .header("content-type", "application/yaml")
        .body(example.clone())
        .send()
        .await
        .expect("PUT answers");
    assert!(
        dry_run.status().is_success(),
        "examples/ci/service.yaml is refused: {}",
        dry_run.text().await.unwrap_or_default()
    );
    let dir = tempfile::tempdir().unwrap();
    let (document, manifest) = example_without_checks(dir.path());
    let addresses = document["spec"]["endpoints"].as_array().unwrap().len();

    let run = register_and_wait(&op, &manifest, "billing-db", 60).await;

    assert_eq!(run.code, Some(0), "{run}");
    let subject = format!("{}/billing-db", op.namespace);
    assert!(
        run.stdout.contains(&format!("{subject} created\n")),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("{subject} is ready\n")),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("health of {subject}: ")),
        "{run}"
    );
    let health = run.health();
    assert_eq!(health["namespace"], op.namespace.as_str(), "{run}");
    assert_eq!(health["name"], "billing-db", "{run}");
    // It answered the moment the service was ready, so the API says so too.
    let (status, registered) = op.get("billing-db").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let ports = |document: &Value| -> Vec<(Value, Value)> {
        document["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p["name"].clone(), p["port"].clone()))
            .collect()
    };
    assert_eq!(ports(&registered), ports(&document));
    assert_eq!(
        registered["status"]["ready"],
        format!("{addresses}/{addresses}")
    );
}

#[tokio::test]
async fn the_script_exits_7_saying_why_when_the_service_is_not_ready_in_time() {
    let op = spawn_operator().await;
    let backend = Backend::start(hosts(), take_ip(), 0, 503);
    let ip = backend.address.ip();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("flaky.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: extsvc.dev/v1alpha1\nkind: ExternalService\nmetadata:\n  name: flaky\nspec:\n  ports:\n  - name: http\n    port: {port}\n  endpoints:\n  - address: {ip}\n  healthChecks:\n  - name: up\n    http: {{port: http, path: /healthz}}\n    periodSeconds: 1\n    timeoutSeconds: 1\n    failureThreshold: 1\n",
            port = backend.address.port()
        ),
    )
    .unwrap();
    let subject = format!("{}/flaky", op.namespace);

    let run = register_and_wait(&op, &manifest, "flaky", 3).await;

    assert_eq!(run.code, Some(7), "{run}");
    assert!(
        run.stdout.contains(&format!("{subject} created\n")),
        "{run}"
    );
    assert!(
        run.stderr
            .contains(&format!("error: {subject} is not ready after 3 s; why:\n")),
        "{run}"
    );
    // Whatever stage the service had reached in 3 s, the server's reasons are printed.
    let reasons = run.reasons();
    assert!(
        !reasons.is_empty() && !reasons.contains(&"(no reason given)"),
        "{run}"
    );
    assert!(run.stderr.contains("wait-timed-out"), "{run}");
    assert_eq!(run.health()["name"], "flaky", "{run}");

    // Once the controller has reconciled it and the probe has failed, the reasons and the
    // health name the address and the failure.
    eventually(
        30,
        "flaky reconciled with 0 of 1 addresses ready",
        || async {
            let (_, document) = op.get("flaky").await;
            let status = &document["status"];
            (status["observedGeneration"] == document["metadata"]["generation"]
                && status["ready"] == "0/1")
                .then_some(())
        },
    )
    .await;
    eventually(30, "the health to show the 503", || async {
        let (_, health) = op.health("flaky").await;
        (health["addresses"][0]["checks"][0]["lastError"] == "status 503").then_some(())
    })
    .await;

    let again = register_and_wait(&op, &manifest, "flaky", 3).await;

    assert_eq!(again.code, Some(7), "{again}");
    assert!(
        again
            .stdout
            .contains(&format!("{subject} configured (or unchanged)\n")),
        "{again}"
    );
    // Why the address is not ready: what its check found.
    let check = again.health()["addresses"][0]["checks"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        again.reasons(),
        [
            "0 of 1 addresses ready, 1 wanted".to_owned(),
            format!("{ip}: {check}: status 503")
        ],
        "{again}"
    );
    assert!(
        again
            .stdout
            .contains(&format!("health of {subject}: 0 of 1 addresses ready\n")),
        "{again}"
    );
    assert_eq!(
        again.health()["addresses"][0]["checks"][0]["lastError"],
        "status 503",
        "{again}"
    );
}

/// A directory holding the `extsvc` binary this test was built with.
fn cli_on_path(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_extsvc"), bin.join("extsvc")).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{}:{path}", bin.display())
}

/// The `run:` of the step named `name` in examples/ci/github-actions.yml.
fn github_step(workflow: &Value, name: &str) -> String {
    workflow["jobs"]["register"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| step["name"] == name)
        .and_then(|step| step["run"].as_str())
        .unwrap_or_else(|| panic!("no step {name:?} with a run"))
        .to_owned()
}

#[tokio::test]
async fn the_github_actions_steps_register_wait_and_print_the_health() {
    let op = spawn_operator().await;
    let workflow: Value = serde_saphyr::from_str(&example("github-actions.yml")).expect("YAML");
    let checkout = tempfile::tempdir().unwrap();
    example_without_checks(checkout.path());
    let runner_temp = tempfile::tempdir().unwrap();
    let path = cli_on_path(runner_temp.path());
    let env = [
        ("PATH", path.as_str()),
        ("RUNNER_TEMP", runner_temp.path().to_str().unwrap()),
    ];
    let limit = Duration::from_secs(240);
    // As `shell: bash` runs a step.
    let step = |name: &str| {
        let script = github_step(&workflow, name);
        let (op, checkout, env) = (&op, checkout.path(), &env);
        async move {
            let args = [
                "--noprofile",
                "--norc",
                "-eo",
                "pipefail",
                "-c",
                script.as_str(),
            ];
            bash(op, checkout, &args, env, limit).await
        }
    };
    let subject = format!("{}/billing-db", op.namespace);

    let register = step("Register and wait until ready").await;
    assert_eq!(register.code, Some(0), "{register}");
    assert_eq!(
        register.stdout,
        format!("{subject} created\n{subject} ready\n"),
        "{register}"
    );

    let health = step("Health of the services").await;
    assert_eq!(health.code, Some(0), "{health}");
    assert!(
        health.stdout.starts_with(&format!("{subject}: ")),
        "{health}"
    );
}

#[tokio::test]
async fn the_gitlab_ci_job_registers_waits_and_prints_the_health() {
    let op = spawn_operator().await;
    let pipeline: Value = serde_saphyr::from_str(&example("gitlab-ci.yml")).expect("YAML");
    let job = &pipeline["register"];
    let lines = |key: &str| -> String {
        let lines: Vec<&str> = job[key]
            .as_array()
            .unwrap_or_else(|| panic!("register.{key}"))
            .iter()
            .map(|line| line.as_str().expect("a line of shell"))
            .collect();
        lines.join("\n")
    };
    let project = tempfile::tempdir().unwrap();
    example_without_checks(project.path());
    // Where the job's cache keeps the CLI: with it there, before_script builds nothing.
    let cli = project.path().join(".extsvc-cli");
    cli_on_path(&cli);
    let project_dir = project.path().to_str().unwrap();
    let env = [("CI_PROJECT_DIR", project_dir)];
    let limit = Duration::from_secs(240);
    // As the runner runs a job's scripts: before_script and script in one shell,
    // after_script in another.
    let script = format!(
        "set -eo pipefail\n{}\n{}",
        lines("before_script"),
        lines("script")
    );
    let after_script = format!("set -eo pipefail\n{}", lines("after_script"));
    let subject = format!("{}/billing-db", op.namespace);

    let register = bash(&op, project.path(), &["-c", &script], &env, limit).await;
    assert_eq!(register.code, Some(0), "{register}");
    assert_eq!(
        register.stdout,
        format!("{subject} created\n{subject} ready\n"),
        "{register}"
    );

    let health = bash(&op, project.path(), &["-c", &after_script], &env, limit).await;
    assert_eq!(health.code, Some(0), "{health}");
    assert!(
        health.stdout.starts_with(&format!("{subject}: ")),
        "{health}"
    );
}
