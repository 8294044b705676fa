//! A bounded load test of `rein serve`'s HTTP API on loopback: N sync runs
//! (`POST /v1/agents/{name}/runs`) with C clients in flight, against the
//! server as `rein serve` builds it (API keys, tenant limits, a worker), on an
//! SQLite file or a fresh PostgreSQL schema, with the agent's model the
//! in-process OpenAI mock answering each run with one text reply.
//!
//! ```sh
//! cargo run --release -p rein-server --example load -- --store sqlite --runs 2000 --concurrency 32
//! cargo run --release -p rein-server --example load -- --store postgres --runs 2000 --concurrency 32
//! ```
//!
//! PostgreSQL: `REIN_BENCH_PG` (default `postgres://postgres@127.0.0.1:5432/test`)
//! names a server whose user may create schemas; each run of this example
//! works in a schema of its own and drops it afterwards.
//!
//! Prints one JSON line: store, runs, concurrency, wall seconds, runs/s,
//! p50/p90/p99/max latency in ms and errors (any answer other than 200 with
//! `"status": "succeeded"`).

use anyhow::{Context, Result, bail};
use rein::store::SqliteJournal;
use rein::{Operator, Store, TenantLimits};
use rein_server::{AppState, ServeConfig};
use rein_store_pg::{DEFAULT_MAX_CONNECTIONS, PgConnectOptions, PgPoolOptions, PgStore};
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text};
use serde_json::json;
use sqlx_core::sql_str::AssertSqlSafe;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

const AGENT: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq)]
enum StoreKind {
    Sqlite,
    Postgres,
}

struct Args {
    store: StoreKind,
    runs: usize,
    concurrency: usize,
    warmup: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { store: StoreKind::Sqlite, runs: 2000, concurrency: 32, warmup: 200 };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => {
                args.store = match value()?.as_str() {
                    "sqlite" => StoreKind::Sqlite,
                    "postgres" => StoreKind::Postgres,
                    other => bail!("--store is sqlite or postgres, not {other}"),
                }
            }
            "--runs" => args.runs = value()?.parse().context("--runs")?,
            "--concurrency" => args.concurrency = value()?.parse().context("--concurrency")?,
            "--warmup" => args.warmup = value()?.parse().context("--warmup")?,
            other => bail!("unknown flag {other} (--store sqlite|postgres, --runs N, --concurrency C, --warmup W)"),
        }
    }
    if args.runs == 0 || args.concurrency == 0 {
        bail!("--runs and --concurrency must be at least 1");
    }
    Ok(args)
}

/// A schema of this process's own on the PostgreSQL server, dropped by
/// [`Self::drop_schema`].
struct PgSchema {
    url: String,
    name: String,
}

impl PgSchema {
    async fn create(url: String) -> Result<Self> {
        let name = format!("load_{}_{}", std::process::id(), rein::now_ms());
        Self::execute(&url, &format!("CREATE SCHEMA {name}")).await?;
        Ok(Self { url, name })
    }

    fn options(&self) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(&self.url)
            .with_context(|| format!("bad REIN_BENCH_PG URL {}", self.url))?
            .options([("search_path", self.name.as_str())]))
    }

    async fn drop_schema(self) -> Result<()> {
        Self::execute(&self.url, &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)).await
    }

    async fn execute(url: &str, sql: &str) -> Result<()> {
        let options = PgConnectOptions::from_str(url).with_context(|| format!("bad REIN_BENCH_PG URL {url}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {url} (set REIN_BENCH_PG)"))?;
        let done = sqlx_core::raw_sql::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&pool).await;
        pool.close().await;
        done.with_context(|| format!("`{sql}` failed"))?;
        Ok(())
    }
}

fn agent_toml(model: &str) -> String {
    format!(
        r#"
name = "{AGENT}"
system_prompt = "Answer the question."

[model]
id = "openai-compatible:mock-model"
base_url = "{model}"
"#
    )
}

