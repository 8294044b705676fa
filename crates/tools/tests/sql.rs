//! The SQL tool against a temporary SQLite file: named parameters, notes for
//! empty results, read-only enforcement, transactional writes, exactly-once
//! writes per idempotency key, and limits.

use rein_tools::{SqlTool, ToolBuildError};
use rein_types::{
    IdempotencyKey, RiskTier, RunId, SqlMode, SqlToolDecl, Tool, ToolContext, ToolName, ToolOutcome, ToolSpec,
};
use rusqlite::Connection;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

struct Db {
    _dir: TempDir,
    path: PathBuf,
}

fn database() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE contacts (
             id INTEGER PRIMARY KEY,
             email TEXT NOT NULL UNIQUE,
             name TEXT NOT NULL,
             credits INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0),
             photo BLOB
         );
         INSERT INTO contacts (email, name, credits) VALUES
             ('ann@example.com', 'Ann Lee', 10),
             ('bob@example.com', 'Bob Ray', 0),
             ('cy@example.com', 'Cy Twombly', 5);
         CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT NOT NULL);",
    )
    .unwrap();
    Db { _dir: dir, path }
}

fn sql_decl(db: &Path, query: &str, mode: SqlMode) -> SqlToolDecl {
    SqlToolDecl {
        database: "crm".into(),
        database_url: format!("sqlite://{}", db.display()),
        query: query.into(),
        mode,
        max_rows: 50,
        max_result_bytes: 50_000,
    }
}

fn spec(names: &[&str]) -> ToolSpec {
    let properties: serde_json::Map<String, Value> = names.iter().map(|n| (n.to_string(), json!({}))).collect();
    ToolSpec::new(
        ToolName::new("crm_query").unwrap(),
        "test",
        json!({"type": "object", "properties": properties}),
        RiskTier::Write,
    )
}

fn tool(db: &Path, query: &str, mode: SqlMode, names: &[&str]) -> SqlTool {
    SqlTool::new(spec(names), sql_decl(db, query, mode)).unwrap()
}

fn context() -> ToolContext {
    let run_id = RunId::new();
    ToolContext::new(run_id, 1, "c", IdempotencyKey::for_call(run_id, 1, 0))
}

fn ok_data(outcome: ToolOutcome) -> (Value, bool) {
    match outcome {
        ToolOutcome::Ok { data, truncated } => (data, truncated),
        other => panic!("expected ok, got {other:?}"),
    }
}

