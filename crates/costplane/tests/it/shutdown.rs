//! Items accepted just before SIGTERM are in the file after exit.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::support::ServerProcess;

fn logs(request: u64, n: u64) -> Vec<u8> {
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + request * 1_000 + i,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("request {request} record {i}"))) }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn sigterm_flushes_everything_accepted() {
    // Neither the row threshold nor the timer fires before SIGTERM: only the
    // shutdown drain can write these rows.
    let mut server = ServerProcess::start(&["--batch-max-rows", "1000000", "--flush-interval", "10m"]);
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/v1/logs", server.otlp_http);
    for r in 0..25 {
        let resp = client.post(&url).header("content-type", "application/x-protobuf").body(logs(r, 200)).send().expect("export");
        assert_eq!(resp.status().as_u16(), 200);
    }
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", server.log_text());
    assert!(server.log_text().contains("pipeline drained"), "{}", server.log_text());
    assert_eq!(server.count("otel_logs"), 25 * 200);
    let distinct = server.sql("SELECT count(DISTINCT Body) AS n FROM otel_logs");
    assert_eq!(distinct[0]["n"].as_u64(), Some(5000));
}
