//! `costplane bench-queries`: how fast the store answers the queries users
//! run, over `--spans` stored spans (10 million by default) and a log
//! record for every tenth span.
//!
//! The data: eight services, sixteen span names, spans spread evenly over
//! yesterday (UTC), eight spans per trace, every tenth span a model call
//! (so 10 million spans hold a million LLM calls for the unit-cost reads). Each query is timed through
//! costplane's own API (`/api/v1/sql`, `/api/v1/costs`), the median of
//! `--repeat` runs, and reported with the rows the engine read: ClickHouse's
//! `rows_read` (the JSON format's statistics), DuckDB's JSON profile
//! (`total_rows_scanned`, read from the data directory once the
//! server has stopped, through the same table names, so it works whatever
//! lies behind them).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use costplane_server::otlp::grpc::RawCodec;
use indicatif::{ProgressBar, ProgressStyle};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::{start, Target, Tools};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryStore {
    Embedded,
    Clickhouse,
}

#[derive(Args)]
pub struct QueryBenchArgs {
    /// Spans to store before querying.
    #[arg(long, default_value_t = 10_000_000)]
    spans: u64,
    /// Stores to measure, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "embedded")]
    stores: Vec<QueryStore>,
    /// Runs of each query; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Spans per export request while loading.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Concurrent export streams while loading.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    #[command(flatten)]
    tools: Tools,
}

const SERVICES: [&str; 8] = ["checkout", "cart", "payments", "search", "auth", "catalog", "shipping", "frontend"];
const NAMES: [&str; 16] = [
    "GET /",
    "GET /cart",
    "POST /cart",
    "GET /product",
    "GET /search",
    "POST /login",
    "POST /pay",
    "GET /ship",
    "db.query",
    "db.insert",
    "cache.get",
    "cache.set",
    "queue.publish",
    "queue.consume",
    "render",
    "grpc.call",
];
/// Spans per trace.
const TRACE_LEN: u64 = 8;
/// A log record for every this many spans.
const LOG_EVERY: u64 = 10;
/// A model call (`gen_ai.*` usage) on every this many spans.
const LLM_EVERY: u64 = 10;

/// The trace id of global span number `g` (never all zeroes).
fn trace_id(g: u64) -> [u8; 16] {
    (u128::from(g / TRACE_LEN) * 0x9e37_79b9_7f4a_7c15 + 1).to_be_bytes()
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn resource(seq: u64) -> Resource {
    let service = SERVICES[(seq % SERVICES.len() as u64) as usize];
    Resource {
        attributes: vec![
            kv("service.name", any_value::Value::StringValue(service.into())),
            kv("tenant.id", any_value::Value::StringValue(format!("tenant-{}", seq % 4))),
            kv("deployment.environment.name", any_value::Value::StringValue("production".into())),
        ],
        ..Default::default()
    }
}

/// A span's attributes: every [`LLM_EVERY`]th span is also a model call.
fn attributes(g: u64) -> Vec<KeyValue> {
    let mut out = vec![
        kv("http.response.status_code", any_value::Value::IntValue(if g.is_multiple_of(50) { 500 } else { 200 })),
        kv("enduser.id", any_value::Value::StringValue(format!("user-{}", g % 10_000))),
        kv("http.request.body.size", any_value::Value::IntValue((g % 4000) as i64)),
        kv("cart.value_usd", any_value::Value::DoubleValue((g % 900) as f64 + 0.5)),
    ];
    if g.is_multiple_of(LLM_EVERY) {
        out.extend([
            kv("gen_ai.operation.name", any_value::Value::StringValue("chat".into())),
            kv("gen_ai.provider.name", any_value::Value::StringValue("openai".into())),
            kv("gen_ai.request.model", any_value::Value::StringValue("gpt-4o-mini".into())),
            kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(1000 + (g % 500) as i64)),
            kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(200)),
        ]);
    }
    out
}

