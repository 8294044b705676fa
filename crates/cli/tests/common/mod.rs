//! What the CLI's PostgreSQL tests share: a schema of their own on the
//! local server, reached by `rein` through `--db`/`REIN_DB`.

#![allow(dead_code)]

use std::process::Output;

pub mod counter;

/// A schema of its own on the local PostgreSQL server, dropped afterwards.
pub struct PgSchema(pub String);

impl PgSchema {
    /// A fresh schema named after `prefix`, this process and the time.
    pub fn new(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let schema = Self(format!("{prefix}_{}_{nanos:x}", std::process::id()));
        let created = schema.psql(&format!("CREATE SCHEMA {}", schema.0));
        assert!(
            created.status.success(),
            "the PostgreSQL server on 127.0.0.1:5432 must be up (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`): {}",
            String::from_utf8_lossy(&created.stderr)
        );
        schema
    }

    pub fn psql(&self, sql: &str) -> Output {
        std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Atqc", sql])
            .output()
            .unwrap()
    }

    /// The rows `sql` (run in this schema) returns, one `|`-separated line
    /// each.
    pub fn rows(&self, sql: &str) -> Vec<String> {
        let out = self.psql(&format!("SET search_path TO {}; {sql}", self.0));
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
    }

    /// One value from a query in this schema.
    pub fn scalar(&self, sql: &str) -> String {
        self.rows(sql).join("\n").trim().to_owned()
    }

    pub fn count(&self, sql: &str) -> usize {
        self.scalar(sql).parse().unwrap_or(0)
    }

    /// The `--db` URL of this schema.
    pub fn url(&self) -> String {
        let server = std::env::var("REIN_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        format!("{server}?options=-c%20search_path%3D{}", self.0)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        self.psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}