fn error_parts(outcome: ToolOutcome) -> (String, Option<String>, bool) {
    match outcome {
        ToolOutcome::Error { message, hint, retryable } => (message, hint, retryable),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn count(db: &Path, sql: &str) -> i64 {
    Connection::open(db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn read_binds_named_parameters() {
    let db = database();
    let t =
        tool(&db.path, "SELECT id, name, credits, photo FROM contacts WHERE email = :email", SqlMode::Read, &["email"]);
    let (data, truncated) = ok_data(t.call(json!({"email": "ann@example.com"}), &context()).await);
    assert!(!truncated);
    assert_eq!(data, json!({"rows": [{"id": 1, "name": "Ann Lee", "credits": 10, "photo": null}], "row_count": 1}));
}

#[tokio::test]
async fn json_values_bind_by_type() {
    let db = database();
    let t = tool(
        &db.path,
        "SELECT name FROM contacts WHERE id IN (SELECT value FROM json_each(:ids)) AND (credits > :min OR :all) ORDER BY id",
        SqlMode::Read,
        &["ids", "min", "all"],
    );
    let (data, _) = ok_data(t.call(json!({"ids": [1, 2, 3], "min": 4, "all": false}), &context()).await);
    assert_eq!(data["rows"], json!([{"name": "Ann Lee"}, {"name": "Cy Twombly"}]));
    let (data, _) = ok_data(t.call(json!({"ids": [2], "min": 100, "all": true}), &context()).await);
    assert_eq!(data["rows"], json!([{"name": "Bob Ray"}]));
}

#[tokio::test]
async fn no_rows_is_ok_with_a_note() {
    let db = database();
    let t = tool(&db.path, "SELECT * FROM contacts WHERE email = :email", SqlMode::Read, &["email"]);
    let (data, _) = ok_data(t.call(json!({"email": "x@y.z"}), &context()).await);
    assert_eq!(data["rows"], json!([]));
    assert_eq!(data["row_count"], 0);
    let note = data["note"].as_str().unwrap();
    assert!(note.contains("No rows matched email=x@y.z"), "{note}");
}

#[tokio::test]
async fn read_mode_refuses_a_write() {
    let db = database();
    let err = SqlTool::new(spec(&[]), sql_decl(&db.path, "DELETE FROM contacts", SqlMode::Read)).unwrap_err();
    assert!(matches!(err, ToolBuildError::InvalidDeclaration { .. }), "{err}");
    assert!(err.to_string().contains("read"), "{err}");
    assert_eq!(count(&db.path, "SELECT count(*) FROM contacts"), 3);
}

#[tokio::test]
async fn write_commits() {
    let db = database();
    let t = tool(
        &db.path,
        "UPDATE contacts SET credits = credits + :amount WHERE email = :email",
        SqlMode::Write,
        &["amount", "email"],
    );
    let (data, _) = ok_data(t.call(json!({"amount": 5, "email": "bob@example.com"}), &context()).await);
    assert_eq!(data, json!({"rows_affected": 1}));
    assert_eq!(count(&db.path, "SELECT credits FROM contacts WHERE email = 'bob@example.com'"), 5);

    // Nothing matched: still ok, but the model is told nothing changed.
    let (data, _) = ok_data(t.call(json!({"amount": 5, "email": "nobody@example.com"}), &context()).await);
    assert_eq!(data["rows_affected"], 0);
    assert!(data["note"].as_str().unwrap().contains("nothing was changed"));
}

#[tokio::test]
async fn write_returning_rows() {
    let db = database();
    let t = tool(
        &db.path,
        "INSERT INTO contacts (email, name) VALUES (:email, :name) RETURNING id, email",
        SqlMode::Write,
        &["email", "name"],
    );
    let (data, _) = ok_data(t.call(json!({"email": "dee@example.com", "name": "Dee"}), &context()).await);
    assert_eq!(data["rows_affected"], 1);
    assert_eq!(data["rows"], json!([{"id": 4, "email": "dee@example.com"}]));
    assert_eq!(count(&db.path, "SELECT count(*) FROM contacts"), 4);
}

#[tokio::test]
async fn failing_write_rolls_back() {
    let db = database();
    // Takes 3 credits from everyone: Bob has none, so the CHECK fails part-way.
    let t = tool(&db.path, "UPDATE contacts SET credits = credits - :amount", SqlMode::Write, &["amount"]);
    let ctx = context();
    let (message, hint, retryable) = error_parts(t.call(json!({"amount": 3}), &ctx).await);
    assert!(message.contains("CHECK constraint failed"), "{message}");
    assert!(hint.is_some());
    assert!(!retryable);
    assert_eq!(count(&db.path, "SELECT sum(credits) FROM contacts"), 15, "no credits were taken");
    assert_eq!(count(&db.path, "SELECT count(*) FROM rein_idempotency"), 0, "the key is not recorded");

    // A unique violation reads as such.
    let t = tool(&db.path, "INSERT INTO contacts (email, name) VALUES (:email, 'x')", SqlMode::Write, &["email"]);
    let (message, _, _) = error_parts(t.call(json!({"email": "ann@example.com"}), &context()).await);
    assert!(message.contains("UNIQUE constraint failed"), "{message}");
}

#[tokio::test]
async fn the_same_idempotency_key_writes_once() {
    let db = database();
    let t = tool(&db.path, "INSERT INTO log (msg) VALUES (:msg) RETURNING id", SqlMode::Write, &["msg"]);
    let ctx = context();
    let first = t.call(json!({"msg": "refund issued"}), &ctx).await;
    let second = t.call(json!({"msg": "refund issued"}), &ctx).await;
    assert!(first.is_ok(), "{first:?}");
    assert_eq!(first, second, "the replay returns the stored result");
    assert_eq!(count(&db.path, "SELECT count(*) FROM log"), 1);

    // A new key is a new write; a second tool on the same database shares the
    // record.
    assert!(t.call(json!({"msg": "refund issued"}), &context()).await.is_ok());
    assert_eq!(count(&db.path, "SELECT count(*) FROM log"), 2);
    let other = tool(&db.path, "INSERT INTO log (msg) VALUES (:msg)", SqlMode::Write, &["msg"]);
    assert_eq!(other.call(json!({"msg": "again"}), &ctx).await, first);
    assert_eq!(count(&db.path, "SELECT count(*) FROM log"), 2);
}

#[tokio::test]
async fn missing_parameter_is_named() {
    let db = database();
    let t = tool(&db.path, "SELECT * FROM contacts WHERE email = :email", SqlMode::Read, &["email"]);
    let (message, hint, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(message.contains("`email`") && message.contains(":email"), "{message}");
    assert!(hint.is_some_and(|h| h.contains("email")));
    assert!(!retryable);
}

#[tokio::test]
async fn max_rows_truncates_with_a_note() {
    let db = database();
    let conn = Connection::open(&db.path).unwrap();
    for i in 0..20 {
        conn.execute("INSERT INTO log (msg) VALUES (?1)", [format!("entry {i}")]).unwrap();
    }
    let mut decl = sql_decl(&db.path, "SELECT id, msg FROM log ORDER BY id", SqlMode::Read);
    decl.max_rows = 3;
    let t = SqlTool::new(spec(&[]), decl).unwrap();
    let (data, truncated) = ok_data(t.call(json!({}), &context()).await);
    assert!(truncated);
    assert_eq!(data["rows"].as_array().unwrap().len(), 3);
    assert_eq!(data["row_count"], 3);
    assert!(data["note"].as_str().unwrap().contains("first 3 rows"));
}

#[tokio::test]
async fn max_result_bytes_truncates() {
    let db = database();
    let conn = Connection::open(&db.path).unwrap();
    for i in 0..50 {
        conn.execute("INSERT INTO log (msg) VALUES (?1)", [format!("{i}: {}", "x".repeat(100))]).unwrap();
    }
    let mut decl = sql_decl(&db.path, "SELECT id, msg FROM log ORDER BY id", SqlMode::Read);
    decl.max_result_bytes = 1_000;
    let t = SqlTool::new(spec(&[]), decl).unwrap();
    let (data, truncated) = ok_data(t.call(json!({}), &context()).await);
    assert!(truncated);
    assert!(serde_json::to_string(&data).unwrap().len() <= 1_000);
    let kept = data["rows"].as_array().unwrap().len();
    assert!(kept > 0 && kept < 50);
    assert_eq!(data["row_count"], kept);
}

#[test]
fn declarations_are_checked_at_build_time() {
    let db = database();
    let build = |decl: SqlToolDecl, names: &[&str]| SqlTool::new(spec(names), decl);

    let mut missing = sql_decl(&db.path, "SELECT 1", SqlMode::Read);
    missing.database_url = "sqlite:///definitely/not/here.db".into();
    let err = build(missing, &[]).unwrap_err();
    assert!(matches!(err, ToolBuildError::Database { .. }) && err.to_string().contains("does not exist"), "{err}");

    let err = build(sql_decl(&db.path, "SELEC * FROM contacts", SqlMode::Read), &[]).unwrap_err();
    assert!(err.to_string().contains("syntax error"), "{err}");
    let err = build(sql_decl(&db.path, "SELECT * FROM nope", SqlMode::Read), &[]).unwrap_err();
    assert!(err.to_string().contains("no such table"), "{err}");
    let err = build(sql_decl(&db.path, "SELECT * FROM contacts WHERE id = ?", SqlMode::Read), &[]).unwrap_err();
    assert!(err.to_string().contains("positional"), "{err}");
    let err =
        build(sql_decl(&db.path, "SELECT * FROM contacts WHERE id = :id", SqlMode::Read), &["other"]).unwrap_err();
    assert!(err.to_string().contains(":id"), "{err}");
    let err = build(sql_decl(&db.path, "SELECT 1; SELECT 2", SqlMode::Read), &[]).unwrap_err();
    assert!(matches!(err, ToolBuildError::Database { .. }), "{err}");

    let mut other_scheme = sql_decl(&db.path, "SELECT 1", SqlMode::Read);
    other_scheme.database_url = "postgres://localhost/db".into();
    assert!(build(other_scheme, &[]).is_err());

    // `sqlite:PATH` works too.
    let mut short = sql_decl(&db.path, "SELECT 1", SqlMode::Read);
    short.database_url = format!("sqlite:{}", db.path.display());
    assert!(build(short, &[]).is_ok());
}
