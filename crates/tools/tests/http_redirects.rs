//! Redirects are reported, never followed: following one would carry the
//! tool's headers, secrets included, to another address (reqwest strips
//! only `Authorization`, `Cookie` and `Proxy-Authorization` across hosts).

mod common;

use common::{TestServer, client, context, decl, params, spec};
use rein_tools::HttpTool;
use rein_types::{Tool, ToolOutcome};
use serde_json::json;

const VAR: &str = "REIN_TEST_REDIRECT_KEY";
const SECRET: &str = "rk-77aa88bb99cc";

#[tokio::test]
async fn a_redirect_to_another_server_gets_no_secret_header() {
    // SAFETY: this binary has a single test and sets the variable before any
    // other thread of its own reads the environment.
    unsafe { std::env::set_var(VAR, SECRET) };
    let tool_server = TestServer::start().await;
    let elsewhere = TestServer::start().await;
    let target = elsewhere.base.trim_start_matches("http://");
    let mut d = decl("GET", tool_server.url(&format!("/redirect/{target}/echo")));
    d.headers.insert("X-Api-Key".into(), format!("${{{VAR}}}"));
    let tool = HttpTool::new(spec("crm", params(&[])), d, client()).unwrap();

    let outcome = tool.call(json!({}), &context()).await;
    let ToolOutcome::Error { message, hint, retryable } = outcome else {
        panic!("expected an error, got {outcome:?}");
    };
    assert!(elsewhere.requests().is_empty(), "the redirect was followed: {:?}", elsewhere.requests());
    assert_eq!(tool_server.requests().len(), 1, "sent once, not retried");
    assert_eq!(tool_server.requests()[0].headers.get("x-api-key").map(String::as_str), Some(SECRET));
    assert!(!retryable);
    assert!(message.contains("302") && message.contains(&format!("{}/echo", elsewhere.base)), "{message}");
    let hint = hint.unwrap_or_default();
    assert!(hint.contains("not followed") && hint.contains("out of date"), "{hint}");
}
