//! Declarative SQL tools on SQLite: a fixed, parameterised query from the agent
//! file, with the model supplying only the values of its `:name` placeholders.
//!
//! Read tools run on a connection opened read-only (and with `query_only`
//! set), so even a mistaken declaration cannot change data. Write tools run in
//! a transaction that also records the call's idempotency key, which makes
//! their side effect happen once per key: a call replayed after a crash gets
//! the stored result instead of writing twice.
//!
//! rusqlite is synchronous, so statements run on tokio's blocking pool; each
//! tool keeps one connection (behind a mutex) with its statement cached.

use crate::error::ToolBuildError;
use crate::truncate::{fit, json_len};
use async_trait::async_trait;
use rein_types::{SqlMode, SqlToolDecl, Tool, ToolContext, ToolOutcome, ToolSpec};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a statement waits for another writer's lock before failing with a
/// retryable "busy" error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Parameter values quoted in "no rows matched" notes are cut to this many
/// characters.
const MAX_QUOTED_CHARS: usize = 60;

/// The table where write tools record idempotency keys, created if missing.
const IDEMPOTENCY_TABLE_DDL: &str = "CREATE TABLE IF NOT EXISTS rein_idempotency (\
     key TEXT PRIMARY KEY, result TEXT NOT NULL, at_ms INTEGER NOT NULL)";

/// A declared SQL query, callable by the model.
pub struct SqlTool {
    spec: ToolSpec,
    inner: Arc<Inner>,
}

/// What the blocking task needs; shared so the task can outlive the borrow of
/// the tool.
struct Inner {
    name: String,
    decl: SqlToolDecl,
    /// Named placeholders, by bind index.
    params: Vec<Param>,
    /// Whether the statement produces rows (`SELECT`, `RETURNING`).
    returns_rows: bool,
    connection: Mutex<Connection>,
}

/// One named placeholder of the statement.
struct Param {
    /// 1-based bind index.
    index: usize,
    /// As written in the SQL, prefix included (`:email`).
    placeholder: String,
    /// The argument it is bound from (`email`).
    argument: String,
}

impl std::fmt::Debug for SqlTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTool")
            .field("name", &self.spec.name)
            .field("database", &self.inner.decl.database)
            .field("mode", &self.inner.decl.mode)
            .finish()
    }
}

