//! The server's log as a file or a pipe holds it: the real binary, its stderr piped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn a_log_read_through_a_pipe_has_no_escape_sequences() {
    let database_url = crate::postgres::fresh_database().await;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_extsvc"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-kubernetes"])
        .env("DATABASE_URL", &database_url)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env_remove("EXTSVC_LOG_JSON")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the extsvc binary starts");
    let stderr = server.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();

    let mut read = Vec::new();
    while !read.iter().any(|line: &String| line.contains("serving on")) {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no log line within 60 s; so far {read:?}"))
            .expect("stderr is readable")
            .unwrap_or_else(|| panic!("the server exited; it logged {read:?}"));
        read.push(line);
    }

    assert!(
        read.iter().all(|line| !line.contains('\x1b')),
        "escape sequences in {read:?}"
    );
}

/// Tokens never reach the log, even at debug level: the platform admin's, a team's API
/// token, and tokens that are refused.
#[tokio::test]
async fn no_token_is_ever_logged() {
    let database_url = crate::postgres::fresh_database().await;
    let admin = crate::settings::ADMIN_TOKEN;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_extsvc"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-kubernetes"])
        .env("DATABASE_URL", &database_url)
        .env("EXTSVC_ADMIN_TOKEN", admin)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .env_remove("EXTSVC_LOG_JSON")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the extsvc binary starts");
    let stderr = server.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut read: Vec<String> = Vec::new();
    let address = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no log line within 60 s; so far {read:?}"))
            .expect("stderr is readable")
            .unwrap_or_else(|| panic!("the server exited; it logged {read:?}"));
        let serving = line
            .split("serving on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned);
        read.push(line);
        if let Some(address) = serving {
            break address;
        }
    };

    let http = crate::settings::client_with(admin);
    let team = serde_json::json!({"name": "payments", "namespaces": ["payments"]});
    let made = http
        .post(format!("{address}/api/v1/teams"))
        .json(&team)
        .send()
        .await;
    assert_eq!(made.expect("POST answers").status(), 201);
    let body = serde_json::json!({"name": "ci", "scopes": ["write"]});
    let token: serde_json::Value = http
        .post(format!("{address}/api/v1/teams/payments/tokens"))
        .json(&body)
        .send()
        .await
        .expect("POST answers")
        .json()
        .await
        .expect("a token");
    let secret = token["token"].as_str().expect("the secret").to_owned();
    let refused = [
        "extsvc_refused-0123456789",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",
    ];
    for bearer in [secret.as_str(), refused[0], refused[1]] {
        let url = format!("{address}/api/v1/namespaces/payments/external-services");
        let client = crate::settings::client_with(bearer);
        client.get(&url).send().await.expect("GET answers");
    }

    server.start_kill().expect("the server stops");
    while let Ok(Some(line)) = lines.next_line().await {
        read.push(line);
    }
    for secret in [admin, secret.as_str(), refused[0], refused[1]] {
        let leaked: Vec<&String> = read.iter().filter(|line| line.contains(secret)).collect();
        assert!(leaked.is_empty(), "a token in the log: {leaked:?}");
    }
    assert!(read.len() > 5, "the debug log says something: {read:?}");
}
