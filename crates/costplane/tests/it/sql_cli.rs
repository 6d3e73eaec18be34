//! `costplane sql`: through the running server's API, and read-only on the
//! file once the server has stopped; writes are refused.

use std::process::Command;

use crate::support::{ServerProcess, BIN};

fn sql(server: &ServerProcess, format: &str, query: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["sql", "--format", format, "--server", &format!("http://{}", server.api), "--data-dir"])
        .arg(server.data_dir.path())
        .arg(query)
        .output()
        .expect("run costplane sql")
}

#[test]
fn sql_reads_while_serving_and_after_stop_and_refuses_writes() {
    let mut server = ServerProcess::start(&[]);
    // While the server holds the file, the query goes through its API.
    let out = sql(&server, "table", "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'otel_%' ORDER BY 1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for table in [
        "otel_logs",
        "otel_metrics_exp_histogram",
        "otel_metrics_gauge",
        "otel_metrics_histogram",
        "otel_metrics_sum",
        "otel_metrics_summary",
        "otel_traces",
    ] {
        assert!(text.contains(table), "{table} missing from:\n{text}");
    }
    assert!(text.ends_with("(7 rows)\n"), "{text}");

    let out = sql(&server, "csv", "SELECT 1 AS n, '=cmd' AS f, 'a,b' AS g");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "n,f,g\n1,'=cmd,\"a,b\"\n");

    let out = sql(&server, "json", "DELETE FROM otel_traces");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only read-only statements are allowed"), "{err}");

    let out = sql(&server, "json", "SELECT * FROM read_csv('/etc/passwd')");
    assert!(!out.status.success(), "external file access must be off");

    assert!(server.terminate().success());
    // No server now: the file is opened read-only.
    let out = sql(&server, "json", "SELECT count(*) AS n FROM otel_traces");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows, serde_json::json!([{ "n": 0 }]));
}

#[test]
fn sql_without_server_or_store_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new(BIN).args(["sql", "--server", "http://127.0.0.1:9", "--data-dir"]).arg(dir.path()).arg("SELECT 1").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no server answered") && err.contains("costplane serve"), "{err}");
}

#[test]
fn serve_honours_the_price_overrides_that_prices_check_reads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.toml");
    std::fs::write(
        &file,
        "version = \"cli-overrides-7\"\ncurrency = \"USD\"\n[[model]]\nprovider = \"acme\"\nname = \"acme-internal\"\n  [[model.prices]]\n  effective = \"2026-01-01\"\n  input = \"1.00\"\n  output = \"2.00\"\n",
    )
    .unwrap();
    // `--overrides` (env COSTPLANE_PRICE_OVERRIDES, as for `prices check`).
    let server = ServerProcess::start(&["--overrides", file.to_str().unwrap()]);
    assert!(server.log_text().contains("cli-overrides-7"), "the server bills with the override file: {}", server.log_text());
}