impl SqlTool {
    /// Opens the database and compiles the query, so that a missing file, a
    /// typo in the SQL or an unknown table is reported at start-up. The file
    /// must exist in both modes: a tool never creates a database by accident.
    /// A read tool whose statement would write is refused here; its
    /// connection is read-only besides.
    ///
    /// This does blocking file I/O; call it while building the agent, not on
    /// an async hot path.
    pub fn new(spec: ToolSpec, decl: SqlToolDecl) -> Result<Self, ToolBuildError> {
        let name = spec.name.to_string();
        let db_error =
            |message: String| ToolBuildError::Database { tool: name.clone(), database: decl.database.clone(), message };
        if decl.max_rows == 0 {
            return Err(ToolBuildError::decl(&name, "max_rows must be greater than 0"));
        }
        if decl.max_result_bytes == 0 {
            return Err(ToolBuildError::decl(&name, "max_result_bytes must be greater than 0"));
        }
        let path = database_path(&decl.database_url).map_err(&db_error)?;
        if !path.is_file() {
            return Err(db_error(format!(
                "database file `{}` does not exist (from `{}`)",
                path.display(),
                decl.database_url
            )));
        }

        // The mutex serialises use, so SQLite's own per-connection mutex is
        // not needed.
        let flags = match decl.mode {
            SqlMode::Read => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            SqlMode::Write => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        };
        let connection = Connection::open_with_flags(&path, flags)
            .map_err(|e| db_error(format!("cannot open `{}`: {e}", path.display())))?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(|e| db_error(e.to_string()))?;
        match decl.mode {
            // Belt and braces: a read-only connection already refuses writes,
            // `query_only` also refuses them on databases SQLite may open
            // writable regardless (e.g. temp tables).
            SqlMode::Read => connection.execute_batch("PRAGMA query_only = ON"),
            SqlMode::Write => connection.execute_batch(IDEMPOTENCY_TABLE_DDL),
        }
        .map_err(|e| db_error(format!("cannot prepare the connection: {e}")))?;

        let (params, returns_rows) = {
            let statement = connection
                .prepare_cached(&decl.query)
                .map_err(|e| db_error(format!("the query does not compile: {}", sqlite_message(&e))))?;
            if decl.mode == SqlMode::Read && !statement.readonly() {
                return Err(ToolBuildError::decl(
                    &name,
                    "the query changes data but the tool's mode is `read`; declare `mode = \"write\"` or fix the query",
                ));
            }
            let mut params = Vec::new();
            for index in 1..=statement.parameter_count() {
                let Some(placeholder) = statement.parameter_name(index).filter(|p| !p.starts_with('?')) else {
                    return Err(ToolBuildError::decl(
                        &name,
                        "the query uses a positional `?` placeholder; use named ones (`:email`) bound from arguments of the same name",
                    ));
                };
                let argument = placeholder.get(1..).unwrap_or_default().to_string();
                params.push(Param { index, placeholder: placeholder.to_string(), argument });
            }
            (params, statement.column_count() > 0)
        };

        if let Some(properties) = spec.parameters.get("properties").and_then(Value::as_object)
            && let Some(missing) = params.iter().find(|p| !properties.contains_key(&p.argument))
        {
            return Err(ToolBuildError::decl(
                &name,
                format!(
                    "the query's placeholder `{}` has no parameter `{}` in the tool's schema; declare it or fix the name",
                    missing.placeholder, missing.argument
                ),
            ));
        }

        let inner = Inner { name, decl, params, returns_rows, connection: Mutex::new(connection) };
        Ok(Self { spec, inner: Arc::new(inner) })
    }
}

#[async_trait]
impl Tool for SqlTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> ToolOutcome {
        let inner = Arc::clone(&self.inner);
        let key = context.idempotency_key.0.clone();
        let bound = match inner.bind_values(&arguments) {
            Ok(bound) => bound,
            Err(outcome) => return outcome,
        };
        let task = tokio::task::spawn_blocking(move || inner.run(&bound, &key));
        match task.await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(tool = %self.spec.name, %error, "SQL tool task failed");
                ToolOutcome::error_with_hint(
                    format!("`{}` failed unexpectedly (internal error)", self.spec.name),
                    "Do not retry with the same arguments; try another approach or hand off to a human",
                )
            }
        }
    }
}

/// A placeholder with the value bound to it.
struct Bound {
    index: usize,
    argument: String,
    json: Value,
    sql: SqlValue,
}

impl Inner {
    /// Looks up every placeholder's argument.
    fn bind_values(&self, arguments: &Value) -> Result<Vec<Bound>, ToolOutcome> {
        let empty = Map::new();
        let args = arguments.as_object().unwrap_or(&empty);
        self.params
            .iter()
            .map(|param| match args.get(&param.argument) {
                Some(value) => Ok(Bound {
                    index: param.index,
                    argument: param.argument.clone(),
                    json: value.clone(),
                    sql: to_sql(value),
                }),
                None => Err(ToolOutcome::error_with_hint(
                    format!("Missing argument `{}`, needed for the query's `{}`", param.argument, param.placeholder),
                    format!("Call `{}` again with a value for `{}`", self.name, param.argument),
                )),
            })
            .collect()
    }

    /// Runs the statement on the blocking pool.
    fn run(&self, bound: &[Bound], key: &str) -> ToolOutcome {
        // A panic while the lock was held leaves the connection usable: any
        // open transaction was rolled back when it was dropped.
        let mut connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
        let result = match self.decl.mode {
            SqlMode::Read => self.read(&connection, bound),
            SqlMode::Write => self.write(&mut connection, bound, key),
        };
        result.unwrap_or_else(|error| self.error_outcome(&error))
    }

