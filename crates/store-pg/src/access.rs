//! The queries behind [`rein_types::AccessStore`], as the SQLite journal's
//! `access.rs` keeps them: API keys by public id with the hash of the whole
//! key, and tenants' own limits.

use crate::read::{read_failed, unsigned};
use rein_store::shared::{decode_scopes, encode_scopes};
use rein_types::{ApiKeyRecord, JournalError, TenantId, TenantLimits};
use sqlx_core::query::query;
use sqlx_core::row::Row as _;
use sqlx_postgres::{PgPool, PgRow, Postgres};

fn write_failed(error: sqlx_core::Error) -> JournalError {
    JournalError::Storage(format!("journal write failed: {error}"))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn key(row: &PgRow) -> Result<ApiKeyRecord, JournalError> {
    let tenant: &str = row.try_get(1).map_err(read_failed)?;
    let scopes: &str = row.try_get(3).map_err(read_failed)?;
    Ok(ApiKeyRecord {
        id: row.try_get(0).map_err(read_failed)?,
        // A stored tenant that does not parse was not written by rein: an
        // error, never a guess (a guess could hand a key another tenant).
        tenant: TenantId::parse(tenant)
            .map_err(|e| JournalError::Storage(format!("API key with an unreadable tenant: {e}")))?,
        name: row.try_get(2).map_err(read_failed)?,
        scopes: decode_scopes(scopes)?,
        hash: row.try_get(4).map_err(read_failed)?,
        created_at_ms: unsigned(row.try_get(5).map_err(read_failed)?),
        revoked_at_ms: row.try_get::<Option<i64>, _>(6).map_err(read_failed)?.map(unsigned),
    })
}

pub(crate) async fn create_api_key(pool: &PgPool, key: &ApiKeyRecord) -> Result<(), JournalError> {
    let inserted = query::<Postgres>(
        "INSERT INTO api_keys (id, tenant, name, scopes, hash, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(&key.id)
    .bind(key.tenant.as_str())
    .bind(&key.name)
    .bind(encode_scopes(&key.scopes))
    .bind(&key.hash)
    .bind(clamp(key.created_at_ms))
    .execute(pool)
    .await
    .map_err(write_failed)?;
    if inserted.rows_affected() == 0 {
        return Err(JournalError::Conflict(format!("an API key with id {} exists already", key.id)));
    }
    Ok(())
}

pub(crate) async fn api_key(pool: &PgPool, id: &str) -> Result<Option<ApiKeyRecord>, JournalError> {
    let row = query::<Postgres>(
        "SELECT id, tenant, name, scopes, hash, created_at_ms, revoked_at_ms FROM api_keys WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(read_failed)?;
    row.as_ref().map(key).transpose()
}

pub(crate) async fn api_keys(pool: &PgPool, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, JournalError> {
    let rows = query::<Postgres>(
        "SELECT id, tenant, name, scopes, hash, created_at_ms, revoked_at_ms FROM api_keys
         WHERE $1::TEXT IS NULL OR tenant = $1 ORDER BY created_at_ms, id",
    )
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(pool)
    .await
    .map_err(read_failed)?;
    rows.iter().map(key).collect()
}

pub(crate) async fn revoke_api_key(pool: &PgPool, id: &str, now_ms: u64) -> Result<bool, JournalError> {
    let changed = query::<Postgres>("UPDATE api_keys SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL")
        .bind(id)
        .bind(clamp(now_ms))
        .execute(pool)
        .await
        .map_err(write_failed)?;
    Ok(changed.rows_affected() > 0)
}

pub(crate) async fn set_tenant_limits(
    pool: &PgPool,
    tenant: &TenantId,
    limits: &TenantLimits,
) -> Result<(), JournalError> {
    let text = serde_json::to_string(limits)
        .map_err(|e| JournalError::Storage(format!("cannot encode the limits of tenant {tenant}: {e}")))?;
    query::<Postgres>(
        "INSERT INTO tenant_limits (tenant, limits) VALUES ($1, $2)
         ON CONFLICT (tenant) DO UPDATE SET limits = excluded.limits",
    )
    .bind(tenant.as_str())
    .bind(text)
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(write_failed)
}

pub(crate) async fn tenant_limits(pool: &PgPool) -> Result<Vec<(TenantId, TenantLimits)>, JournalError> {
    let rows = query::<Postgres>("SELECT tenant, limits FROM tenant_limits ORDER BY tenant")
        .fetch_all(pool)
        .await
        .map_err(read_failed)?;
    rows.iter()
        .map(|row| {
            let tenant: &str = row.try_get(0).map_err(read_failed)?;
            let limits: &str = row.try_get(1).map_err(read_failed)?;
            let tenant = TenantId::parse(tenant)
                .map_err(|e| JournalError::Storage(format!("unreadable tenant in tenant_limits: {e}")))?;
            let limits = serde_json::from_str(limits)
                .map_err(|e| JournalError::Storage(format!("unreadable limits of tenant {tenant}: {e}")))?;
            Ok((tenant, limits))
        })
        .collect()
}
