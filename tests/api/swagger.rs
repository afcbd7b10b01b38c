//! Swagger UI in a real browser: headless Chromium (Debian's), driven over the Chrome
//! DevTools protocol the way a person would use the page: the Authorize button, then
//! "Try it out" and "Execute" on an operation.

use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::spawn_app;
use crate::settings::ADMIN_TOKEN;

/// Chromium with a page open at `url`, and the DevTools socket of that page.
struct Browser {
    _process: tokio::process::Child,
    _profile: tempfile::TempDir,
    page: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Browser {
    async fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut process = tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium runs (Debian package `chromium`)");
        // Chromium says where its DevTools listen: ws://127.0.0.1:PORT/devtools/browser/ID.
        let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
        let port = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("stderr is readable") {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .expect("chromium starts within 60 s")
        .expect("chromium prints its DevTools address");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("the DevTools answer")
            .json()
            .await
            .expect("a JSON list");
        let page = targets
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page")
            .to_owned();
        let (page, _) = tokio_tungstenite::connect_async(page)
            .await
            .expect("the page's DevTools socket");
        Self {
            _process: process,
            _profile: profile,
            page,
            next_id: 0,
        }
    }

    /// Runs `script` (an expression, awaited when it is a promise) in the page and returns
    /// its value; a thrown error fails the test with its message.
    async fn evaluate(&mut self, script: &str) -> Value {
        match self.try_evaluate(script).await {
            Ok(value) => value,
            Err(answer) => panic!("the page did not run the script: {answer}"),
        }
    }

    /// Waits until Swagger UI has loaded (the page redirects to `index.html` first, which
    /// ends any script started before).
    async fn wait_for_swagger_ui(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .try_evaluate("document.readyState === 'complete' && typeof window.ui === 'object'")
                .await;
            if ready == Ok(Value::Bool(true)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Swagger UI did not load within 60 s: {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_evaluate(&mut self, script: &str) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": script, "awaitPromise": true, "returnByValue": true},
        });
        self.page
            .send(Message::text(command.to_string()))
            .await
            .expect("send to DevTools");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.page.next())
                .await
                .expect("DevTools answer within 60 s")
                .expect("the socket is open")
                .expect("a message");
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).expect("JSON");
            if answer["id"] != id {
                continue;
            }
            let result = &answer["result"];
            if answer.get("error").is_some() || result.get("exceptionDetails").is_some() {
                return Err(answer);
            }
            return Ok(result["result"]["value"].clone());
        }
    }
}

/// Clicks through Swagger UI as a person would: Authorize with the token, then register
/// the example document Swagger UI fills in, with "Try it out" and "Execute". Returns the
/// status Swagger UI shows.
/// Every step waits for its element (a condition), never for a fixed time.
const REGISTER_THROUGH_THE_PAGE: &str = r##"
(async () => {
  const pause = () => new Promise(resolve => setTimeout(resolve, 50));
  const until = async (find, what) => {
    for (let i = 0; i < 600; i++) {
      const found = find();
      if (found) return found;
      await pause();
    }
    const open = document.querySelector(".opblock.is-open");
    throw new Error("not found within 30 s: " + what + (open ? "; the operation shows: " + open.innerText.slice(0, 3000) : ""));
  };
  // React listens for input events; set the value the way typing does, then leave the
  // field (Swagger UI's inputs pass their value on when they lose focus, at once).
  const type = (element, value) => {
    const prototype = element.tagName === "TEXTAREA" ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
    element.focus();
    Object.getOwnPropertyDescriptor(prototype, "value").set.call(element, value);
    element.dispatchEvent(new Event("input", { bubbles: true }));
    element.dispatchEvent(new Event("change", { bubbles: true }));
    element.blur();
  };
  (await until(() => document.querySelector("button.btn.authorize"), "the Authorize button")).click();
  type(await until(() => document.querySelector(".modal-ux input"), "the token field"), TOKEN);
  (await until(() => document.querySelector(".modal-ux .auth-btn-wrapper button.authorize"), "Authorize in the dialog")).click();
  (await until(() => document.querySelector(".modal-ux button.btn-done"), "Close")).click();
  const operation = "#operations-external-services-register_service";
  (await until(() => document.querySelector(operation + " .opblock-summary-control"), "the PUT operation")).click();
  (await until(() => document.querySelector(operation + " button.try-out__btn"), "Try it out")).click();
  type(await until(() => document.querySelector(operation + ' input[placeholder="namespace"]'), "namespace"), "default");
  // The body stays as Swagger UI filled it in: the operation's example.
  await until(() => document.querySelector(operation + " textarea.body-param__text"), "the example body");
  (await until(() => document.querySelector(operation + " button.execute"), "Execute")).click();
  const status = await until(() => {
    const cell = document.querySelector(operation + " .live-responses-table tbody .response-col_status");
    return cell && /^[0-9]{3}/.test(cell.textContent.trim()) ? cell : null;
  }, "the response");
  return status.textContent.trim().slice(0, 3);
})()
"##;

#[tokio::test]
async fn swagger_ui_registers_a_service_with_the_token_given_to_authorize() {
    let app = spawn_app().await;
    let mut browser = Browser::open(&format!("{}/swagger-ui/", app.address)).await;
    let script = REGISTER_THROUGH_THE_PAGE
        .replace("TOKEN", &serde_json::to_string(ADMIN_TOKEN).expect("JSON"));
    browser.wait_for_swagger_ui().await;
    let status = browser.evaluate(&script).await;
    assert_eq!(status, "201", "Swagger UI shows the answer's status");

    let stored = app.get(&app.item("default", "billing-db")).await;
    assert_eq!(stored.status(), StatusCode::OK);
    let audit: Value = app
        .get(&format!("{}/api/v1/audit?limit=1", app.address))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(audit["items"][0]["actor"], "platform-admin", "{audit}");
    assert_eq!(audit["items"][0]["method"], "POST");
    assert_eq!(audit["items"][0]["namespace"], "default");
}
