//! `costplane import focus` end to end against the real binary: the shared
//! FOCUS 1.0 sample (totals checked against DuckDB's own CSV reader, an
//! independent parser), idempotent re-import, an AWS-shaped FOCUS 1.2
//! gzip export read through its Manifest.json, an Azure FocusCost 1.0r2
//! file, and a malformed file that imports nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rust_decimal::Decimal;

use crate::support::{ServerProcess, BIN};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/focus/focus_sample_1.0.csv")
}

fn import(server: &ServerProcess, paths: &[&Path]) -> Output {
    Command::new(BIN)
        .args(["import", "focus", "--server", &format!("http://{}", server.api)])
        .args(paths)
        .output()
        .expect("run costplane import focus")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Σ BilledCost and Σ EffectiveCost of the ledger's cloud rows per provider.
pub(crate) fn ledger_totals(server: &ServerProcess) -> BTreeMap<String, (Decimal, Decimal)> {
    server
        .sql(
            "SELECT ProviderName AS p, CAST(sum(BilledCost) AS VARCHAR) AS b, CAST(sum(EffectiveCost) AS VARCHAR) AS e \
             FROM costplane_ledger WHERE x_Source = 'cloud' GROUP BY 1",
        )
        .iter()
        .map(|r| (r["p"].as_str().unwrap().to_owned(), (d(r["b"].as_str().unwrap()), d(r["e"].as_str().unwrap()))))
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Independent totals: DuckDB's CSV reader over the sample, every cell as
/// text, NULL as null, summed as DECIMAL(38, 12) per provider.
fn sample_totals() -> BTreeMap<String, (Decimal, Decimal)> {
    csv_totals(&sample())
}

/// Σ BilledCost and Σ EffectiveCost per provider of a FOCUS CSV file, as
/// DuckDB's CSV reader sums them (cells as text, NULL as null). Each cell
/// is first rounded to the ledger's 12 places, half to even (DuckDB's
/// `round_even`): provider exports carry up to 15 (AWS), and a plain cast
/// would round their ties away from zero.
pub(crate) fn csv_totals(path: &Path) -> BTreeMap<String, (Decimal, Decimal)> {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT ProviderName, CAST(sum(round_even(CAST(BilledCost AS DECIMAL(38, 18)), 12)) AS VARCHAR), \
             CAST(sum(round_even(CAST(EffectiveCost AS DECIMAL(38, 18)), 12)) AS VARCHAR), count(*) \
             FROM read_csv(?, all_varchar = true, nullstr = 'NULL', header = true) GROUP BY 1",
        )
        .unwrap();
    stmt.query_map([path.to_str().unwrap()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .map(|(p, b, e)| (p, (d(&b), d(&e))))
        .collect()
}

#[test]
fn focus_sample_imports_and_reimport_changes_nothing() {
    let server = ServerProcess::start(&[]);
    let out = ok(import(&server, &[&sample()]));
    assert!(out.contains("imported 1000 rows"), "{out}");
    let expected = sample_totals();
    assert_eq!(expected.len(), 3, "AWS, Microsoft, Oracle: {expected:?}");
    let got = ledger_totals(&server);
    // The sample's Microsoft rows carry ContractedCost/ListCost, not
    // zeros, so the Azure fix-up does not touch Billed or Effective.
    assert_eq!(got, expected);
    let rows = server.count("costplane_ledger WHERE x_Source = 'cloud'");
    assert_eq!(rows, 1000);
    // A second import of the same file replaces its periods: same rows, same totals.
    ok(import(&server, &[&sample()]));
    assert_eq!(server.count("costplane_ledger WHERE x_Source = 'cloud'"), 1000);
    assert_eq!(ledger_totals(&server), expected);
    // Tags are kept as a JSON object; the non-spec `Id` column is dropped,
    // BillingAccountId kept in x_Extra.
    let r = server.sql("SELECT x_Extra AS x FROM costplane_ledger WHERE x_Source = 'cloud' AND ProviderName = 'AWS' LIMIT 1");
    assert!(r[0]["x"].as_str().unwrap().contains("\"BillingAccountId\":\"1234567890123\""), "{:?}", r[0]);
}

const AWS_12_HEADER: &str = "BilledCost,BillingAccountId,BillingAccountName,BillingAccountType,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,\
ChargeCategory,ChargeClass,ChargeDescription,ChargePeriodEnd,ChargePeriodStart,ConsumedQuantity,ConsumedUnit,ContractedCost,EffectiveCost,\
InvoiceIssuerName,ListCost,PricingQuantity,PricingUnit,ProviderName,PublisherName,ResourceId,ServiceCategory,ServiceName,SkuId,SubAccountId,\
SubAccountName,Tags,x_Discounts,x_Operation,x_ServiceCode";

#[test]
fn aws_12_gzip_export_through_its_manifest() {
    aws_12(ServerProcess::start(&[]));
}

#[test]
fn aws_12_reimport_replaces_on_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    aws_12(ServerProcess::start(&crate::support::clickhouse_args(&target, &[])));
}

fn aws_12(server: ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/BILLING_PERIOD=2025-03");
    std::fs::create_dir_all(&data).unwrap();
    // Two usage lines and a Savings Plan covered line:
    // BilledCost 1.5 + 0.25 + 0 = 1.75; EffectiveCost 1.2 + 0.25 + 0.4 = 1.85.
    let csv = format!(
        "{AWS_12_HEADER}\n\
         1.5,111122223333,Main,Billing Account,USD,2025-04-01T00:00:00.000Z,2025-03-01T00:00:00.000Z,Usage,,EC2 hours,2025-03-02T01:00:00.000Z,2025-03-02T00:00:00.000Z,3,Hrs,1.5,1.2,\"Amazon Web Services, Inc.\",1.5,3,Hrs,AWS,\"Amazon Web Services, Inc.\",i-1,Compute,Amazon Elastic Compute Cloud,SKU1,444455556666,dev,\"{{\"\"user:tenant\"\":\"\"acme\"\",\"\"service\"\":\"\"api\"\"}}\",\"{{\"\"SavingsPlan\"\":-0.3}}\",RunInstances,AmazonEC2\n\
         0.25,111122223333,Main,Billing Account,USD,2025-04-01T00:00:00.000Z,2025-03-01T00:00:00.000Z,Usage,,S3 storage,2025-03-02T01:00:00.000Z,2025-03-02T00:00:00.000Z,10,GB-Mo,0.25,0.25,\"Amazon Web Services, Inc.\",0.25,10,GB-Mo,AWS,\"Amazon Web Services, Inc.\",bucket-1,Storage,Amazon Simple Storage Service,SKU2,444455556666,dev,,,PutObject,AmazonS3\n\
         0,111122223333,Main,Billing Account,USD,2025-04-01T00:00:00.000Z,2025-03-01T00:00:00.000Z,Usage,,SP covered,2025-03-02T01:00:00.000Z,2025-03-02T00:00:00.000Z,1,Hrs,0.5,0.4,\"Amazon Web Services, Inc.\",0.5,1,Hrs,AWS,\"Amazon Web Services, Inc.\",i-2,Compute,Amazon Elastic Compute Cloud,SKU1,444455556666,dev,,,RunInstances,AmazonEC2\n"
    );
    std::fs::write(data.join("focus-00001.csv.gz"), gzip(csv.as_bytes())).unwrap();
    let meta = dir.path().join("metadata/BILLING_PERIOD=2025-03");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("focus-export-Manifest.json"),
        r#"{"dataFiles":["s3://bucket/prefix/focus-export/data/BILLING_PERIOD=2025-03/focus-00001.csv.gz"],"billingPeriod":{"start":"2025-03-01","end":"2025-04-01"}}"#,
    )
    .unwrap();
    ok(import(&server, &[dir.path()]));
    let t = ledger_totals(&server);
    assert_eq!(t["AWS"], (d("1.75"), d("1.85")));
    let r = server.sql("SELECT x_Extra AS x, Tags AS t FROM costplane_ledger WHERE ResourceId = 'i-1'");
    let extra: serde_json::Value = serde_json::from_str(r[0]["x"].as_str().unwrap()).unwrap();
    assert_eq!(extra["x_Operation"], "RunInstances");
    assert_eq!(extra["x_ServiceCode"], "AmazonEC2");
    assert_eq!(extra["x_Discounts"], r#"{"SavingsPlan":-0.3}"#);
    assert!(r[0]["t"].as_str().unwrap().contains("user:tenant"));
    // Re-delivered: the same period again replaces it.
    ok(import(&server, &[dir.path()]));
    assert_eq!(server.count("costplane_ledger WHERE x_Source = 'cloud'"), 3);
}

#[test]
fn azure_10r2_and_malformed_files() {
    // The Azure bill is in EUR; the ledger in USD at 1.1 USD per EUR.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("costplane.toml");
    std::fs::write(&config, "[billing.exchange_rates]\nEUR = \"1.1\"\n").unwrap();
    let server = ServerProcess::start(&["--config", config.to_str().unwrap()]);
    let header = "BilledCost,BillingAccountId,BillingAccountName,BillingAccountType,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,\
ChargeCategory,ChargeClass,ChargePeriodEnd,ChargePeriodStart,ContractedCost,EffectiveCost,ListCost,ProviderName,PublisherName,\
ResourceId,ServiceName,SubAccountId,Tags,x_BilledCostInUsd,x_ResourceGroupName,x_SkuMeterCategory";
    // 1.0r2 dates carry seconds. Row 2 is MCA reservation usage with
    // ContractedCost 0 and ListCost 0: both taken as its EffectiveCost 2.
    // BilledCost 3 + 0 = 3 EUR = 3.3 USD; EffectiveCost 3 + 2 = 5 EUR = 5.5 USD.
    let azure = format!(
        "{header}\n\
         3,/providers/Microsoft.Billing/billingAccounts/ABC,Contoso,Billing Profile,EUR,2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,Usage,,2025-03-03T00:00:00Z,2025-03-02T00:00:00Z,3,3,3.5,Microsoft,Microsoft,/subscriptions/s/vm1,Virtual Machines,sub-1,\"{{\"\"tenant\"\":\"\"acme\"\"}}\",3.3,rg-1,Compute\n\
         0,/providers/Microsoft.Billing/billingAccounts/ABC,Contoso,Billing Profile,EUR,2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,Usage,,2025-03-03T00:00:00Z,2025-03-02T00:00:00Z,0,2,0,Microsoft,Microsoft,/subscriptions/s/vm2,Virtual Machines,sub-1,,0,rg-1,Compute\n"
    );
    let f = dir.path().join("part_0_0001.csv");
    std::fs::write(&f, &azure).unwrap();
    let out = ok(import(&server, &[&f]));
    assert!(out.contains("Microsoft: BilledCost 3.3 · EffectiveCost 5.5"), "{out}");
    assert_eq!(ledger_totals(&server)["Microsoft"], (d("3.3"), d("5.5")));
    let r = server.sql(
        "SELECT CAST(ContractedCost AS VARCHAR) AS c, CAST(ListCost AS VARCHAR) AS l, BillingCurrency AS cur, x_Extra AS x \
         FROM costplane_ledger WHERE ResourceId = '/subscriptions/s/vm2'",
    );
    // 2 EUR × 1.1 = 2.2 USD each.
    assert_eq!((d(r[0]["c"].as_str().unwrap()), d(r[0]["l"].as_str().unwrap())), (d("2.2"), d("2.2")));
    assert_eq!(r[0]["cur"], "USD");
    assert!(r[0]["x"].as_str().unwrap().contains("\"x_OriginalCurrency\":\"EUR\""), "{:?}", r[0]);
    // A bill in a currency without a rate is refused whole, naming the fix.
    let gbp = dir.path().join("gbp.csv");
    std::fs::write(&gbp, azure.replace(",EUR,", ",GBP,").replace("billingAccounts/ABC", "billingAccounts/GB")).unwrap();
    let refused = import(&server, &[&gbp]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("the bill is in GBP") && err.contains("[billing.exchange_rates]"), "{err}");
    // The same period with the account id in another casing replaces it.
    std::fs::write(&f, azure.replace("billingAccounts/ABC", "billingAccounts/abc")).unwrap();
    ok(import(&server, &[&f]));
    assert_eq!(server.count("costplane_ledger WHERE x_Source = 'cloud'"), 2);
    // The untagged report lists the row without a tenant tag.
    let u: serde_json::Value = reqwest::blocking::get(format!("http://{}/api/v1/costs/untagged?from=2025-03-01&to=2025-04-01", server.api))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(u["rows"].as_array().unwrap().len(), 1, "{u}");

    // Malformed: an unparsable decimal in data row 2 (header excluded);
    // nothing of the file (its first row is fine) is imported.
    let bad = dir.path().join("bad.csv");
    let mut text = azure.replace("Contoso", "Other").replace("billingAccounts/ABC", "billingAccounts/XYZ");
    text = text.replacen("\n0,/providers", "\n0.0.1,/providers", 1);
    std::fs::write(&bad, text).unwrap();
    let out = import(&server, &[&bad]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv: row 2, column BilledCost"), "{err}");
    // A missing mandatory column is named too.
    let nocol = dir.path().join("nocol.csv");
    std::fs::write(&nocol, azure.replace("EffectiveCost", "Effective")).unwrap();
    let err = String::from_utf8_lossy(&import(&server, &[&nocol]).stderr).into_owned();
    assert!(err.contains("missing mandatory column EffectiveCost"), "{err}");
    assert_eq!(server.count("costplane_ledger WHERE x_Source = 'cloud'"), 2);
    // The API refuses the same bad file with 400 and the same message.
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{}/api/v1/import/focus?file=bad.csv", server.api))
        .header("content-type", "text/csv")
        .body(std::fs::read(&bad).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("row 2, column BilledCost"));
}

/// The same sample as a Parquet export (decimal costs, timestamps, snappy,
/// as AWS and Azure write them) imports the same totals; importing the CSV
/// afterwards replaces it rather than adding to it.
#[test]
fn the_sample_as_parquet_imports_the_same_totals() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("focus_sample.parquet");
    let conn = duckdb::Connection::open_in_memory().unwrap();
    // The paths are the test's own, not user input.
    conn.execute_batch(&format!(
        "COPY (SELECT * REPLACE (CAST(BilledCost AS DECIMAL(38, 12)) AS BilledCost, \
         CAST(EffectiveCost AS DECIMAL(38, 12)) AS EffectiveCost, \
         CAST(ChargePeriodStart AS TIMESTAMP) AS ChargePeriodStart, CAST(ChargePeriodEnd AS TIMESTAMP) AS ChargePeriodEnd) \
         FROM read_csv('{}', all_varchar = true, nullstr = 'NULL', header = true)) TO '{}' (FORMAT parquet, COMPRESSION snappy)",
        sample().display(),
        parquet.display()
    ))
    .unwrap();
    let server = ServerProcess::start(&[]);
    let out = ok(import(&server, &[&parquet]));
    assert!(out.contains("imported 1000 rows"), "{out}");
    let expected = sample_totals();
    assert_eq!(ledger_totals(&server), expected);
    ok(import(&server, &[&sample()]));
    assert_eq!(ledger_totals(&server), expected, "the CSV of the same bill replaces the Parquet import");
}

/// Per column value, the count of rows of a FOCUS CSV file (DuckDB's reader,
/// every cell as text, NULL as null), and Σ of each cost column.
fn file_profile(path: &Path, null: &str) -> (BTreeMap<String, u64>, BTreeMap<String, Decimal>) {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let file = path.to_str().unwrap().replace('\'', "''");
    let read = format!("read_csv('{file}', all_varchar = true, nullstr = '{null}', header = true)");
    let mut counts = BTreeMap::new();
    for column in ["ChargeCategory", "ChargeFrequency", "PricingCategory", "BillingPeriodStart"] {
        // Billing periods compared by their date ("2024-09-01 00:00:00" in
        // the sample, RFC 3339 in the export); an empty cell is a null.
        let value = if column == "BillingPeriodStart" { format!("left({column}, 10)") } else { column.to_owned() };
        let sql = format!("SELECT coalesce(nullif({value}, ''), '(null)'), count(*) FROM {read} GROUP BY 1");
        let mut stmt = conn.prepare(&sql).unwrap();
        for (value, n) in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap().map(|r| r.unwrap()) {
            // FOCUS values compared case-insensitively ("Usage-based").
            *counts.entry(format!("{column}={}", value.to_ascii_lowercase())).or_insert(0) += n as u64;
        }
    }
    let mut sums = BTreeMap::new();
    for column in ["BilledCost", "EffectiveCost", "ListCost", "ContractedCost"] {
        let s: String = conn
            .query_row(&format!("SELECT CAST(sum(CAST({column} AS DECIMAL(38, 12))) AS VARCHAR) FROM {read}"), [], |r| r.get(0))
            .unwrap();
        sums.insert(column.to_owned(), d(&s));
    }
    (counts, sums)
}

#[test]
fn imported_rows_export_as_they_came() {
    let server = ServerProcess::start(&[]);
    ok(import(&server, &[&sample()]));
    // Every row of the sample is charged in September 2024.
    let body =
        reqwest::blocking::get(format!("http://{}/api/costs/export?month=2024-09&format=focus", server.api)).unwrap().text().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("export.csv");
    std::fs::write(&exported, &body).unwrap();
    let (file_counts, file_sums) = file_profile(&sample(), "NULL");
    let (export_counts, export_sums) = file_profile(&exported, "");
    // The four cost columns sum as in the bill (EffectiveCost 14.97..., not
    // the BilledCost 20.52... it was once overwritten with), and the
    // categories, frequencies (Adjustment and Credit rows, a One-Time row),
    // pricing categories and billing periods come back as they were.
    assert_eq!(export_sums, file_sums);
    assert_eq!(export_counts, file_counts);
    assert!(file_counts.contains_key("ChargeCategory=credit") && file_counts.contains_key("ChargeCategory=adjustment"), "{file_counts:?}");
}

#[test]
fn a_bill_split_into_files_imports_whole() {
    let server = ServerProcess::start(&[]);
    // The sample's 1,000 rows as two files of the same accounts and period:
    // each file alone would replace the other's hours.
    let text = std::fs::read_to_string(sample()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("part-1.csv"), dir.path().join("part-2.csv"));
    std::fs::write(&a, format!("{header}\n{}\n", rows[..rows.len() / 2].join("\n"))).unwrap();
    std::fs::write(&b, format!("{header}\n{}\n", rows[rows.len() / 2..].join("\n"))).unwrap();
    let out = ok(import(&server, &[&a, &b]));
    assert!(out.contains("imported 1000 rows from 2 file(s)"), "{out}");
    // The ledger holds the whole bill (DuckDB's reader over the sample).
    assert_eq!(ledger_totals(&server), sample_totals());
    assert_eq!(server.count("costplane_ledger WHERE x_Source = 'cloud'"), 1000);
    // Again, the same two files: replaced, not added.
    ok(import(&server, &[&a, &b]));
    assert_eq!(ledger_totals(&server), sample_totals());
}

#[test]
fn an_export_directory_imports_every_manifests_period() {
    let server = ServerProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Two billing periods, each with its manifest and a data file of the
    // same name (as AWS Data Exports write them).
    // March: BilledCost 1.5; April: 2.25. Σ 3.75.
    for (period, next, cost) in [("2025-03", "2025-04", "1.5"), ("2025-04", "2025-05", "2.25")] {
        let data = dir.path().join(format!("data/BILLING_PERIOD={period}"));
        std::fs::create_dir_all(&data).unwrap();
        let csv = format!(
            "{AWS_12_HEADER}\n\
             {cost},111122223333,Main,Billing Account,USD,{next}-01T00:00:00.000Z,{period}-01T00:00:00.000Z,Usage,,EC2 hours,{period}-02T01:00:00.000Z,{period}-02T00:00:00.000Z,3,Hrs,{cost},{cost},\"Amazon Web Services, Inc.\",{cost},3,Hrs,AWS,\"Amazon Web Services, Inc.\",i-1,Compute,Amazon Elastic Compute Cloud,SKU1,444455556666,dev,,,RunInstances,AmazonEC2\n"
        );
        std::fs::write(data.join("focus-00001.csv.gz"), gzip(csv.as_bytes())).unwrap();
        let meta = dir.path().join(format!("metadata/BILLING_PERIOD={period}"));
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("focus-export-Manifest.json"),
            format!(r#"{{"dataFiles":["s3://bucket/prefix/focus-export/data/BILLING_PERIOD={period}/focus-00001.csv.gz"]}}"#),
        )
        .unwrap();
    }
    ok(import(&server, &[dir.path()]));
    assert_eq!(ledger_totals(&server)["AWS"], (d("3.75"), d("3.75")));
    assert_eq!(server.count("costplane_ledger WHERE x_Source = 'cloud'"), 2);
}

/// A file that fails inside an import session (through the API, where no
/// CLI checked it first) after thousands of its rows were written drops the
/// session and deletes every row the session wrote: the ledger holds none,
/// visible or not, and the session can no longer be committed.
#[test]
fn a_file_failing_in_a_session_drops_it_and_leaves_no_row() {
    let server = ServerProcess::start(&[]);
    let api = format!("http://{}/api/v1/import/focus", server.api);
    let http = reqwest::blocking::Client::new();
    let line = |cost: &str| {
        format!(
            "{cost},111122223333,Main,Billing Account,USD,2025-04-01T00:00:00.000Z,2025-03-01T00:00:00.000Z,Usage,,EC2 hours,2025-03-02T01:00:00.000Z,2025-03-02T00:00:00.000Z,3,Hrs,{cost},{cost},\"Amazon Web Services, Inc.\",{cost},3,Hrs,AWS,\"Amazon Web Services, Inc.\",i-1,Compute,Amazon Elastic Compute Cloud,SKU1,444455556666,dev,,,RunInstances,AmazonEC2\n"
        )
    };
    let json = |url: String| http.post(url).header("content-type", "application/json").body("{}");
    let session: serde_json::Value = json(format!("{api}/sessions")).send().unwrap().json().unwrap();
    let id = session["session"].as_str().unwrap().to_owned();
    let good = format!("{AWS_12_HEADER}\n{}", line("1.5"));
    let csv = |file: &str, body: String| {
        http.post(&api).query(&[("session", id.as_str()), ("file", file)]).header("content-type", "text/csv").body(body).send().unwrap()
    };
    let resp = csv("good.csv", good);
    assert_eq!(resp.status(), 200, "{}", resp.text().unwrap());
    // 5,000 good rows (written in chunks as they parse), then a bad cell.
    let mut bad = format!("{AWS_12_HEADER}\n");
    (0..5000).for_each(|_| bad.push_str(&line("0.25")));
    bad.push_str(&line("not-a-number"));
    let resp = csv("bad.csv", bad);
    assert_eq!(resp.status(), 400);
    let error = resp.text().unwrap();
    assert!(error.contains("bad.csv: row 5001, column BilledCost") && error.contains("session was dropped"), "{error}");
    let resp = json(format!("{api}/sessions/{id}/commit")).send().unwrap();
    assert_eq!(resp.status(), 404, "a dropped session cannot be committed");
    assert_eq!(server.count("costplane_ledger"), 0, "no row of the session stays, visible or not");
}
