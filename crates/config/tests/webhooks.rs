//! `[[webhooks]]`: parsed into the loaded agent and its spec (and so the
//! version), every mistake an error naming file, line and key.

mod common;

use common::{BASE, dir_with, errors, single_error, validate};
use rein_config::{load_agent, render_webhook_input};
use rein_types::WebhookDecl;
use serde_json::json;

const HOOKS: &str = r#"
[[webhooks]]
name = "github-issues"
secret_env = "GITHUB_WEBHOOK_SECRET"
input = "New issue {/issue/title}: {/issue/body}"
tolerance = "2m"

[[webhooks]]
name = "Stripe_Events"
secret_env = "STRIPE_WEBHOOK_SECRET"
"#;

#[test]
fn webhooks_are_loaded_in_order_with_their_defaults_and_change_the_version() {
    let text = format!("{BASE}{HOOKS}");
    let dir = dir_with(&[("agent.toml", &text)]);
    let loaded = load_agent(&dir.path().join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.webhooks,
        [
            WebhookDecl {
                name: "github-issues".into(),
                secret_env: "GITHUB_WEBHOOK_SECRET".into(),
                input: Some("New issue {/issue/title}: {/issue/body}".into()),
                tolerance_ms: 120_000,
            },
            WebhookDecl {
                name: "Stripe_Events".into(),
                secret_env: "STRIPE_WEBHOOK_SECRET".into(),
                input: None,
                tolerance_ms: 300_000,
            },
        ]
    );
    assert_eq!(loaded.spec.extra["webhooks"][0]["name"], "github-issues");
    // The secrets are read when deliveries arrive: unset here, a warning.
    let unset: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        unset.iter().any(|w| w.contains("webhooks[0].secret_env") && w.contains("GITHUB_WEBHOOK_SECRET")),
        "{unset:?}"
    );

    // Without webhooks the spec has none, so existing agents keep their
    // version; any change to a webhook is a new version.
    let plain = dir_with(&[("agent.toml", BASE)]);
    let plain = load_agent(&plain.path().join("agent.toml")).unwrap();
    assert!(plain.spec.extra.get("webhooks").is_none() && plain.webhooks.is_empty());
    let changed = dir_with(&[("agent.toml", &text.replace("\"2m\"", "\"3m\""))]);
    let changed = load_agent(&changed.path().join("agent.toml")).unwrap();
    assert_ne!(changed.spec.version(), loaded.spec.version());
    assert_ne!(plain.spec.version(), loaded.spec.version());

    let rendered = render_webhook_input(
        loaded.webhooks[0].input.as_deref(),
        &json!({ "issue": { "title": "Crash", "body": "At start." } }),
    );
    assert_eq!(rendered.unwrap(), "New issue Crash: At start.");
}

/// The one error for `BASE` plus `hooks`.
fn error_for(hooks: &str) -> String {
    let (dir, report) = validate(&[("agent.toml", &format!("{BASE}{hooks}"))]);
    single_error(dir.path(), &report)
}

#[test]
fn an_unknown_key_names_its_line_and_key() {
    // BASE is three lines and `hooks` starts with a newline: the table is
    // on line 5, `secret` on line 8.
    let error = error_for("\n[[webhooks]]\nname = \"x\"\nsecret_env = \"X_SECRET\"\nsecret = \"hunter2\"\n");
    assert!(error.starts_with("agent.toml:8:1: error: webhooks[0].secret: unknown key \"secret\""), "{error}");
    assert!(error.contains("secret_env"), "{error}");

    let error = error_for("\n[[webhooks]]\nname = \"x\"\nsecret_env = \"X_SECRET\"\ntolerence = \"1m\"\n");
    assert!(error.starts_with("agent.toml:8:1: error: webhooks[0].tolerence:"), "{error}");
    assert!(error.contains("did you mean \"tolerance\""), "{error}");
}