    fn read(&self, connection: &Connection, bound: &[Bound]) -> rusqlite::Result<ToolOutcome> {
        let (rows, more) = self.query_rows(connection, bound)?;
        let (data, truncated) = rows_result(rows, more, self.decl.max_rows, self.decl.max_result_bytes, || {
            Some(format!("{} — check the values or ask the user", self.no_rows(bound)))
        });
        Ok(ToolOutcome::Ok { data, truncated })
    }

    fn write(&self, connection: &mut Connection, bound: &[Bound], key: &str) -> rusqlite::Result<ToolOutcome> {
        // IMMEDIATE takes the write lock up front, so the key check and the
        // write cannot interleave with another process doing the same.
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<String> =
            tx.query_row("SELECT result FROM rein_idempotency WHERE key = ?1", [key], |row| row.get(0)).optional()?;
        if let Some(stored) = stored {
            tracing::debug!(tool = %self.name, key, "SQL write already applied; returning the stored result");
            // Nothing was written; dropping the transaction rolls back the
            // read lock only.
            return Ok(serde_json::from_str(&stored).unwrap_or_else(|_| ToolOutcome::ok(Value::String(stored))));
        }

        let (rows, more) = if self.returns_rows {
            let (rows, more) = self.query_rows(&tx, bound)?;
            (Some(rows), more)
        } else {
            let mut statement = tx.prepare_cached(&self.decl.query)?;
            bind(&mut statement, bound)?;
            statement.raw_execute()?;
            (None, false)
        };
        let affected = tx.changes();

        let mut data = Map::new();
        data.insert("rows_affected".into(), json!(affected));
        let mut truncated = false;
        if let Some(rows) = rows {
            // No note for an empty `RETURNING`: the rows-affected note below
            // says it better.
            let (result, cut) = rows_result(rows, more, self.decl.max_rows, self.decl.max_result_bytes, || None);
            truncated = cut;
            if let Value::Object(result) = result {
                data.extend(result);
            }
        }
        if affected == 0 && !data.contains_key("note") {
            data.insert(
                "note".into(),
                json!(format!("{} — nothing was changed; check the values or ask the user", self.no_rows(bound))),
            );
        }
        let (data, cut) = fit(Value::Object(data), self.decl.max_result_bytes);
        let outcome = ToolOutcome::Ok { data, truncated: truncated || cut };

        let record = serde_json::to_string(&outcome).unwrap_or_default();
        tx.execute(
            "INSERT INTO rein_idempotency (key, result, at_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![key, record, now_ms()],
        )?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Runs the statement and collects up to `max_rows` rows; the flag says
    /// whether more were available. The statement is always stepped to the
    /// end so that a `RETURNING` write completes in full.
    fn query_rows(&self, connection: &Connection, bound: &[Bound]) -> rusqlite::Result<(Vec<Value>, bool)> {
        let mut statement = connection.prepare_cached(&self.decl.query)?;
        bind(&mut statement, bound)?;
        let columns = column_keys(&statement);
        let limit = usize::try_from(self.decl.max_rows).unwrap_or(usize::MAX);
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        let mut more = false;
        while let Some(row) = rows.next()? {
            if out.len() >= limit {
                more = true;
                if self.decl.mode == SqlMode::Read {
                    break;
                }
                continue;
            }
            let mut object = Map::new();
            for (index, column) in columns.iter().enumerate() {
                object.insert(column.clone(), to_json(row.get_ref(index)?));
            }
            out.push(Value::Object(object));
        }
        Ok((out, more))
    }

    /// "No rows matched email=x@y", naming the values the model supplied.
    fn no_rows(&self, bound: &[Bound]) -> String {
        if bound.is_empty() {
            return "No rows matched".to_string();
        }
        let values: Vec<String> = bound
            .iter()
            .map(|b| {
                let text = match &b.json {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let text = match text.char_indices().nth(MAX_QUOTED_CHARS) {
                    Some((end, _)) => format!("{}…", &text[..end]),
                    None => text,
                };
                format!("{}={text}", b.argument)
            })
            .collect();
        format!("No rows matched {}", values.join(", "))
    }

    /// A database error in words the model can act on.
    fn error_outcome(&self, error: &rusqlite::Error) -> ToolOutcome {
        let database = &self.decl.database;
        let detail = sqlite_message(error);
        let code = match error {
            rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
            _ => None,
        };
        tracing::debug!(tool = %self.name, database, %detail, "SQL tool failed");
        match code {
            Some(ErrorCode::ReadOnly) => ToolOutcome::error_with_hint(
                format!("`{}` is read-only and cannot change data in `{database}`: {detail}", self.name),
                "Use a tool that is allowed to make this change, or ask a human to do it",
            ),
            Some(ErrorCode::ConstraintViolation) => ToolOutcome::error_with_hint(
                format!("The change was rejected by `{database}`: {detail}"),
                "A value conflicts with existing data (it may already exist) or a required value is missing; check the arguments",
            ),
            Some(ErrorCode::TypeMismatch) => ToolOutcome::error_with_hint(
                format!("A value has the wrong type for `{database}`: {detail}"),
                "Check the types of the arguments (numbers as numbers, text as text)",
            ),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ToolOutcome::Error {
                message: format!("The database `{database}` is busy: {detail}"),
                hint: Some("Try again in a moment".to_string()),
                retryable: true,
            },
            _ => ToolOutcome::Error {
                message: format!("The query on `{database}` failed: {detail}"),
                hint: Some("This is likely a problem with the tool or the database, not the arguments; hand off to a human if it persists".to_string()),
                retryable: false,
            },
        }
    }
}

/// The `{rows, row_count}` result, cut to `max_bytes`, with a `note` when the
/// model should know something: no rows at all, or rows left out.
fn rows_result(
    rows: Vec<Value>,
    more: bool,
    max_rows: u32,
    max_bytes: usize,
    no_rows_note: impl FnOnce() -> Option<String>,
) -> (Value, bool) {
    let total = rows.len();
    let mut data = Map::new();
    if rows.is_empty() {
        data.insert("rows".into(), Value::Array(rows));
        data.insert("row_count".into(), json!(0));
        if let Some(note) = no_rows_note() {
            data.insert("note".into(), json!(note));
        }
        return fit(Value::Object(data), max_bytes);
    }
    let row_limit_note = || {
        format!(
            "Only the first {max_rows} rows are shown (the tool's row limit); more rows matched — narrow the query to see the rest"
        )
    };
    data.insert("rows".into(), Value::Array(rows));
    data.insert("row_count".into(), json!(total));
    if more {
        data.insert("note".into(), json!(row_limit_note()));
    }
    let data = Value::Object(data);
    if json_len(&data) <= max_bytes {
        return (data, more);
    }

    // Too large: keep as many whole rows as fit next to the counts and note.
    let Value::Object(mut data) = data else { return (data, more) };
    let rows = data.remove("rows").unwrap_or_default();
    let size_note = |kept: usize| {
        format!(
            "Only the first {kept} of {total}{} rows are shown (the result size limit); narrow the query to see the rest",
            if more { "+" } else { "" }
        )
    };
    data.insert("rows".into(), Value::Array(Vec::new()));
    data.insert("note".into(), json!(size_note(total)));
    let overhead = json_len(&Value::Object(data.clone())).saturating_sub(2);
    let (rows, _) = fit(rows, max_bytes.saturating_sub(overhead));
    let kept = rows.as_array().map_or(0, Vec::len);
    data.insert("rows".into(), rows);
    data.insert("row_count".into(), json!(kept));
    data.insert("note".into(), json!(size_note(kept)));
    let (data, _) = fit(Value::Object(data), max_bytes);
    (data, true)
}

fn bind(statement: &mut rusqlite::Statement<'_>, bound: &[Bound]) -> rusqlite::Result<()> {
    for value in bound {
        statement.raw_bind_parameter(value.index, &value.sql)?;
    }
    Ok(())
}

/// Result column names, made unique (`id`, `id_2`) so a join's columns do
/// not overwrite each other in the row object.
fn column_keys(statement: &rusqlite::Statement<'_>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for name in statement.column_names() {
        let mut key = name.to_string();
        let mut n = 2;
        while keys.contains(&key) {
            key = format!("{name}_{n}");
            n += 1;
        }
        keys.push(key);
    }
    keys
}

/// JSON argument → SQL value. Arrays and objects are bound as JSON text, which
/// SQLite's JSON functions read.
fn to_sql(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// SQL value → JSON. Blobs are described, not dumped: bytes mean nothing to
/// the model.
fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => Value::String(format!("<binary data, {} bytes>", bytes.len())),
    }
}

