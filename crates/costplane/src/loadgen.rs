//! `costplane loadgen`: sends realistic spans over OTLP/gRPC to a running
//! server and measures, in one run:
//! - the decode ceiling: spans/s that one core turns from protobuf into
//!   costplane's rows (`decode_request`, no network, no store);
//! - the end-to-end rate: spans/s from the first request sent until the
//!   store's `otel_traces` holds every span (counted through `/api/v1/sql`).
//!
//! It prints both and their ratio.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use costplane_server::otlp::grpc::RawCodec;
use costplane_telemetry::{decode_request, Encoding, Limits, Signal};
use indicatif::{ProgressBar, ProgressStyle};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::Rng;

use crate::client::ServerArgs;

#[derive(Args)]
pub struct LoadgenArgs {
    /// The server's HTTP API, to count stored spans (an admin API key when
    /// keys are configured; it is sent with the spans too).
    #[command(flatten)]
    server: ServerArgs,
    /// The server's OTLP/gRPC listen address, as given to `serve` (default
    /// from the config file, else 127.0.0.1:4317).
    #[arg(long, env = "COSTPLANE_OTLP_GRPC_ADDR")]
    otlp_grpc_addr: Option<std::net::SocketAddr>,
    /// OTLP/gRPC endpoint as a URL (beats --otlp-grpc-addr).
    #[arg(long)]
    endpoint: Option<String>,
    /// The tenant (`tenant.id` resource attribute) the spans are billed to.
    #[arg(long, default_value = "loadgen")]
    tenant: String,
    /// Spans to send in all.
    #[arg(long, default_value_t = 200_000)]
    spans: u64,
    /// Spans per export request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent export streams.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Longest wait for the store to hold every span after sending.
    #[arg(long, default_value = "120")]
    timeout_secs: u64,
}

const POOL: usize = 32;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

