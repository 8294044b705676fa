//! `[[schedules]]`: parsed into the loaded agent and its spec (and so the
//! version), every mistake an error naming file, line and key.

mod common;

use common::{BASE, dir_with, errors, single_error, validate};
use rein_config::{CronSchedule, load_agent};
use rein_types::ScheduleDecl;

const SCHEDULES: &str = r#"
[[schedules]]
name = "digest"
cron = "30 8 * * MON-FRI"
timezone = "Europe/Berlin"
input = "Summarise yesterday."
max_lateness = "10m"

[[schedules]]
name = "heartbeat"
cron = "*/5 * * * * *"
input = "Check in."
enabled = false
"#;

#[test]
fn schedules_are_loaded_in_order_with_their_defaults_and_change_the_version() {
    let text = format!("{BASE}{SCHEDULES}");
    let dir = dir_with(&[("agent.toml", &text)]);
    let loaded = load_agent(&dir.path().join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.schedules,
        [
            ScheduleDecl {
                name: "digest".into(),
                cron: "30 8 * * MON-FRI".into(),
                timezone: "Europe/Berlin".into(),
                input: "Summarise yesterday.".into(),
                enabled: true,
                max_lateness_ms: 600_000,
            },
            ScheduleDecl {
                name: "heartbeat".into(),
                cron: "*/5 * * * * *".into(),
                timezone: "UTC".into(),
                input: "Check in.".into(),
                enabled: false,
                max_lateness_ms: 300_000,
            },
        ]
    );
    assert_eq!(loaded.spec.extra["schedules"][1]["name"], "heartbeat");
    for decl in &loaded.schedules {
        CronSchedule::of(decl).unwrap();
    }

    // Without schedules the spec has none, so existing agents keep their
    // version; any change to a schedule is a new version.
    let plain = dir_with(&[("agent.toml", BASE)]);
    let plain = load_agent(&plain.path().join("agent.toml")).unwrap();
    assert!(plain.spec.extra.get("schedules").is_none() && plain.schedules.is_empty());
    let changed = dir_with(&[("agent.toml", &text.replace("\"10m\"", "\"11m\""))]);
    let changed = load_agent(&changed.path().join("agent.toml")).unwrap();
    assert_ne!(changed.spec.version(), loaded.spec.version());
    assert_ne!(plain.spec.version(), loaded.spec.version());
}

/// The one error for `BASE` plus `schedules`.
fn error_for(schedules: &str) -> String {
    let (dir, report) = validate(&[("agent.toml", &format!("{BASE}{schedules}"))]);
    single_error(dir.path(), &report)
}

#[test]
fn a_bad_cron_expression_names_its_file_line_and_key() {
    // BASE is three lines and the text starts with a newline: the table is
    // on line 5, `cron` on line 7.
    let error = error_for("\n[[schedules]]\nname = \"x\"\ncron = \"61 * * * *\"\ninput = \"go\"\n");
    assert!(error.starts_with("agent.toml:7:"), "{error}");
    assert!(error.contains("error: schedules[0].cron: invalid cron expression \"61 * * * *\""), "{error}");
    assert!(error.contains("six with seconds first"), "{error}");
}

#[test]
fn each_value_is_checked_at_its_key() {
    let ok = "name = \"x\"\ninput = \"go\"";
    let cases = [
        (format!("{ok}\ncron = \"* * * *\""), "schedules[0].cron", "invalid cron expression"),
        (format!("{ok}\ncron = \"* * * * * * 2030\""), "schedules[0].cron", "invalid cron expression"),
        (format!("{ok}\ncron = \"* * 32 * *\""), "schedules[0].cron", "invalid cron expression"),
        (format!("{ok}\ncron = 5"), "schedules[0].cron", "expected a string"),
        (
            format!("{ok}\ncron = \"* * * * *\"\ntimezone = \"Mars/Olympus\""),
            "schedules[0].timezone",
            "unknown time zone",
        ),
        (
            format!("{ok}\ncron = \"* * * * *\"\ntimezone = \"europe/paris\""),
            "schedules[0].timezone",
            "did you mean \"Europe/Paris\"",
        ),
        (format!("{ok}\ncron = \"* * * * *\"\nmax_lateness = \"500ms\""), "schedules[0].max_lateness", "at least 1s"),
        (
            format!("{ok}\ncron = \"* * * * *\"\nmax_lateness = \"soon\""),
            "schedules[0].max_lateness",
            "invalid duration",
        ),
        (format!("{ok}\ncron = \"* * * * *\"\nenabled = \"yes\""), "schedules[0].enabled", "expected true or false"),
        ("name = \"x\"\ninput = \"go\"".to_string(), "schedules[0].cron", "missing required key \"cron\""),
        ("name = \"x\"\ncron = \"* * * * *\"".to_string(), "schedules[0].input", "missing required key \"input\""),
        ("name = \"x\"\ncron = \"* * * * *\"\ninput = \" \"".to_string(), "schedules[0].input", "nothing to do"),
        (
            "name = \"a b\"\ncron = \"* * * * *\"\ninput = \"go\"".to_string(),
            "schedules[0].name",
            "invalid schedule name",
        ),
        ("cron = \"* * * * *\"\ninput = \"go\"".to_string(), "schedules[0].name", "missing required key \"name\""),
        (format!("{ok}\ncron = \"* * * * *\"\ntz = \"UTC\""), "schedules[0].tz", "`timezone`"),
    ];
    for (body, key, message) in cases {
        let error = error_for(&format!("\n[[schedules]]\n{body}\n"));
        assert!(error.contains(&format!("error: {key}: ")) && error.contains(message), "{body}\n=> {error}");
        assert!(error.starts_with("agent.toml:") && !error.starts_with("agent.toml: "), "{error}");
    }
}

#[test]
fn names_are_unique_and_schedules_are_an_array_of_tables() {
    let entry = "cron = \"0 * * * *\"\ninput = \"go\"\n";
    let error = error_for(&format!("\n[[schedules]]\nname = \"dup\"\n{entry}\n[[schedules]]\nname = \"dup\"\n{entry}"));
    assert!(error.starts_with("agent.toml:11:1: error: schedules[1].name: duplicate schedule name \"dup\""), "{error}");
    assert!(error.ends_with("already declared at agent.toml:6"), "{error}");

    let error = error_for(&format!("\n[schedules]\nname = \"x\"\n{entry}"));
    assert!(error.contains("error: schedules: write each schedule as [[schedules]]"), "{error}");
}

#[test]
fn a_tool_file_cannot_declare_schedules() {
    let agent = format!("{BASE}include = [\"tools.toml\"]\n");
    let (dir, report) = validate(&[
        ("agent.toml", &agent),
        ("tools.toml", "[[schedules]]\nname = \"x\"\ncron = \"* * * * *\"\ninput = \"go\"\n"),
    ]);
    let errors = errors(dir.path(), &report);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("tools.toml:1:3: error: schedules: unknown key \"schedules\""), "{errors:?}");
}

#[test]
fn the_example_in_format_md_loads() {
    let doc = include_str!("../FORMAT.md");
    let start = doc.find("```toml\n[[schedules]]").expect("FORMAT.md has a schedules example") + "```toml\n".len();
    let block = &doc[start..][..doc[start..].find("```").unwrap()];
    let dir = dir_with(&[("agent.toml", &format!("{BASE}{block}"))]);
    let loaded = load_agent(&dir.path().join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.schedules[0].timezone, "Europe/Berlin");
}