/// Request `seq` of `batch` spans out of `total`, spread over the day
/// starting at `day_ns`.
fn traces(seq: u64, batch: u64, total: u64, day_ns: u64) -> ExportTraceServiceRequest {
    let step = 86_400_000_000_000 / total.max(1);
    let spans = (seq * batch..((seq + 1) * batch).min(total))
        .map(|g| {
            let start = day_ns + g * step;
            Span {
                trace_id: trace_id(g).to_vec(),
                span_id: (g + 1).to_be_bytes().to_vec(),
                name: NAMES[(g % NAMES.len() as u64) as usize].into(),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000_000 + (g * 7919) % 90_000_000,
                attributes: attributes(g),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(seq)),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// The log records of spans `seq * batch ..` (one per `LOG_EVERY` spans).
fn logs(seq: u64, batch: u64, total: u64, day_ns: u64) -> ExportLogsServiceRequest {
    let step = 86_400_000_000_000 / total.max(1);
    let records = (seq * batch..((seq + 1) * batch).min(total))
        .filter(|g| g % LOG_EVERY == 0)
        .map(|g| LogRecord {
            time_unix_nano: day_ns + g * step,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("handled request {g}"))) }),
            trace_id: trace_id(g).to_vec(),
            span_id: (g + 1).to_be_bytes().to_vec(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(seq)),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Sends every request (spans and their logs) over `streams` streams.
async fn load(channel: tonic::transport::Channel, args: &QueryBenchArgs, day_ns: u64) -> anyhow::Result<()> {
    let batch = args.batch as u64;
    let requests = args.spans.div_ceil(batch);
    let next = Arc::new(AtomicU64::new(0));
    let bar = ProgressBar::new(args.spans);
    bar.set_style(
        ProgressStyle::with_template("{spinner} loading [{bar:40}] {pos}/{len} spans ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut tasks = Vec::new();
    for _ in 0..args.streams {
        let (channel, next, bar, total) = (channel.clone(), next.clone(), bar.clone(), args.spans);
        tasks.push(tokio::spawn(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            let trace_path =
                tonic::codegen::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
            let logs_path =
                tonic::codegen::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.logs.v1.LogsService/Export");
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= requests {
                    return Ok::<(), anyhow::Error>(());
                }
                let bodies = [
                    (trace_path.clone(), traces(seq, batch, total, day_ns).encode_to_vec()),
                    (logs_path.clone(), logs(seq, batch, total, day_ns).encode_to_vec()),
                ];
                for (path, body) in bodies {
                    loop {
                        grpc.ready().await.context("the gRPC channel closed")?;
                        match grpc.unary(tonic::Request::new(body.clone()), path.clone(), RawCodec).await {
                            Ok(_) => break,
                            Err(s) if s.code() == tonic::Code::Unavailable => tokio::time::sleep(Duration::from_millis(50)).await,
                            Err(s) => bail!("export failed: {s}"),
                        }
                    }
                }
                bar.inc(batch.min(total - seq * batch));
            }
        }));
    }
    for t in tasks {
        t.await.context("a loader task panicked")??;
    }
    bar.finish_and_clear();
    Ok(())
}

/// One benchmark query in both dialects.
struct Query {
    name: &'static str,
    embedded: String,
    clickhouse: String,
}

fn queries(day: &str, trace: &str) -> Vec<Query> {
    let q = |name, embedded: String, clickhouse: String| Query { name, embedded, clickhouse };
    vec![
        q(
            "count by service",
            "SELECT ServiceName, count(*) AS n FROM otel_traces GROUP BY ServiceName ORDER BY n DESC".into(),
            "SELECT ServiceName, count() AS n FROM otel_traces GROUP BY ServiceName ORDER BY n DESC".into(),
        ),
        q(
            "p95 Duration by service and span name, one day",
            format!(
                "SELECT ServiceName, SpanName, quantile_cont(Duration, 0.95) AS p95 FROM otel_traces \
                 WHERE Timestamp >= TIMESTAMP '{day} 00:00:00' AND Timestamp < TIMESTAMP '{day} 00:00:00' + INTERVAL 1 DAY \
                 GROUP BY ServiceName, SpanName ORDER BY ServiceName, SpanName"
            ),
            format!(
                "SELECT ServiceName, SpanName, quantile(0.95)(Duration) AS p95 FROM otel_traces \
                 WHERE Timestamp >= toDateTime64('{day} 00:00:00', 9) AND Timestamp < toDateTime64('{day} 00:00:00', 9) + INTERVAL 1 DAY \
                 GROUP BY ServiceName, SpanName ORDER BY ServiceName, SpanName"
            ),
        ),
        q(
            "spans of one trace id",
            format!("SELECT * FROM otel_traces WHERE TraceId = '{trace}'"),
            // The exporter's lookup table bounds the time range first.
            format!(
                "WITH b AS (SELECT min(Start) AS s, max(End) AS e FROM otel_traces_trace_id_ts WHERE TraceId = '{trace}') \
                 SELECT * FROM otel_traces WHERE TraceId = '{trace}' \
                 AND Timestamp >= (SELECT s FROM b) AND Timestamp <= (SELECT e FROM b) + INTERVAL 1 SECOND"
            ),
        ),
        q(
            "logs of one trace id",
            format!("SELECT * FROM otel_logs WHERE TraceId = '{trace}'"),
            format!("SELECT * FROM otel_logs WHERE TraceId = '{trace}'"),
        ),
    ]
}

/// The median of `runs` timings of `f`, in milliseconds, and its last answer.
async fn timed<T, F, Fut>(runs: usize, mut f: F) -> anyhow::Result<(f64, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        last = Some(f().await?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], last.context("no run")?))
}

