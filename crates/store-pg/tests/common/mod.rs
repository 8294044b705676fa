//! A fresh schema per test on the test server, dropped afterwards, so tests
//! run in parallel and leave nothing behind.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/test` unless
//! `REIN_TEST_PG` names another. CI starts it with
//! `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.

#![allow(dead_code)]

use rein_store_pg::{PgConnectOptions, PgPool, PgPoolOptions, PgStore};
use sqlx_core::connection::Connection as _;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::PgConnection;
use std::str::FromStr;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn server_url() -> String {
    std::env::var("REIN_TEST_PG").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Panics with what to do when the server is not there.
fn unreachable(url: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "the PostgreSQL test server at {url} cannot be used: {error}\n\
         Start it (as CI does: `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`), \
         or point REIN_TEST_PG at another server whose user may create schemas."
    )
}

/// One test's schema. Dropped (with everything in it) when this is.
pub struct TestDb {
    url: String,
    pub schema: String,
}

impl TestDb {
    /// Creates a fresh, empty schema.
    pub async fn new() -> Self {
        let url = server_url();
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = admin(&url).await.unwrap_or_else(|e| unreachable(&url, e));
        sqlx_core::raw_sql::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| unreachable(&url, e));
        let _ = admin.close().await;
        Self { url, schema }
    }

    /// Connection options with this schema first on the search path.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .unwrap_or_else(|e| unreachable(&self.url, e))
            .options([("search_path", self.schema.as_str())])
    }

    /// A store on this schema (migrating it on first use), as a process of
    /// its own would open it.
    pub async fn store(&self) -> PgStore {
        PgStore::connect_with(self.options(), PgPoolOptions::new().max_connections(8))
            .await
            .unwrap_or_else(|e| unreachable(&self.url, e))
    }

    /// A fresh schema and a store on it.
    pub async fn with_store() -> (Self, PgStore) {
        let db = Self::new().await;
        let store = db.store().await;
        (db, store)
    }

    /// A plain pool on this schema, for tampering with the tables.
    pub async fn raw(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.options())
            .await
            .unwrap_or_else(|e| unreachable(&self.url, e))
    }
}

/// One connection to the server, tried once: a server that is down is
/// reported at once, with the reason.
async fn admin(url: &str) -> Result<PgConnection, sqlx_core::Error> {
    PgConnection::connect_with(&PgConnectOptions::from_str(url)?).await
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and may run on a runtime's thread: a thread of
        // its own with a runtime of its own drops the schema.
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut admin = admin(&url).await?;
                let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                sqlx_core::raw_sql::raw_sql(AssertSqlSafe(sql)).execute(&mut admin).await?;
                admin.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.schema),
            Err(_) => eprintln!("could not drop test schema {}: the dropping thread panicked", self.schema),
        }
    }
}