/// The file behind `sqlite://PATH` or `sqlite:PATH`; a `?options` suffix is
/// ignored (the mode decides how the file is opened).
fn database_path(url: &str) -> Result<PathBuf, String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| format!("database_url `{url}` is not a SQLite URL (`sqlite://PATH`)"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(format!("database_url `{url}` must name a database file"));
    }
    Ok(PathBuf::from(path))
}

/// SQLite's own message when there is one (it names the table, column or
/// constraint), otherwise rusqlite's.
fn sqlite_message(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_parsed() {
        assert_eq!(database_path("sqlite:///tmp/a.db"), Ok(PathBuf::from("/tmp/a.db")));
        assert_eq!(database_path("sqlite://rel/a.db?mode=ro"), Ok(PathBuf::from("rel/a.db")));
        assert_eq!(database_path("sqlite:a.db"), Ok(PathBuf::from("a.db")));
        assert!(database_path("postgres://x").is_err());
        assert!(database_path("sqlite::memory:").is_err());
    }

    #[test]
    fn json_values_bind_as_sql() {
        assert_eq!(to_sql(&json!(true)), SqlValue::Integer(1));
        assert_eq!(to_sql(&json!(3)), SqlValue::Integer(3));
        assert_eq!(to_sql(&json!(2.5)), SqlValue::Real(2.5));
        assert_eq!(to_sql(&json!([1, 2])), SqlValue::Text("[1,2]".into()));
        assert_eq!(to_sql(&Value::Null), SqlValue::Null);
    }

    #[test]
    fn rows_are_cut_to_the_byte_limit() {
        let rows: Vec<Value> = (0..50).map(|i| json!({"id": i, "text": "x".repeat(40)})).collect();
        let (data, truncated) = rows_result(rows, false, 100, 600, || None);
        assert!(truncated);
        assert!(json_len(&data) <= 600);
        let kept = data["rows"].as_array().map_or(0, Vec::len);
        assert!(kept > 0 && kept < 50);
        assert_eq!(data["row_count"], json!(kept));
        assert!(data["note"].as_str().is_some_and(|n| n.contains("of 50")));
    }

    /// Read mode refuses writes even when the build-time check is bypassed:
    /// the connection itself is read-only.
    #[tokio::test]
    async fn read_only_connection_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let setup = Connection::open(&path).unwrap();
        setup.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        drop(setup);
        let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        connection.execute_batch("PRAGMA query_only = ON").unwrap();
        let inner = Inner {
            name: "t".into(),
            decl: SqlToolDecl {
                database: "db".into(),
                database_url: format!("sqlite://{}", path.display()),
                query: "INSERT INTO t (x) VALUES (1)".into(),
                mode: SqlMode::Read,
                max_rows: 10,
                max_result_bytes: 1000,
            },
            params: Vec::new(),
            returns_rows: false,
            connection: Mutex::new(connection),
        };
        let outcome = inner.run(&[], "k");
        match outcome {
            ToolOutcome::Error { message, hint, retryable } => {
                assert!(message.contains("read-only"), "{message}");
                assert!(hint.is_some());
                assert!(!retryable);
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
