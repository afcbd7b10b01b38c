//! A real Prometheus (Debian's package `prometheus`, which `scripts/test` installs)
//! scraping one target every second, on loopback, with its own temporary storage.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

pub struct Prometheus {
    api: String,
    log: PathBuf,
    http: reqwest::Client,
    process: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) at `/metrics`, with a bearer
    /// token.
    pub fn scraping(target: &str, token: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n- job_name: extsvc\n  authorization:\n    credentials: '{token}'\n  static_configs:\n  - targets: ['{target}']\n"
            ),
        )
        .expect("write the configuration");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log = dir.path().join("prometheus.log");
        let process = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus runs (Debian package prometheus)");
        Self {
            api: format!("http://127.0.0.1:{port}/api/v1"),
            log,
            http: reqwest::Client::new(),
            process,
            _dir: dir,
        }
    }

    /// Waits until the target is up and Prometheus's metadata gives each family its
    /// type; returns the metadata. Fails after `seconds`, showing what Prometheus saw.
    pub async fn wait_for_types(&mut self, families: &[(&str, &str)], seconds: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Ok(Some(status)) = self.process.try_wait() {
                panic!("prometheus exited ({status}): {}", self.log());
            }
            let targets = self.get("targets").await;
            let metadata = self.get("metadata").await;
            let target = &targets["data"]["activeTargets"][0];
            let typed = families
                .iter()
                .all(|(family, kind)| metadata["data"][family][0]["type"] == *kind);
            if target["health"] == "up" && target["lastError"] == "" && typed {
                return metadata;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus did not read {families:?} within {seconds} s:\ntargets: {targets}\nmetadata: {metadata}\nlog: {}",
                self.log()
            );
            // Prometheus scrapes once a second.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A JSON answer of the HTTP API, or `Null` while it is not up yet.
    async fn get(&self, path: &str) -> Value {
        match self.http.get(format!("{}/{path}", self.api)).send().await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
