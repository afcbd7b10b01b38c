//! A real Kubernetes control plane for integration tests: etcd, kube-apiserver and
//! kube-controller-manager built from Go modules by `tests/controlplane/build.sh` and
//! started by its `controlplane` launcher (see `tests/controlplane/README.md`).
//!
//! ```ignore
//! #[path = "../support/controlplane.rs"]
//! mod controlplane;
//!
//! let cp = controlplane::shared().await;
//! let client = cp.client().await;
//! let ns = cp.fresh_namespace().await;
//! ```
//!
//! One control plane serves every test of a binary; set `EXTSVC_TEST_KUBECONFIG` to use
//! an already running one instead. A test that stops and starts the API server takes its
//! own with [`ControlPlane::start_private`].
//!
//! The helpers panic with a readable message instead of returning errors: a test cannot do
//! anything useful with a control plane that failed to start.
#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use tokio::sync::OnceCell;

/// Env var naming the kubeconfig of a running API server to use instead of starting one.
pub const KUBECONFIG_ENV: &str = "EXTSVC_TEST_KUBECONFIG";
/// Field manager of the server-side applies made by these helpers.
pub const FIELD_MANAGER: &str = "extsvc-tests";
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);
/// The garbage collector learns a new kind at its next discovery (every 30 s), and
/// retries what it could not map with exponential backoff: at worst about twice that.
const GARBAGE_COLLECTOR_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running control plane, or an external one named by [`KUBECONFIG_ENV`].
pub struct ControlPlane {
    kubeconfig: PathBuf,
    server: String,
    launcher: Option<Arc<Mutex<Launcher>>>,
}

/// The launcher process and the pipes to talk to it. Closing its stdin (dropping
/// `stdin`, or this test process exiting) makes it stop the control plane.
struct Launcher {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    ready: Ready,
}

/// The fields of the launcher's `ready key=value ...` line.
#[derive(Debug, Clone)]
struct Ready(HashMap<String, String>);

impl Ready {
    fn parse(line: &str) -> Option<Self> {
        let fields = line.strip_prefix("ready ")?;
        Some(Self(
            fields
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ))
    }

    fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("launcher's ready line has no {key}=: {:?}", self.0))
    }

    fn pid(&self, key: &str) -> u32 {
        let value = self.get(key);
        value
            .parse()
            .unwrap_or_else(|e| panic!("launcher's {key}={value} is not a pid: {e}"))
    }
}

/// The control plane shared by all tests of this test binary, started on first use.
///
/// It lives until the test process exits: the launcher then sees its stdin close (and its
/// parent change) and stops the control plane.
pub async fn shared() -> &'static ControlPlane {
    // tokio's OnceCell: concurrent first callers wait for one start instead of blocking
    // their runtime threads. A failure is kept so later tests fail fast with the cause.
    static SHARED: OnceCell<Result<ControlPlane, String>> = OnceCell::const_new();
    let result = SHARED
        .get_or_init(|| async {
            if let Some(path) = std::env::var_os(KUBECONFIG_ENV) {
                return Ok(ControlPlane::external(PathBuf::from(path)));
            }
            tokio::task::spawn_blocking(ControlPlane::launch)
                .await
                .map_err(join_error_message)
        })
        .await;
    match result {
        Ok(cp) => cp,
        Err(message) => panic!("the shared control plane did not start: {message}"),
    }
}

/// Builds (or finds cached) the control plane's binaries and the launcher; returns their
/// directory.
/// The first call in a process runs `tests/controlplane/build.sh`, which takes seconds
/// when the binaries are cached and many minutes on a cold Go build cache.
pub fn bin_dir() -> &'static Path {
    static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();
    BIN_DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/build.sh");
        eprintln!("controlplane: running {}", script.display());
        // stderr is inherited so that the build's progress reaches the terminal.
        let output = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        match (output.status.success(), last) {
            (true, Some(dir)) => PathBuf::from(dir.trim()),
            _ => panic!(
                "{} failed ({}); its output is above. stdout: {stdout}",
                script.display(),
                output.status
            ),
        }
    })
}