/// One export request of `n` spans: a resource with 10 attributes, spans
/// with 20 attributes each, shaped like an HTTP service's server spans.
pub fn make_request(n: usize, tenant: &str, rng: &mut impl Rng) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![
            kv("service.name", s("checkout")),
            kv("service.namespace", s("shop")),
            kv("service.version", s("1.42.0")),
            kv("deployment.environment.name", s("production")),
            kv("tenant.id", s(tenant)),
            kv("host.name", s("ip-10-0-3-17")),
            kv("k8s.namespace.name", s("shop")),
            kv("k8s.pod.name", s("checkout-7c9f8d6b5-x2x4q")),
            kv("cloud.region", s("eu-west-1")),
            kv("telemetry.sdk.language", s("rust")),
        ],
        ..Default::default()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let spans = (0..n)
        .map(|i| {
            let start = now - 1_000_000_000 + (i as u64) * 1_000;
            let status_code: u16 = if i % 50 == 0 { 500 } else { 200 };
            Span {
                trace_id: rng.random::<[u8; 16]>().to_vec(),
                span_id: rng.random::<[u8; 8]>().to_vec(),
                parent_span_id: rng.random::<[u8; 8]>().to_vec(),
                name: "POST /api/cart/checkout".to_owned(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + rng.random_range(1_000_000..90_000_000),
                attributes: vec![
                    kv("http.request.method", s("POST")),
                    kv("http.route", s("/api/cart/checkout")),
                    kv("http.response.status_code", any_value::Value::IntValue(status_code.into())),
                    kv("url.scheme", s("https")),
                    kv("url.path", s("/api/cart/checkout")),
                    kv("server.address", s("shop.example.com")),
                    kv("server.port", any_value::Value::IntValue(443)),
                    kv("client.address", s("203.0.113.24")),
                    kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")),
                    kv("network.protocol.version", s("1.1")),
                    kv("http.request.body.size", any_value::Value::IntValue(rng.random_range(200..4000))),
                    kv("http.response.body.size", any_value::Value::IntValue(rng.random_range(100..9000))),
                    kv("enduser.id", s(&format!("user-{}", rng.random_range(0..10_000)))),
                    kv("cart.items", any_value::Value::IntValue(rng.random_range(1..12))),
                    kv("cart.value_usd", any_value::Value::DoubleValue(rng.random_range(5.0..900.0))),
                    kv("payment.provider", s("stripe")),
                    kv("feature_flag.new_checkout", any_value::Value::BoolValue(i % 3 == 0)),
                    kv("thread.name", s("tokio-runtime-worker")),
                    kv("code.function.name", s("checkout::handler::post")),
                    kv("session.id", s(&format!("{:032x}", rng.random::<u128>()))),
                ],
                status: Some(Status {
                    code: if status_code == 500 { status::StatusCode::Error } else { status::StatusCode::Unset } as i32,
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "costplane.loadgen".into(), version: "1".into(), ..Default::default() }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Encoded requests of `batch` spans each (with their span counts), to
/// send round-robin: generating them is not part of what is measured.
pub fn request_pool(batch: usize, tenant: &str, rng: &mut impl Rng) -> Vec<(Vec<u8>, u64)> {
    (0..POOL).map(|_| (make_request(batch, tenant, rng).encode_to_vec(), batch as u64)).collect()
}

/// Spans per second one core decodes from protobuf into rows.
pub fn decode_rate(pool: &[(Vec<u8>, u64)], per_request: usize, total: u64) -> f64 {
    let limits = Limits::default();
    let requests = (total as usize).div_ceil(per_request).max(1);
    let started = Instant::now();
    let mut spans = 0u64;
    for i in 0..requests {
        let conv = decode_request(Signal::Traces, Encoding::Protobuf, &pool[i % pool.len()].0, &limits).expect("generated requests decode");
        spans += conv.accepted;
        std::hint::black_box(&conv.batch);
    }
    spans as f64 / started.elapsed().as_secs_f64()
}

async fn stored_spans(client: &reqwest::Client, api: &str, server: &ServerArgs) -> anyhow::Result<u64> {
    let url = format!("{api}/api/v1/sql");
    let resp = server
        .authorize(client.post(&url).json(&serde_json::json!({ "sql": "SELECT count(*) AS n FROM otel_traces" })))
        .send()
        .await
        .with_context(|| format!("cannot reach the server's API at {url}; is `costplane serve` running?"))?;
    let (status, body) = crate::client::costplane_json(resp, api).await?;
    if !status.is_success() {
        bail!("counting stored spans failed ({status}): {}", body["error"].as_str().unwrap_or("unknown error"));
    }
    body["rows"][0][0].as_u64().context("unexpected answer to the count query")
}

/// How a load is sent: over `streams` concurrent export streams, at most
/// `requests` requests, until `until` when given.
pub struct Drive {
    pub streams: usize,
    pub requests: u64,
    pub until: Option<Instant>,
    pub auth: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// Spans per second offered in all (`None`: as fast as answered). Request
    /// `i` goes out no earlier than the time at which a steady stream at
    /// this rate would send it, whichever sender takes it.
    pub rate: Option<f64>,
    /// Makes request `i`'s body (the pool entry then only gives its span
    /// count), for loads whose requests must each be different.
    pub stamp: Option<Stamp>,
}

/// The body of request `i`, made when it is sent.
pub type Stamp = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;

/// What a load acknowledged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    /// Spans in requests answered OK.
    pub spans: u64,
    /// Requests answered UNAVAILABLE and sent again.
    pub retries: u64,
}

/// Sends the requests of `pool` (encoded trace export requests, the
/// number of spans each holds beside it) round-robin; a request answered
/// UNAVAILABLE (back-pressure) is sent again after 50 ms, as exporters do.
pub async fn drive(
    channel: tonic::transport::Channel,
    pool: Arc<Vec<(Vec<u8>, u64)>>,
    plan: Drive,
    bar: ProgressBar,
) -> anyhow::Result<Sent> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let retries = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..plan.streams {
        let (channel, next, retries, acked, pool, bar, auth) =
            (channel.clone(), next.clone(), retries.clone(), acked.clone(), pool.clone(), bar.clone(), plan.auth.clone());
        let (requests, until, rate, stamp) = (plan.requests, plan.until, plan.rate, plan.stamp.clone());
        workers.push(tokio::spawn(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            let path = tonic::codegen::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests || until.is_some_and(|t| Instant::now() >= t) {
                    return Ok::<(), anyhow::Error>(());
                }
                let (pooled, spans) = &pool[(i as usize) % pool.len()];
                let stamped = stamp.as_ref().map(|f| f(i));
                let body = stamped.as_ref().unwrap_or(pooled);
                if let Some(rate) = rate {
                    // Requests of the pool have about the same size: pace by
                    // this one's spans.
                    let due = start + Duration::from_secs_f64(i as f64 * *spans as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                loop {
                    grpc.ready().await.context("the gRPC channel closed")?;
                    let mut request = tonic::Request::new(body.clone());
                    if let Some(auth) = &auth {
                        request.metadata_mut().insert("authorization", auth.clone());
                    }
                    match grpc.unary(request, path.clone(), RawCodec).await {
                        Ok(_) => break,
                        Err(status) if status.code() == tonic::Code::Unavailable => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => bail!("export failed: {status}"),
                    }
                }
                acked.fetch_add(*spans, Ordering::Relaxed);
                bar.inc(*spans);
            }
        }));
    }
    for w in workers {
        w.await.context("a sender task panicked")??;
    }
    Ok(Sent { spans: acked.load(Ordering::Relaxed), retries: retries.load(Ordering::Relaxed) })
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.concurrency == 0 || args.spans == 0 {
        bail!("--spans, --batch and --concurrency must be at least 1");
    }
    let mut rng = rand::rng();
    let config = args.server.config(costplane_server::Overrides { otlp_grpc_addr: args.otlp_grpc_addr, ..Default::default() })?;
    let api = args.server.base_url(&config);
    let endpoint = args.endpoint.clone().unwrap_or_else(|| {
        let mut addr = config.otlp.grpc_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    });
    let pool = request_pool(args.batch, &args.tenant, &mut rng);
    let request_bytes = pool.iter().map(|(b, _)| b.len()).sum::<usize>() / pool.len();
    eprintln!(
        "loadgen: {} spans in requests of {} spans ({} KiB each), {} streams",
        args.spans,
        args.batch,
        request_bytes / 1024,
        args.concurrency
    );

    eprintln!("measuring the decode ceiling (one core, protobuf -> rows, no store)...");
    let ceiling = decode_rate(&pool, args.batch, args.spans);

    let http = reqwest::Client::new();
    let before = stored_spans(&http, &api, &args.server).await?;
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .context("invalid --endpoint")?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))?;
    let auth: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = match &args.server.api_key {
        Some(key) => Some(format!("Bearer {key}").parse().context("the API key is not valid header text")?),
        None => None,
    };

    let requests = args.spans.div_ceil(args.batch as u64);
    let bar = ProgressBar::new(args.spans);
    bar.set_style(
        ProgressStyle::with_template("{spinner} sending [{bar:40}] {pos}/{len} spans ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let sent = drive(
        channel,
        Arc::new(pool),
        Drive { streams: args.concurrency, requests, until: None, auth, rate: None, stamp: None },
        bar.clone(),
    )
    .await?;
    let retries = sent.retries;
    let send_secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let sent = sent.spans;
    let target = before + sent;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let stored = loop {
        let n = stored_spans(&http, &api, &args.server).await?;
        if n >= target {
            break n;
        }
        if Instant::now() > deadline {
            bail!("after {}s the store holds {} of {} spans", args.timeout_secs, n - before, sent);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let e2e_secs = started.elapsed().as_secs_f64();
    let e2e = sent as f64 / e2e_secs;
    println!("spans sent:            {sent} ({retries} retried requests)");
    println!("spans stored:          {}", stored - before);
    println!("send rate:             {:>12.0} spans/s ({send_secs:.2}s)", sent as f64 / send_secs);
    println!("end-to-end into store: {e2e:>12.0} spans/s ({e2e_secs:.2}s)");
    println!("decode ceiling:        {ceiling:>12.0} spans/s (one core)");
    println!("ratio e2e/ceiling:     {:>12.3}", e2e / ceiling);
    Ok(())
}
