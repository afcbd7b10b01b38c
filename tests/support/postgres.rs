//! A real PostgreSQL for tests: one server per machine user (reused across runs, or the
//! one named by `EXTSVC_TEST_DATABASE_URL`), and a fresh database for every test.

use std::sync::OnceLock;

use sqlx::Connection;

/// URL of a database on the test server that tests may create databases from.
fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("EXTSVC_TEST_DATABASE_URL") {
            return url;
        }
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("id -u runs");
        let dir = std::env::temp_dir().join(format!(
            "extsvc-test-pg-{}",
            String::from_utf8_lossy(&uid.stdout).trim()
        ));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres");
        let output = std::process::Command::new(script)
            .arg("start")
            .arg(&dir)
            .env("PG_DISPOSABLE", "1")
            .output()
            .expect("scripts/postgres runs");
        assert!(
            output.status.success(),
            "could not start a test PostgreSQL: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("UTF-8 URL")
            .trim()
            .to_owned()
    })
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(admin)
        .await
        .expect("the test PostgreSQL accepts connections");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .expect("CREATE DATABASE");
    let (server, _) = admin
        .rsplit_once('/')
        .expect("a URL ending in a database name");
    format!("{server}/{name}")
}
