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