async fn api_sql(http: &reqwest::Client, api: &str, sql: &str) -> anyhow::Result<usize> {
    let resp = http.post(format!("{api}/api/v1/sql")).json(&serde_json::json!({ "sql": sql })).send().await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        bail!("{sql}: {status} {}", body["error"]);
    }
    Ok(body["rows"].as_array().map_or(0, Vec::len))
}

/// DuckDB's count of rows scanned for `sql`, from its JSON profile.
fn duckdb_rows_scanned(db: &Path, sql: &str, profile: &Path) -> anyhow::Result<u64> {
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
    let conn = duckdb::Connection::open_with_flags(db, config)?;
    // SET takes no parameters; the path is this run's own work directory,
    // its quotes doubled.
    let out = profile.display().to_string().replace('\'', "''");
    conn.execute_batch(&format!("SET enable_profiling = 'json'; SET profiling_output = '{out}'; SET profiling_mode = 'detailed';"))?;
    {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    drop(conn);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(profile)?)?;
    // DuckDB 2's profile: the query's total, else each scan operator's.
    fn sum(v: &serde_json::Value) -> u64 {
        let own = v["rows_scanned"].as_u64().unwrap_or(0);
        let children = ["children", "operator"].iter().filter_map(|k| v[*k].as_array()).flatten().map(sum).sum::<u64>();
        own + children
    }
    Ok(json["query"]["total_rows_scanned"].as_u64().unwrap_or_else(|| sum(&json)))
}

