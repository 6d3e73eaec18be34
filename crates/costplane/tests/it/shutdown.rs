//! Items accepted just before SIGTERM are in the file after exit.

use crate::support::{logs_request, ServerProcess};

#[test]
fn sigterm_flushes_everything_accepted() {
    // Neither the row threshold nor the timer fires before SIGTERM: only the
    // shutdown drain can write these rows.
    let mut server = ServerProcess::start(&["--batch-max-rows", "1000000", "--flush-interval", "10m"]);
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/v1/logs", server.otlp_http);
    for r in 0..25 {
        let resp =
            client.post(&url).header("content-type", "application/x-protobuf").body(logs_request(r, 200, "")).send().expect("export");
        assert_eq!(resp.status().as_u16(), 200);
    }
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", server.log_text());
    assert!(server.log_text().contains("pipeline drained"), "{}", server.log_text());
    assert_eq!(server.count("otel_logs"), 25 * 200);
    let distinct = server.sql("SELECT count(DISTINCT Body) AS n FROM otel_logs");
    assert_eq!(distinct[0]["n"].as_u64(), Some(5000));
}
