//! The binary end to end with a Reddit source on a loopback test server: `scan` shows the
//! opted-out users and the forced rate-limit waits in its table, and `status` shows them per
//! source for the last run, so an operator sees a throttled source. Also: a Reddit source's
//! config mistakes are reported with their key and line.

mod common;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn listing() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"kind": "Listing", "data": {"children": [], "after": null, "before": null}}))
}

fn about(name: &str, hide: bool) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"kind": "t2", "data": {
        "name": name, "id": "abc", "hide_from_robots": hide,
        "subreddit": {"title": "", "public_description": "Gardener"}
    }}))
}

fn reddit_source(server: &MockServer) -> String {
    format!(
        r#"
[[sources]]
name = "reddit-test"
kind = "reddit"
client_id_env = "RDT_CLI_ID"
client_secret_env = "RDT_CLI_SECRET"
token_url = "{uri}/api/v1/access_token"
api_base = "{uri}"
users = ["quiet_one", "quiet_two", "open_one"]
retry_backoff_ms = 10
max_requests_per_second = 1000
"#,
        uri = server.uri()
    )
}

/// The line of `table` for `source`, split on whitespace, with the header's column of `name`.
fn column(table: &str, source: &str, name: &str) -> String {
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let col = header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} column in {table}"));
    let row: Vec<&str> = table.lines().find(|l| l.starts_with(source)).unwrap().split_whitespace().collect();
    row[col].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_and_status_show_opt_outs_and_rate_limit_waits_per_source() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/access_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "T", "token_type": "bearer", "expires_in": 3600})),
        )
        .mount(&server)
        .await;
    // The platform throttles once.
    Mock::given(path("/user/open_one/about"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/user/open_one/about")).respond_with(about("open_one", false)).mount(&server).await;
    Mock::given(path("/user/quiet_one/about")).respond_with(about("quiet_one", true)).mount(&server).await;
    Mock::given(path("/user/quiet_two/about")).respond_with(about("quiet_two", true)).mount(&server).await;
    Mock::given(path("/user/open_one/submitted")).respond_with(listing()).mount(&server).await;
    Mock::given(path("/user/open_one/comments")).respond_with(listing()).mount(&server).await;

    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), &reddit_source(&server));
    let cmd = |args: &'static [&'static str]| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_exposure-monitor"))
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("RDT_CLI_ID", "cli-id")
                .env("RDT_CLI_SECRET", "cli-secret")
                .output()
                .unwrap()
        })
    };
    let out = cmd(&["scan"]).await.unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{table}\n{stderr}");
    assert_eq!(column(&table, "reddit-test", "opted_out"), "2", "{table}");
    assert_eq!(column(&table, "reddit-test", "rl_waits"), "1", "{table}");
    assert_eq!(column(&table, "reddit-test", "errors"), "0", "opt-outs are not errors: {table}");
    assert_eq!(column(&table, "demo", "rl_waits"), "0", "{table}");
    assert!(!stderr.contains("cli-secret") && !table.contains("cli-secret"), "the secret was printed");

    let out = cmd(&["status"]).await.unwrap();
    let status = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{status}");
    let line = status.lines().find(|l| l.trim_start().starts_with("reddit-test")).unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("last run: 1 rate-limit wait (throttled), 2 opted out"), "{line}");
    let line = status.lines().find(|l| l.trim_start().starts_with("demo ")).unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("last run: 0 rate-limit waits, 0 opted out"), "{line}");
    assert!(status.contains("opted out 2, rate-limit waits 1"), "{status}");
}

#[test]
fn reddit_config_mistakes_name_their_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "\n[[sources]]\nname = \"r\"\nkind = \"reddit\"\nclient_id_env = \"A\"\nclient_secret_env = \"B\"\nsubreddits = [\"no spaces allowed\"]\n";
    let config = common::demo_config(dir.path(), extra);
    let err = exposure_monitor::config::Config::load(&config).unwrap_err().to_string();
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text.lines().position(|l| l.starts_with("subreddits")).unwrap() + 1;
    assert!(err.contains("subreddits") && err.contains(&format!("line {line}:")), "line {line}: {err}");
    assert!(err.contains("not a subreddit name"), "{err}");

    let extra = "\n[[sources]]\nname = \"r\"\nkind = \"reddit\"\nclient_id_env = \"A\"\nclient_secret = \"hunter2\"\n";
    let config = common::demo_config(dir.path(), extra);
    let err = exposure_monitor::config::Config::load(&config).unwrap_err().to_string();
    assert!(err.contains("client_secret"), "{err}");
}