/// One measured batch: every latency, in completion order, and the failures.
struct Batch {
    wall: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

/// Drives `runs` sync runs with `concurrency` of them in flight.
async fn drive(http: &reqwest::Client, url: &str, runs: usize, concurrency: usize) -> Batch {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency.min(runs))
        .map(|_| {
            let (http, url, next) = (http.clone(), url.to_owned(), next.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                while next.fetch_add(1, Ordering::Relaxed) < runs {
                    let sent = Instant::now();
                    let ok = one_run(&http, &url).await;
                    latencies.push(sent.elapsed());
                    if let Err(error) = ok {
                        // The first few are enough to say what went wrong.
                        if errors < 3 {
                            eprintln!("run failed: {error:#}");
                        }
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut batch = Batch { wall: Duration::ZERO, latencies: Vec::with_capacity(runs), errors: 0 };
    for client in clients {
        match client.await {
            Ok((latencies, errors)) => {
                batch.latencies.extend(latencies);
                batch.errors += errors;
            }
            Err(error) => {
                eprintln!("a client task failed: {error}");
                batch.errors += 1;
            }
        }
    }
    batch.wall = started.elapsed();
    batch
}

async fn one_run(http: &reqwest::Client, url: &str) -> Result<()> {
    let response = http.post(url).json(&json!({ "input": "What is the answer?" })).send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("the answer is not JSON")?;
    if status != 200 || body["status"] != "succeeded" {
        bail!("HTTP {status}: {body}");
    }
    Ok(())
}

/// The `q` quantile (nearest rank) of sorted `values`, in ms.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else { return 0.0 };
    let rank = ((q * sorted.len() as f64).ceil() as usize).saturating_sub(1).min(last);
    sorted[rank].as_secs_f64() * 1000.0
}

async fn open_store(kind: StoreKind, dir: &tempfile::TempDir) -> Result<(Arc<dyn Store>, Option<PgSchema>)> {
    Ok(match kind {
        StoreKind::Sqlite => {
            let journal = SqliteJournal::open(dir.path().join("rein.db")).context("cannot open the SQLite journal")?;
            (Arc::new(journal), None)
        }
        StoreKind::Postgres => {
            let url = std::env::var("REIN_BENCH_PG").unwrap_or_else(|_| DEFAULT_PG.to_owned());
            let schema = PgSchema::create(url).await?;
            // The pool `rein serve` opens on a `postgres://` URL.
            let pool = PgPoolOptions::new().max_connections(DEFAULT_MAX_CONNECTIONS);
            match PgStore::connect_with(schema.options()?, pool).await {
                Ok(store) => (Arc::new(store), Some(schema)),
                Err(error) => {
                    schema.drop_schema().await?;
                    return Err(error).context("cannot open the PostgreSQL store");
                }
            }
        }
    })
}

async fn bench(args: &Args, store: Arc<dyn Store>) -> Result<serde_json::Value> {
    let model = MockOpenAi::start(|_| MockReply::ok(completion_text("42."))).await.context("mock model")?;
    let key = rein::keys::generate(rein::TenantId::default(), "load", vec![rein::Scope::Admin], rein::now_ms())
        .context("cannot make an API key")?;
    store.create_api_key(&key.record).await.context("cannot store the API key")?;
    let operator = Arc::new(Operator::new(store, rein::providers::default_client().context("HTTP client")?));
    // No request rate and no cap on running runs: the test measures the
    // server, not the limiter's refusals.
    let config = ServeConfig { tenant_defaults: TenantLimits::default(), ..ServeConfig::default() };
    let state = AppState::new(operator, config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // `rein serve`'s worker: it also keeps the leases of the sync runs.
    let worker = tokio::spawn(state.worker(4, Duration::from_secs(5)).run(async {
        let _ = stopped.await;
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, rein_server::router(state)).await });

    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {}", key.key).parse()?);
    let http = reqwest::Client::builder().default_headers(headers).build()?;
    let register =
        http.post(format!("{base}/v1/agents")).json(&json!({ "toml": agent_toml(&model.base_url) })).send().await?;
    if register.status() != 201 {
        bail!("registering the agent: HTTP {}: {}", register.status(), register.text().await?);
    }

    let url = format!("{base}/v1/agents/{AGENT}/runs");
    // Warm-up: connections opened, the agent built, the store's caches and
    // pool filled, at the measured concurrency.
    if args.warmup > 0 {
        let warm = drive(&http, &url, args.warmup.max(args.concurrency), args.concurrency).await;
        if warm.errors > 0 {
            bail!("{} of the warm-up runs failed", warm.errors);
        }
    }
    let mut batch = drive(&http, &url, args.runs, args.concurrency).await;
    batch.latencies.sort_unstable();

    let _ = stop.send(());
    let _ = worker.await;
    server.abort();
    let wall = batch.wall.as_secs_f64();
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(json!({
        "store": match args.store { StoreKind::Sqlite => "sqlite", StoreKind::Postgres => "postgres" },
        "runs": args.runs,
        "concurrency": args.concurrency,
        "wall_s": round(wall),
        "runs_per_s": (args.runs as f64 / wall).round(),
        "p50_ms": round(quantile_ms(&batch.latencies, 0.50)),
        "p90_ms": round(quantile_ms(&batch.latencies, 0.90)),
        "p99_ms": round(quantile_ms(&batch.latencies, 0.99)),
        "max_ms": round(batch.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)),
        "errors": batch.errors,
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let (store, schema) = open_store(args.store, &dir).await?;
    let result = bench(&args, store).await;
    // Dropped whether or not the test went through.
    if let Some(schema) = schema {
        schema.drop_schema().await?;
    }
    println!("{}", result?);
    Ok(())
}