pub async fn run(args: QueryBenchArgs) -> anyhow::Result<()> {
    if args.spans == 0 || args.batch == 0 || args.streams == 0 {
        bail!("--spans, --batch and --streams must be at least 1");
    }
    let (work, _guard) = args.tools.work_dir()?;
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let day_s = (now_s / 86_400 - 1) * 86_400;
    let day = chrono::DateTime::from_timestamp(day_s as i64, 0).context("a date")?.format("%Y-%m-%d").to_string();
    let trace = hex_lower(&trace_id(0));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let mut table = Vec::new();
    for store in &args.stores {
        let target = match store {
            QueryStore::Embedded => Target::CostplaneEmbedded,
            QueryStore::Clickhouse => Target::CostplaneClickhouse,
        };
        let dir = work.join(format!("queries-{store:?}").to_lowercase());
        let mut gw = start(target, &args.tools, None, &dir, &http).await?;
        let api = gw.api.clone().context("a costplane target has an API")?;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.grpc))?.connect().await?;
        eprintln!("loading {} spans into the {store:?} store...", args.spans);
        load(channel, &args, day_s * 1_000_000_000).await?;
        let want_logs = args.spans.div_ceil(LOG_EVERY);
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            gw.proc.check_running()?;
            let count = |t: &'static str| {
                let (http, api) = (&http, &api);
                async move {
                    let resp = http
                        .post(format!("{api}/api/v1/sql"))
                        .json(&serde_json::json!({ "sql": format!("SELECT count(*) FROM {t}") }))
                        .send()
                        .await?;
                    let body: serde_json::Value = resp.json().await?;
                    body["rows"][0][0].as_u64().context("a count")
                }
            };
            let (spans, logs) = (count("otel_traces").await?, count("otel_logs").await?);
            if spans >= args.spans && logs >= want_logs {
                break;
            }
            if Instant::now() > deadline {
                bail!("the store holds {spans} of {} spans and {logs} of {want_logs} logs", args.spans);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut results = Vec::new();
        for q in queries(&day, &trace) {
            let sql = match store {
                QueryStore::Embedded => q.embedded.clone(),
                QueryStore::Clickhouse => q.clickhouse.clone(),
            };
            let (ms, rows) = timed(args.repeat, || api_sql(&http, &api, &sql)).await?;
            let scanned = match (&gw.front, store) {
                (Some(front), QueryStore::Clickhouse) => {
                    // The JSON format's statistics carry the engine's own
                    // count of rows read (the front's summary header only
                    // knows the result).
                    let (text, _) = front.query_in(&http, "costplane", &format!("{sql} FORMAT JSON")).await?;
                    let json: serde_json::Value = serde_json::from_str(&text).context("FORMAT JSON")?;
                    json["statistics"]["rows_read"].as_u64()
                }
                _ => None,
            };
            results.push((q.name.to_owned(), ms, rows, scanned, sql));
        }
        let (ms, rows) = timed(args.repeat, || async {
            let resp = http.get(format!("{api}/api/v1/costs?group_by=service&step=day")).send().await?;
            if !resp.status().is_success() {
                bail!("the cost API answered {}", resp.status());
            }
            let body: serde_json::Value = resp.json().await?;
            Ok(body["series"].as_array().map_or(0, Vec::len))
        })
        .await?;
        results.push(("cost API month view (group_by=service, step=day)".into(), ms, rows, None, String::new()));
        let next = chrono::DateTime::from_timestamp(day_s as i64 + 86_400, 0).context("a date")?.format("%Y-%m-%d").to_string();
        for (name, path) in [
            ("unit costs by service and route (the day)", format!("/api/v1/unit-costs?from={day}&to={next}&group_by=service,route")),
            ("unit costs by customer (the day)", format!("/api/v1/unit-costs?from={day}&to={next}&group_by=customer&limit=10")),
            ("cost of one trace", format!("/api/v1/traces/{trace}/cost?from={day}&to={next}")),
        ] {
            let (ms, rows) = timed(args.repeat, || async {
                let resp = http.get(format!("{api}{path}")).send().await?;
                if !resp.status().is_success() {
                    bail!("{path} answered {}", resp.status());
                }
                let body: serde_json::Value = resp.json().await?;
                Ok(body["groups"].as_array().or(body["calls"].as_array()).map_or(0, Vec::len))
            })
            .await?;
            results.push((name.into(), ms, rows, None, String::new()));
        }
        let data_dir = gw.data_dir.clone();
        gw.proc.stop();
        if *store == QueryStore::Embedded {
            let db = data_dir.join("costplane.duckdb");
            for (i, r) in results.iter_mut().enumerate() {
                if !r.4.is_empty() {
                    r.3 = Some(duckdb_rows_scanned(&db, &r.4, &work.join(format!("profile-{i}.json")))?);
                }
            }
        }
        drop(gw);
        table.push((*store, results));
    }
    println!();
    println!(
        "costplane bench-queries: {} spans over one day ({day}), {} log records; median of {} runs",
        args.spans,
        args.spans.div_ceil(LOG_EVERY),
        args.repeat
    );
    println!("machine: {}", super::machine());
    println!();
    println!("| store | query | median ms | result rows | rows scanned |");
    println!("|---|---|---:|---:|---:|");
    for (store, results) in &table {
        for (name, ms, rows, scanned, _) in results {
            println!("| {store:?} | {name} | {ms:.1} | {rows} | {} |", scanned.map_or("-".to_owned(), |s| s.to_string()));
        }
    }
    Ok(())
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_spreads_over_the_day_in_traces_of_eight() {
        // 1,000 spans over a day: one every 86.4 s; request 1 of 512 holds
        // spans 512..999 (488 of them), of which 48 (520, 530, ..., 990)
        // get a log record.
        let day = 1_700_000_000_000_000_000 / 86_400_000_000_000 * 86_400_000_000_000;
        let r = traces(1, 512, 1000, day);
        let spans = &r.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 488);
        assert_eq!(spans[0].start_time_unix_nano, day + 512 * 86_400_000_000);
        assert_eq!(spans[0].trace_id, spans[7].trace_id.clone()); // 512..519 share trace 64
        assert_ne!(spans[7].trace_id, spans[8].trace_id);
        assert!(spans.last().unwrap().start_time_unix_nano < day + 86_400_000_000_000);
        let l = logs(1, 512, 1000, day);
        assert_eq!(l.resource_logs[0].scope_logs[0].log_records.len(), 48);
        // Span 520 is the request's ninth.
        assert_eq!(l.resource_logs[0].scope_logs[0].log_records[0].trace_id, spans[8].trace_id);
        assert!(trace_id(0).iter().any(|b| *b != 0));
    }
}