impl ControlPlane {
    fn external(kubeconfig: PathBuf) -> Self {
        let config = Kubeconfig::read_from(&kubeconfig).unwrap_or_else(|e| {
            panic!(
                "{KUBECONFIG_ENV}={}: cannot read it: {e}",
                kubeconfig.display()
            )
        });
        let server = config
            .clusters
            .iter()
            .find_map(|c| c.cluster.as_ref()?.server.clone())
            .unwrap_or_default();
        Self {
            kubeconfig,
            server,
            launcher: None,
        }
    }

    /// Starts a control plane of its own, controllable with [`Self::stop_apiserver`] and
    /// [`Self::start_apiserver`]. It is stopped when the value is dropped.
    pub async fn start_private() -> Self {
        tokio::task::spawn_blocking(Self::launch)
            .await
            .unwrap_or_else(|e| panic!("private control plane: {}", join_error_message(e)))
    }

    /// Runs the launcher and waits for its `ready` line. Blocking.
    fn launch() -> Self {
        let launcher_bin = bin_dir().join("controlplane");
        let mut child = Command::new(&launcher_bin)
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--control-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", launcher_bin.display()));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut launcher = Launcher {
            child,
            stdin,
            stdout,
            ready: Ready(HashMap::new()),
        };
        launcher.ready = launcher.read_ready();
        Self {
            kubeconfig: PathBuf::from(launcher.ready.get("kubeconfig")),
            server: launcher.ready.get("server").to_owned(),
            launcher: Some(Arc::new(Mutex::new(launcher))),
        }
    }

    /// Path of the kubeconfig (admin token, CA of the serving certificate).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A new client for the calling test's runtime. A `kube::Client` runs a task on the
    /// runtime that built it, so clients are not shared between `#[tokio::test]`s.
    pub async fn client(&self) -> Client {
        Client::try_from(self.config().await)
            .expect("kube::Client from the control plane's kubeconfig")
    }

    /// The `kube::Config` behind [`Self::client`], for code under test that takes one.
    pub async fn config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.kubeconfig.display()));
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e}", self.kubeconfig.display()))
    }

    /// Creates a namespace with a unique name and returns the name. Tests leave it behind
    /// (deleting one takes the namespace controller seconds), unless deletion is the test.
    pub async fn fresh_namespace(&self) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("test-{}", &id[..12]);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client().await)
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        name
    }

    /// Server-side applies the CRDs and waits until the API server serves each of them.
    pub async fn install_crds(&self, crds: &[CustomResourceDefinition]) {
        let api = Api::<CustomResourceDefinition>::all(self.client().await);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let names: Vec<&str> = crds
            .iter()
            .map(|crd| {
                crd.metadata
                    .name
                    .as_deref()
                    .expect("a CRD has metadata.name")
            })
            .collect();
        for (crd, name) in crds.iter().zip(&names) {
            api.patch(name, &params, &Patch::Apply(crd))
                .await
                .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        }
        for name in names {
            let established = await_condition(api.clone(), name, conditions::is_crd_established());
            tokio::time::timeout(CRD_ESTABLISHED_TIMEOUT, established)
                .await
                .unwrap_or_else(|_| {
                    panic!("CRD {name} not Established after {CRD_ESTABLISHED_TIMEOUT:?}")
                })
                .unwrap_or_else(|e| panic!("waiting for CRD {name} to be Established: {e}"));
        }
    }

    /// Waits until the garbage collector collects dependents of an owner of kind `kind`
    /// (`api_version` as in an ownerReference). It learns a kind installed by a CRD only
    /// at its next discovery, so a test that deletes an owner of such a kind right after
    /// installing the CRD would otherwise wait for that on its own deadline. The probe is
    /// a ConfigMap whose owner of that kind does not exist: collected once the kind is
    /// known.
    pub async fn wait_until_garbage_collector_knows(&self, api_version: &str, kind: &str) {
        let namespace = self.fresh_namespace().await;
        let config_maps = Api::<ConfigMap>::namespaced(self.client().await, &namespace);
        let probe = ConfigMap {
            metadata: ObjectMeta {
                name: Some("garbage-collector-probe".to_owned()),
                owner_references: Some(vec![OwnerReference {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                    name: "absent-owner".to_owned(),
                    uid: uuid::Uuid::new_v4().to_string(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let created = config_maps
            .create(&PostParams::default(), &probe)
            .await
            .unwrap_or_else(|e| panic!("creating the garbage collector's probe: {e}"));
        let uid = created.metadata.uid.expect("a created object has a uid");
        let collected = await_condition(
            config_maps,
            "garbage-collector-probe",
            conditions::is_deleted(&uid),
        );
        tokio::time::timeout(GARBAGE_COLLECTOR_DISCOVERY_TIMEOUT, collected)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the garbage collector did not collect a dependent of a missing {kind} \
                     within {GARBAGE_COLLECTOR_DISCOVERY_TIMEOUT:?}: is \
                     kube-controller-manager running?"
                )
            })
            .unwrap_or_else(|e| panic!("watching the garbage collector's probe: {e}"));
    }

    /// A `kubectl` command for this control plane: the kubectl built with it, with
    /// `--kubeconfig` set.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(bin_dir().join("kubectl"));
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// Stops kube-apiserver only; etcd keeps the data. Private control planes only.
    pub async fn stop_apiserver(&self) {
        let answer = self.send("stop-apiserver").await;
        assert_eq!(answer, "stopped", "launcher's answer to stop-apiserver");
    }

    /// Starts kube-apiserver again on the same port with the same certificates and token,
    /// and waits until it is ready. Private control planes only.
    pub async fn start_apiserver(&self) {
        let answer = self.send("start-apiserver").await;
        let ready = Ready::parse(&answer)
            .unwrap_or_else(|| panic!("launcher's answer to start-apiserver: {answer}"));
        self.launcher().lock().expect("launcher lock").ready = ready;
    }

    /// Pid of the running kube-apiserver (of a launched control plane).
    pub fn apiserver_pid(&self) -> u32 {
        self.ready_pid("apiserver-pid")
    }

    /// Pid of the running kube-controller-manager (of a launched control plane).
    pub fn controller_manager_pid(&self) -> u32 {
        self.ready_pid("controller-manager-pid")
    }

    /// Pid of etcd (of a launched control plane).
    pub fn etcd_pid(&self) -> u32 {
        self.ready_pid("etcd-pid")
    }

    /// The pid named `key` in the launcher's latest `ready` line.
    fn ready_pid(&self, key: &str) -> u32 {
        self.launcher()
            .lock()
            .expect("launcher lock")
            .ready
            .pid(key)
    }

    fn launcher(&self) -> &Arc<Mutex<Launcher>> {
        self.launcher
            .as_ref()
            .expect("this control plane comes from EXTSVC_TEST_KUBECONFIG and has no launcher")
    }

    /// Sends one command line and returns the answer line; the pipes block, so this runs
    /// on tokio's blocking pool while the test's other tasks (a controller) keep running.
    async fn send(&self, command: &'static str) -> String {
        let launcher = Arc::clone(self.launcher());
        tokio::task::spawn_blocking(move || {
            let mut launcher = launcher.lock().expect("launcher lock");
            launcher.send(command)
        })
        .await
        .unwrap_or_else(|e| panic!("{command}: {}", join_error_message(e)))
    }
}

impl Launcher {
    fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
            Err(e) => panic!("reading the launcher's stdout: {e}"),
        }
    }

    fn read_ready(&mut self) -> Ready {
        loop {
            match self.read_line() {
                Some(line) => {
                    if let Some(ready) = Ready::parse(&line) {
                        return ready;
                    }
                }
                None => {
                    let status = self
                        .child
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|e| e.to_string());
                    panic!(
                        "controlplane launcher exited before it was ready ({status}); its log is above"
                    )
                }
            }
        }
    }

    fn send(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("launcher stdin is open");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("sending {command} to the launcher: {e}"));
        self.read_line().unwrap_or_else(|| {
            panic!("launcher exited while answering {command}; its log is above")
        })
    }
}

impl Drop for Launcher {
    /// Closes stdin, which makes the launcher stop the control plane, and waits for
    /// it so that a test's control plane is gone when the test is.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The message of a panic in a blocking task, so that the test's own panic repeats it.
fn join_error_message(err: tokio::task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "unknown panic".to_owned()),
        Err(err) => err.to_string(),
    }
}
