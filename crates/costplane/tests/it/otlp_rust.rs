//! The Rust `opentelemetry-otlp` exporter (gRPC with gzip, and HTTP/protobuf)
//! sends spans; after SIGTERM the DuckDB file holds exactly what was sent.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use opentelemetry_sdk::Resource;

use crate::support::ServerProcess;

const T0: u64 = 1_763_900_000_123_456_789;

fn span(trace: u128, span: u64, name: &'static str, start_ns: u64, attrs: Vec<KeyValue>) -> SpanData {
    let at = |ns: u64| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(trace.to_be_bytes()),
            SpanId::from_bytes(span.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from_bytes(0x0102_0304_0506_0708u64.to_be_bytes()),
        parent_span_is_remote: false,
        span_kind: SpanKind::Client,
        name: name.into(),
        start_time: at(start_ns),
        end_time: at(start_ns + 1_500_000),
        attributes: attrs,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::error("upstream timed out"),
        instrumentation_scope: InstrumentationScope::builder("rust-e2e").with_version("0.1").build(),
    }
}

fn resource(service: &'static str) -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", service),
            KeyValue::new("tenant.id", "acme"),
            KeyValue::new("service.namespace", "shop"),
        ])
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_otlp_exporters_over_grpc_and_http_store_exact_spans() {
    let mut server = ServerProcess::start(&[]);

    let mut grpc = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", server.grpc))
        .with_compression(Compression::Gzip)
        .build()
        .expect("tonic exporter");
    grpc.set_resource(&resource("rust-grpc"));
    let grpc_spans: Vec<SpanData> = (0..50u64)
        .map(|i| {
            span(
                0xA1A2_A3A4_A5A6_A7A8_A9AA_ABAC_ADAE_AF00 + u128::from(i),
                0x1000 + i,
                "SELECT orders",
                T0 + i,
                vec![KeyValue::new("db.system.name", "postgresql"), KeyValue::new("row", i as i64)],
            )
        })
        .collect();
    grpc.export(grpc_spans).await.expect("gRPC export succeeds");

    let mut http = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://{}/v1/traces", server.otlp_http))
        .with_compression(Compression::Gzip)
        .build()
        .expect("http exporter");
    http.set_resource(&resource("rust-http"));
    let http_spans: Vec<SpanData> = (0..30u64)
        .map(|i| span(0xB0 + u128::from(i), 0x2000 + i, "GET /inventory", T0 + 1_000 + i, vec![KeyValue::new("ok", true)]))
        .collect();
    http.export(http_spans).await.expect("HTTP export succeeds");

    let status = server.terminate();
    assert!(status.success(), "costplane exits 0 after SIGTERM: {status:?}\n{}", server.log_text());

    let by_service = server.sql("SELECT ServiceName, count(*) AS n FROM otel_traces GROUP BY 1 ORDER BY 1");
    assert_eq!(by_service.len(), 2, "{by_service:?}");
    assert_eq!((by_service[0]["ServiceName"].as_str(), by_service[0]["n"].as_u64()), (Some("rust-grpc"), Some(50)));
    assert_eq!((by_service[1]["ServiceName"].as_str(), by_service[1]["n"].as_u64()), (Some("rust-http"), Some(30)));

    let rows = server.sql(
        "SELECT TraceId, SpanId, ParentSpanId, SpanName, SpanKind, Duration, StatusCode, StatusMessage, \
         ScopeName, ScopeVersion, ResourceAttributes['tenant.id'] AS tenant, SpanAttributes['row'] AS row_attr, \
         SpanAttributes['db.system.name'] AS db, epoch_ns(Timestamp) AS ts_ns \
         FROM otel_traces WHERE ServiceName = 'rust-grpc' ORDER BY SpanId LIMIT 2",
    );
    let r = &rows[1];
    assert_eq!(r["TraceId"], "a1a2a3a4a5a6a7a8a9aaabacadaeaf01");
    assert_eq!(r["SpanId"], "0000000000001001");
    assert_eq!(r["ParentSpanId"], "0102030405060708");
    assert_eq!(r["SpanName"], "SELECT orders");
    assert_eq!(r["SpanKind"], "Client");
    assert_eq!(r["Duration"].as_u64(), Some(1_500_000));
    assert_eq!(r["StatusCode"], "Error");
    assert_eq!(r["StatusMessage"], "upstream timed out");
    assert_eq!(r["ScopeName"], "rust-e2e");
    assert_eq!(r["ScopeVersion"], "0.1");
    assert_eq!(r["tenant"], "acme");
    assert_eq!(r["row_attr"], "1");
    assert_eq!(r["db"], "postgresql");
    // Nanoseconds survive the round trip.
    assert_eq!(r["ts_ns"].as_u64(), Some(T0 + 1));
}

/// Runs the openssl CLI in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA and a server certificate it signed, for localhost and 127.0.0.1.
fn test_ca(dir: &std::path::Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=costplane-test-ca", "-days", "2"]].concat(),
    );
    openssl(dir, &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_otlp_exporters_send_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    test_ca(&certs);
    let config = dir.path().join("costplane.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            certs.join("server.crt").display().to_string(),
            certs.join("server.key").display().to_string()
        ),
    )
    .unwrap();
    let mut server = ServerProcess::start_logged(dir, &["--config", config.to_str().unwrap()]);
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();

    let tls =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(&ca)).domain_name("localhost");
    let mut grpc = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://localhost:{}", server.grpc.port()))
        .with_tls_config(tls)
        .build()
        .expect("tonic exporter with TLS");
    grpc.set_resource(&resource("rust-grpc-tls"));
    grpc.export(vec![span(0xC0, 0x3000, "over grpcs", T0, vec![])]).await.expect("gRPC export over TLS succeeds");

    // A client that does not trust the test CA is refused.
    let untrusting = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://localhost:{}", server.grpc.port()))
        .with_tls_config(tonic::transport::ClientTlsConfig::new().domain_name("localhost"))
        .build()
        .unwrap();
    assert!(untrusting.export(vec![span(0xC2, 0x3002, "untrusted", T0 + 2, vec![])]).await.is_err());

    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    let names = server.sql("SELECT SpanName FROM otel_traces ORDER BY SpanName");
    let names: Vec<&str> = names.iter().map(|r| r["SpanName"].as_str().unwrap()).collect();
    assert_eq!(names, ["over grpcs"]);
}