#[test]
fn each_value_is_checked_at_its_key() {
    let cases = [
        ("name = \"has space\"\nsecret_env = \"S\"", "webhooks[0].name", "invalid webhook name"),
        (&format!("name = \"{}\"\nsecret_env = \"S\"", "a".repeat(65)), "webhooks[0].name", "invalid webhook name"),
        ("secret_env = \"S\"", "webhooks[0].name", "missing required key \"name\""),
        ("name = \"x\"", "webhooks[0].secret_env", "missing required key \"secret_env\""),
        ("name = \"x\"\nsecret_env = \"${S}\"", "webhooks[0].secret_env", "without ${...}"),
        ("name = \"x\"\nsecret_env = \"whsec/abc+123=\"", "webhooks[0].secret_env", "never the secret itself"),
        ("name = \"x\"\nsecret_env = \"S\"\ninput = \"Title: {/issue/title\"", "webhooks[0].input", "not closed"),
        ("name = \"x\"\nsecret_env = \"S\"\ninput = \"{/a~2}\"", "webhooks[0].input", "not a JSON Pointer"),
        ("name = \"x\"\nsecret_env = \"S\"\ninput = \"  \"", "webhooks[0].input", "nothing to do"),
        ("name = \"x\"\nsecret_env = \"S\"\ninput = 3", "webhooks[0].input", "expected a string"),
        ("name = \"x\"\nsecret_env = \"S\"\ntolerance = \"500ms\"", "webhooks[0].tolerance", "at least 1s"),
        ("name = \"x\"\nsecret_env = \"S\"\ntolerance = \"soon\"", "webhooks[0].tolerance", "invalid duration"),
    ];
    for (body, key, message) in cases {
        let error = error_for(&format!("\n[[webhooks]]\n{body}\n"));
        assert!(error.contains(&format!("error: {key}: ")) && error.contains(message), "{body}\n=> {error}");
        // Every diagnostic is located in the file.
        assert!(error.starts_with("agent.toml:") && !error.starts_with("agent.toml: "), "{error}");
    }
}

#[test]
fn names_are_unique_and_webhooks_are_an_array_of_tables() {
    let error = error_for(
        "\n[[webhooks]]\nname = \"dup\"\nsecret_env = \"A\"\n\n[[webhooks]]\nname = \"dup\"\nsecret_env = \"B\"\n",
    );
    assert!(error.starts_with("agent.toml:10:1: error: webhooks[1].name: duplicate webhook name \"dup\""), "{error}");
    assert!(error.ends_with("already declared at agent.toml:6"), "{error}");

    let error = error_for("\n[webhooks]\nname = \"x\"\nsecret_env = \"S\"\n");
    assert!(error.contains("error: webhooks: write each webhook as [[webhooks]]"), "{error}");
}

#[test]
fn a_tool_file_cannot_declare_webhooks() {
    let agent = format!("{BASE}include = [\"tools.toml\"]\n");
    let (dir, report) =
        validate(&[("agent.toml", &agent), ("tools.toml", "[[webhooks]]\nname = \"x\"\nsecret_env = \"S\"\n")]);
    let errors = errors(dir.path(), &report);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("tools.toml:1:3: error: webhooks: unknown key \"webhooks\""), "{errors:?}");
}

#[test]
fn the_example_in_format_md_loads() {
    let doc = include_str!("../FORMAT.md");
    let start = doc.find("```toml\n[[webhooks]]").expect("FORMAT.md has a webhooks example") + "```toml\n".len();
    let block = &doc[start..][..doc[start..].find("```").unwrap()];
    let dir = dir_with(&[("agent.toml", &format!("{BASE}{block}"))]);
    let loaded = load_agent(&dir.path().join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    let payload = json!({
        "issue": { "number": 7, "title": "Crash", "body": "At start." },
        "sender": { "login": "octocat" },
    });
    let input = render_webhook_input(loaded.webhooks[0].input.as_deref(), &payload).unwrap();
    assert_eq!(input, "Triage issue #7 from octocat: Crash\n\nAt start.");
}
