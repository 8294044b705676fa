//! The queries behind [`rein_types::AccessStore`]: API keys (by their public
//! id, with the hash of the whole key) and tenants' own limits.

use rein_types::{ApiKeyRecord, JournalError, Scope, TenantId, TenantLimits};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn read_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("journal read failed: {error}"))
}

fn write_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("journal write failed: {error}"))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Scopes are stored as one space-separated text: a key has a handful.
pub fn encode_scopes(scopes: &[Scope]) -> String {
    scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(" ")
}

pub fn decode_scopes(text: &str) -> Result<Vec<Scope>, JournalError> {
    text.split_whitespace()
        .map(|word| Scope::parse(word).ok_or_else(|| JournalError::Storage(format!("unknown scope `{word}` stored"))))
        .collect()
}

const KEY_COLUMNS: &str = "id, tenant, name, scopes, hash, created_at_ms, revoked_at_ms";

fn key(row: &Row<'_>) -> rusqlite::Result<(ApiKeyRecord, String)> {
    let tenant: String = row.get(1)?;
    let record = ApiKeyRecord {
        id: row.get(0)?,
        // A stored tenant that does not parse was not written by rein: an
        // error, never a guess (a guess could hand a key another tenant).
        tenant: TenantId::parse(&tenant)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?,
        name: row.get(2)?,
        scopes: Vec::new(),
        hash: row.get(4)?,
        created_at_ms: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
        revoked_at_ms: row.get::<_, Option<i64>>(6)?.map(|at| u64::try_from(at).unwrap_or(0)),
    };
    Ok((record, row.get(3)?))
}

fn with_scopes((mut record, scopes): (ApiKeyRecord, String)) -> Result<ApiKeyRecord, JournalError> {
    record.scopes = decode_scopes(&scopes)?;
    Ok(record)
}

pub(crate) fn create_api_key(conn: &mut Connection, key: &ApiKeyRecord) -> Result<(), JournalError> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO api_keys (id, tenant, name, scopes, hash, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                key.id,
                key.tenant.as_str(),
                key.name,
                encode_scopes(&key.scopes),
                key.hash,
                clamp(key.created_at_ms)
            ])
        })
        .map_err(write_failed)?;
    if inserted == 0 {
        return Err(JournalError::Conflict(format!("an API key with id {} exists already", key.id)));
    }
    Ok(())
}

pub(crate) fn api_key(conn: &Connection, id: &str) -> Result<Option<ApiKeyRecord>, JournalError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1");
    let found = conn.prepare_cached(&sql).and_then(|mut s| s.query_row([id], key).optional()).map_err(read_failed)?;
    found.map(with_scopes).transpose()
}

pub(crate) fn api_keys(conn: &Connection, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, JournalError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_at_ms, id");
    let rows: Vec<(ApiKeyRecord, String)> = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_map([tenant.map(TenantId::as_str)], key).and_then(|rows| rows.collect()))
        .map_err(read_failed)?;
    rows.into_iter().map(with_scopes).collect()
}

pub(crate) fn revoke_api_key(conn: &mut Connection, id: &str, now_ms: u64) -> Result<bool, JournalError> {
    let changed = conn
        .prepare_cached("UPDATE api_keys SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL")
        .and_then(|mut s| s.execute(params![id, clamp(now_ms)]))
        .map_err(write_failed)?;
    Ok(changed > 0)
}

pub(crate) fn set_tenant_limits(
    conn: &mut Connection,
    tenant: &TenantId,
    limits: &TenantLimits,
) -> Result<(), JournalError> {
    let text = serde_json::to_string(limits)
        .map_err(|e| JournalError::Storage(format!("cannot encode the limits of tenant {tenant}: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO tenant_limits (tenant, limits) VALUES (?1, ?2)
         ON CONFLICT (tenant) DO UPDATE SET limits = excluded.limits",
    )
    .and_then(|mut s| s.execute([tenant.as_str(), &text]))
    .map(|_| ())
    .map_err(write_failed)
}

pub(crate) fn tenant_limits(conn: &Connection) -> Result<Vec<(TenantId, TenantLimits)>, JournalError> {
    let rows: Vec<(String, String)> = conn
        .prepare_cached("SELECT tenant, limits FROM tenant_limits ORDER BY tenant")
        .and_then(|mut s| s.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).and_then(|rows| rows.collect()))
        .map_err(read_failed)?;
    rows.into_iter()
        .map(|(tenant, limits)| {
            let tenant = TenantId::parse(&tenant)
                .map_err(|e| JournalError::Storage(format!("unreadable tenant in tenant_limits: {e}")))?;
            let limits = serde_json::from_str(&limits)
                .map_err(|e| JournalError::Storage(format!("unreadable limits of tenant {tenant}: {e}")))?;
            Ok((tenant, limits))
        })
        .collect()
}
