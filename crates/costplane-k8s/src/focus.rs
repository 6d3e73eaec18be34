//! FOCUS bill files (AWS Data Exports, Azure `FocusCost`, GCP's FOCUS view
//! output, any conformant file) into ledger rows with `x_Source = cloud`.
//!
//! - Formats: CSV, gzip CSV (`.gz`, or gzip magic bytes) and Parquet
//!   (`PAR1` magic bytes; read as text cells by `focus_parquet`, then
//!   checked by the same parser).
//! - A directory is read through its manifests (every one under it: an
//!   export holds one per billing period): AWS `*Manifest.json`
//!   (`dataFiles`) or Azure `manifest.json` (`blobs[].blobName`), the listed
//!   files found by name under the directory; without a manifest, every
//!   `.csv` / `.csv.gz` / `.parquet` under it. gzip files may inflate to
//!   [`MAX_INFLATED_BYTES`] at most.
//! - Streaming: [`parse_file`] reads a file a record at a time (CSV, gzip
//!   as it inflates, Parquet a record batch at a time) and hands each row to
//!   the caller's sink, so a bill of millions of rows never sits in memory;
//!   the caller stages the rows and switches to them only once every file
//!   parsed. The first bad cell stops the parse and names the file, the data
//!   row (1-based, header excluded) and the column.
//! - Nulls: `NULL` and empty cells.
//! - CSV is read by the `csv` crate a record at a time, from the file or
//!   from the gzip stream as it inflates.
//! - Normalised quirks: GCP's lower-case enum values (`usage` → `Usage`,
//!   `correction` → `Correction`), date-only billing periods (GCP's view
//!   ends them on the last day: date-only ends become the next day), Tags
//!   given as an array of `{key, value}` structs (GCP) become a JSON object;
//!   Azure billing account ids are compared case-insensitively; an Azure
//!   ContractedCost / ListCost of 0 on a row with EffectiveCost ≠ 0 is
//!   taken as EffectiveCost (as the FinOps toolkit's hubs do).
//! - Idempotence: every row carries `x_ImportKey` = provider | billing
//!   account | billing period month, and belongs to the ledger scope
//!   `cloud:<provider>:<account>` ([`scope_of`]). The caller writes each
//!   (charge hour, scope) as a new revision and empties the hours of the
//!   file's billing periods ([`Import::periods`]) that the file no longer
//!   has: a re-import replaces, never adds.
//! - Provider `x_` columns, and every FOCUS column of [`KEPT_COLUMNS`]
//!   that the ledger has no column of its own for (billing account and
//!   period, sub-account, charge description and frequency, pricing
//!   category, unit prices, SKU price, meter and price details, commitment
//!   discounts, region), are
//!   kept as a JSON object in `x_Extra`, so the FOCUS export writes an
//!   imported row as it came. Billing periods are kept normalised
//!   (`YYYY-MM-DDTHH:MM:SSZ`, ends exclusive); other cells as written.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use costplane_telemetry::usage::{ChargeClass, ChargeStatus, LedgerExt, LedgerRow, PricingStatus, Source, UsageType, MONEY_SCALE};
use rust_decimal::Decimal;

use crate::K8sError;

pub const SOURCE: Source = Source::Cloud;

/// FOCUS columns kept in `x_Extra` as the file gives them (see the module
/// header); the billing period is added normalised.
pub const KEPT_COLUMNS: [&str; 24] = [
    "BillingAccountId",
    "BillingAccountName",
    "SubAccountId",
    "SubAccountName",
    "RegionId",
    "RegionName",
    "AvailabilityZone",
    "ChargeDescription",
    "ChargeFrequency",
    "ServiceSubcategory",
    "ResourceType",
    "SkuPriceId",
    // SKU meter and price details: what an AI line's model and token kind
    // are read from (FOCUS's AI model identity, `costplane_invoice::focus_ai`).
    "SkuMeter",
    "SkuPriceDetails",
    "PricingCategory",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountUnit",
];

/// Columns without which a file is refused.
pub const MANDATORY: [&str; 6] =
    ["BilledCost", "EffectiveCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart"];

/// Which tags name the tenant and the service of a bill line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    pub tenant_tag: String,
    pub service_tag: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { tenant_tag: "tenant".into(), service_tag: "service".into() }
    }
}

/// What a parse covers, without its rows (they go to the caller's sink as
/// they are read): enough to replace the billing periods afterwards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Rows given to the sink.
    pub rows: u64,
    /// The (provider, account, period) keys the rows replace.
    pub keys: BTreeSet<String>,
    /// (scope, billing period start, end) of every key: the hours an import
    /// replaces.
    pub periods: BTreeSet<(String, i64, i64)>,
    pub files: Vec<String>,
}

impl Summary {
    /// Adds another file's: the files of one bill (an export split into
    /// parts, several months) import as one replacement.
    pub fn merge(&mut self, other: Summary) {
        self.rows += other.rows;
        self.keys.extend(other.keys);
        self.periods.extend(other.periods);
        self.files.extend(other.files);
    }
}

/// Σ BilledCost and Σ EffectiveCost per provider, added a row at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals(pub BTreeMap<String, (Decimal, Decimal)>);

impl Totals {
    pub fn add(&mut self, r: &LedgerRow) {
        let e = self.0.entry(r.provider_name.clone()).or_default();
        e.0 += r.cost;
        e.1 += r.ext.effective_cost.unwrap_or(r.cost);
    }
}

/// The parsed content of one import, rows held (small files and tests;
/// files of any size are read through [`parse_file`] into a sink).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Import {
    pub rows: Vec<LedgerRow>,
    /// The (provider, account, period) keys the rows replace.
    pub keys: BTreeSet<String>,
    /// (scope, billing period start, end) of every key.
    pub periods: BTreeSet<(String, i64, i64)>,
    pub files: Vec<String>,
}

impl Import {
    /// Σ BilledCost and Σ EffectiveCost per provider.
    pub fn totals(&self) -> BTreeMap<String, (Decimal, Decimal)> {
        let mut t = Totals::default();
        self.rows.iter().for_each(|r| t.add(r));
        t.0
    }
}

/// Where parsed rows go, one at a time; an error stops the parse.
pub type RowSink<'a> = dyn FnMut(LedgerRow) -> Result<(), K8sError> + 'a;

/// The ledger scope of one provider's billing account: its revisions never
/// touch another account's rows, nor costplane's own.
pub fn scope_of(provider: &str, account: &str) -> String {
    format!("{}{}:{}", costplane_telemetry::usage::scope::CLOUD_PREFIX, provider.to_ascii_lowercase(), account)
}

/// The start of the month after the one `ns` falls in (UTC).
fn next_month(ns: i64) -> i64 {
    use chrono::Datelike;
    let d = DateTime::from_timestamp_nanos(ns).date_naive();
    let (y, m) = if d.month() == 12 { (d.year() + 1, 1) } else { (d.year(), d.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).and_then(|n| n.and_hms_opt(0, 0, 0)).and_then(|n| n.and_utc().timestamp_nanos_opt()).unwrap_or(ns)
}

/// The files `paths` stand for (directories through their manifest).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, K8sError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(directory_files(p)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn read_err(file: &Path, message: impl ToString) -> K8sError {
    K8sError::Read { file: file.display().to_string(), message: message.to_string() }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), K8sError> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn directory_files(dir: &Path) -> Result<Vec<PathBuf>, K8sError> {
    let mut all = Vec::new();
    walk(dir, &mut all)?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let manifests: Vec<&PathBuf> = all.iter().filter(|p| name(p).to_ascii_lowercase().ends_with("manifest.json")).collect();
    if manifests.is_empty() {
        let data: Vec<PathBuf> = all
            .into_iter()
            .filter(|p| {
                let n = name(p).to_ascii_lowercase();
                n.ends_with(".csv") || n.ends_with(".csv.gz") || n.ends_with(".parquet")
            })
            .collect();
        return match data.is_empty() {
            true => Err(read_err(dir, "no manifest and no .csv / .csv.gz / .parquet files")),
            false => Ok(data),
        };
    }
    // Every manifest: an export directory holds one per billing period.
    let mut out: Vec<PathBuf> = Vec::new();
    for manifest in manifests {
        for f in manifest_files(manifest, &all)? {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// The data files one manifest lists, found by name among `all`.
fn manifest_files(manifest: &Path, all: &[PathBuf]) -> Result<Vec<PathBuf>, K8sError> {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = std::fs::read_to_string(manifest).map_err(|e| read_err(manifest, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| read_err(manifest, format!("not JSON: {e}")))?;
    let listed: Vec<String> = match (json.get("dataFiles"), json.get("blobs")) {
        (Some(files), _) => files.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        (None, Some(blobs)) => {
            blobs.as_array().into_iter().flatten().filter_map(|b| b.get("blobName").and_then(|v| v.as_str()).map(str::to_owned)).collect()
        }
        _ => return Err(read_err(manifest, "lists neither dataFiles (AWS) nor blobs (Azure)")),
    };
    listed
        .iter()
        .map(|l| {
            // The file whose path ends in the most of the listed path's
            // components: billing periods repeat file names
            // (`BILLING_PERIOD=2025-03/focus-00001.csv.gz`).
            let wanted: Vec<&str> = l.rsplit('/').collect();
            let shared = |p: &Path| {
                let mine: Vec<String> = p.components().rev().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                mine.iter().zip(&wanted).take_while(|(a, b)| a == *b).count()
            };
            all.iter()
                .filter(|p| Some(name(p).as_str()) == wanted.first().copied())
                .max_by_key(|p| shared(p))
                .cloned()
                .ok_or_else(|| read_err(manifest, format!("lists {l}, not found under the directory")))
        })
        .collect()
}

/// The most a gzip file may inflate to (a file of more is refused, not read on).
pub const MAX_INFLATED_BYTES: u64 = 2 << 30;

/// Reads and parses every file, a record at a time, into `sink`; the
/// first bad cell stops it (rows already given to the sink are the
/// caller's to drop). `progress` is told each file's size as it starts.
pub fn read_files(
    files: &[PathBuf],
    options: &ImportOptions,
    mut progress: impl FnMut(u64),
    sink: &mut RowSink<'_>,
) -> Result<Summary, K8sError> {
    let mut summary = Summary::default();
    for f in files {
        progress(std::fs::metadata(f).map_err(|e| read_err(f, e))?.len());
        summary.merge(parse_file(&f.display().to_string(), f, options, sink)?);
    }
    Ok(summary)
}

/// Parses one file (Parquet, gzip or plain CSV, told by its first bytes)
/// named `label` in errors, streaming its rows into `sink`: neither the
/// file, its inflated text nor its rows are held whole.
pub fn parse_file(label: &str, path: &Path, options: &ImportOptions, sink: &mut RowSink<'_>) -> Result<Summary, K8sError> {
    use std::io::{BufRead, BufReader};
    let open = || std::fs::File::open(path).map_err(|e| read_err(Path::new(label), e));
    let mut input = BufReader::with_capacity(1 << 16, open()?);
    let head = input.fill_buf().map_err(|e| read_err(Path::new(label), e))?;
    if head.starts_with(b"PAR1") {
        let (header, rows) = crate::focus_parquet::records(label, open()?)?;
        return parse_rows(label, header, rows, options, sink);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        let inflated = Capped { inner: flate2::read::MultiGzDecoder::new(input), left: MAX_INFLATED_BYTES };
        parse_csv(label, inflated, options, sink)
    } else {
        parse_csv(label, input, options, sink)
    }
}

/// Parses one file's bytes (Parquet, gzip or plain CSV) named `file` in
/// errors, its rows held in the answer.
pub fn parse_bytes(file: &str, bytes: &[u8], options: &ImportOptions) -> Result<Import, K8sError> {
    let mut rows = Vec::new();
    let mut sink = |r: LedgerRow| {
        rows.push(r);
        Ok(())
    };
    let summary = if bytes.starts_with(b"PAR1") {
        let (header, recs) = crate::focus_parquet::records(file, bytes::Bytes::copy_from_slice(bytes))?;
        parse_rows(file, header, recs, options, &mut sink)?
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        let inflated = Capped { inner: flate2::read::MultiGzDecoder::new(bytes), left: MAX_INFLATED_BYTES };
        parse_csv(file, inflated, options, &mut sink)?
    } else {
        parse_csv(file, bytes, options, &mut sink)?
    };
    Ok(Import { rows, keys: summary.keys, periods: summary.periods, files: summary.files })
}

/// A reader that fails once it has given more than `left` bytes: the cap
/// on what a gzip file may inflate to.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other(format!(
                "the file inflates to more than {} GiB; split the export into smaller files",
                MAX_INFLATED_BYTES >> 30
            ))
        })?;
        Ok(n)
    }
}

use crate::focus_parquet::Cell;

/// A CSV cell: empty and `NULL` are null.
fn cell(v: &str) -> Cell {
    (!v.is_empty() && v != "NULL").then(|| v.to_owned())
}

/// A FOCUS date-time as ns since the epoch (UTC). Date-only values are
/// midnight; `end` date-only values are the next midnight (GCP's inclusive
/// last day).
fn parse_time(s: &str, end: bool) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    let bare = s.trim_end_matches('Z');
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(bare, f) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    let day = NaiveDate::parse_from_str(bare, "%Y-%m-%d").ok()?;
    let day = if end { day.succ_opt()? } else { day };
    day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    let s = s.trim();
    Decimal::from_str(s).ok().or_else(|| Decimal::from_scientific(s).ok())
}

/// FOCUS enum spelling (GCP's view writes them lower case).
fn enum_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) if f.is_ascii_lowercase() => f.to_ascii_uppercase().to_string() + c.as_str(),
        _ => s.to_owned(),
    }
}

/// Tags as a flat JSON object: a JSON object as is, an array of
/// `{key, value}` structs (GCP) folded into one.
fn tags_object(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(serde_json::Value::Array(items)) => Ok(items
            .iter()
            .filter_map(|i| {
                let k = i.get("key")?.as_str()?.to_owned();
                Some((k, i.get("value").cloned().unwrap_or(serde_json::Value::Bool(true))))
            })
            .collect()),
        Ok(_) => Err("is not a JSON object".into()),
        Err(e) => Err(format!("is not JSON: {e}")),
    }
}

/// RFC 4180 records read by the `csv` crate (quotes, doubled quotes,
/// line breaks inside quotes; a byte-order mark before the header is
/// dropped).
fn parse_csv(file: &str, input: impl Read, options: &ImportOptions, sink: &mut RowSink<'_>) -> Result<Summary, K8sError> {
    let read_err = |e: csv::Error| K8sError::Read {
        file: file.into(),
        message: match e.kind() {
            csv::ErrorKind::Utf8 { .. } => format!("not UTF-8 text ({e})"),
            _ => format!("CSV: {e}"),
        },
    };
    let mut recs = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input).into_records();
    let header: Vec<String> = recs
        .next()
        .ok_or_else(|| K8sError::Read { file: file.into(), message: "empty file".into() })?
        .map_err(read_err)?
        .iter()
        .enumerate()
        .map(|(i, h)| if i == 0 { h.trim_start_matches('\u{feff}') } else { h }.trim().to_owned())
        .collect();
    parse_rows(file, header, recs.map(|r| r.map(|rec| rec.iter().map(cell).collect()).map_err(read_err)), options, sink)
}

/// Checks and converts the data rows under `header`, whatever format they
/// were read from.
fn parse_rows(
    file: &str,
    header: Vec<String>,
    recs: impl Iterator<Item = Result<Vec<Cell>, K8sError>>,
    options: &ImportOptions,
    sink: &mut RowSink<'_>,
) -> Result<Summary, K8sError> {
    let col = |name: &str| header.iter().position(|h| h == name);
    for m in MANDATORY.iter().chain(["ProviderName"].iter()) {
        if col(m).is_none() && !(*m == "ProviderName" && col("ServiceProviderName").is_some()) {
            return Err(K8sError::MissingColumn { file: file.into(), column: (*m).into() });
        }
    }
    let provider_col = col("ProviderName").or_else(|| col("ServiceProviderName")).expect("checked above");
    let x_cols: Vec<usize> = (0..header.len()).filter(|&i| header[i].starts_with("x_")).collect();
    let mut out = Summary { files: vec![file.to_owned()], ..Summary::default() };
    for (i, rec) in recs.enumerate() {
        let rec = rec?;
        let row = i + 1;
        if rec.len() == 1 && rec[0].is_none() {
            continue; // a blank line
        }
        let cell_err = |column: &str, message: String| K8sError::Cell { file: file.into(), row, column: column.into(), message };
        if rec.len() != header.len() {
            return Err(cell_err("*", format!("{} cells, the header has {}", rec.len(), header.len())));
        }
        let get = |name: &str| col(name).and_then(|c| rec[c].as_deref());
        let text = |name: &str| get(name).unwrap_or("").to_owned();
        let money = |name: &str, required: bool| -> Result<Option<Decimal>, K8sError> {
            match get(name) {
                None if required => Err(cell_err(name, "is null".into())),
                None => Ok(None),
                Some(v) => parse_decimal(v)
                    .map(|d| Some(d.round_dp(MONEY_SCALE)))
                    .ok_or_else(|| cell_err(name, format!("{v:?} is not a decimal number"))),
            }
        };
        let time = |name: &str, end: bool| -> Result<i64, K8sError> {
            let v = get(name).ok_or_else(|| cell_err(name, "is null".into()))?;
            parse_time(v, end).ok_or_else(|| cell_err(name, format!("{v:?} is not a date-time")))
        };
        let billed = money("BilledCost", true)?.unwrap_or_default();
        let effective = money("EffectiveCost", true)?.unwrap_or_default();
        let mut list = money("ListCost", false)?;
        let mut contracted = money("ContractedCost", false)?;
        let consumed = money("ConsumedQuantity", false)?.unwrap_or_default();
        let pricing = money("PricingQuantity", false)?.unwrap_or_default();
        let start = time("ChargePeriodStart", false)?;
        let end = time("ChargePeriodEnd", true)?;
        let period = time("BillingPeriodStart", false)?;
        if end < start {
            return Err(cell_err("ChargePeriodEnd", "is before ChargePeriodStart".into()));
        }
        let provider = rec[provider_col].clone().unwrap_or_default();
        let azure = provider.to_ascii_lowercase().contains("microsoft");
        if azure && !effective.is_zero() {
            for c in [&mut contracted, &mut list] {
                if c.is_none_or(|v| v.is_zero()) {
                    *c = Some(effective);
                }
            }
        }
        let tags = match get("Tags") {
            None => serde_json::Map::new(),
            Some(t) => tags_object(t).map_err(|m| cell_err("Tags", m))?,
        };
        let tag = |k: &str| tags.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
        let account = text("BillingAccountId");
        let account_key = if azure { account.to_ascii_lowercase() } else { account.clone() };
        let month = DateTime::from_timestamp_nanos(period).format("%Y-%m").to_string();
        let key = format!("{}|{}|{}", provider.to_ascii_lowercase(), account_key, month);
        let mut extra = serde_json::Map::new();
        for name in KEPT_COLUMNS {
            if let Some(v) = get(name) {
                extra.insert(name.into(), v.into());
            }
        }
        for &c in &x_cols {
            if let Some(v) = rec[c].as_deref() {
                extra.insert(header[c].clone(), v.into());
            }
        }
        let category = enum_case(get("ChargeCategory").unwrap_or("Usage"));
        // FOCUS allows one ChargeClass, `Correction`; anything else is not
        // a FOCUS file's, and guessing what it meant would misstate the bill.
        let charge_class = match get("ChargeClass").map(enum_case) {
            None => None,
            Some(c) => Some(ChargeClass::parse(&c).map_err(|e| cell_err("ChargeClass", e.to_string()))?),
        };
        let sub_account = get("SubAccountName").or(get("SubAccountId")).unwrap_or("unassigned").to_owned();
        out.keys.insert(key.clone());
        let scope = scope_of(&provider, &account_key);
        let period_end = match get("BillingPeriodEnd") {
            Some(_) => time("BillingPeriodEnd", true)?,
            None => next_month(period),
        };
        let iso = |ns: i64| DateTime::from_timestamp_nanos(ns).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        extra.insert("BillingPeriodStart".into(), iso(period).into());
        extra.insert("BillingPeriodEnd".into(), iso(period_end.max(period)).into());
        out.periods.insert((scope, period, period_end.max(period)));
        let focus_version = format!("focus:{}", get("FocusVersion").or(get("x_FocusVersion")).unwrap_or("1.x"));
        out.rows += 1;
        sink(
            LedgerRow::builder(SOURCE, start, end)
                .cost(billed, text("BillingCurrency"))
                .charge_class(charge_class)
                .service(text("ServiceName"), text("ServiceCategory"))
                .provider(provider.clone())
                .publisher(text("PublisherName"))
                .resource(text("ResourceId"), text("ResourceName"))
                .consumed(consumed, text("ConsumedUnit"))
                .pricing(pricing, text("PricingUnit"))
                .sku(text("SkuId"))
                .tags(serde_json::Value::Object(tags.clone()).to_string())
                .owner(
                    tag(&options.tenant_tag).unwrap_or_else(|| "unassigned".into()),
                    sub_account,
                    tag(&options.service_tag).unwrap_or_else(|| "unassigned".into()),
                )
                .operation(category.clone())
                .usage_type(UsageType::ChargeCategory(category.clone()))
                .priced(PricingStatus::Provided, focus_version)
                .charge_status(ChargeStatus::Closed)
                .ext(LedgerExt {
                    effective_cost: Some(effective),
                    list_cost: Some(list.unwrap_or(effective)),
                    contracted_cost: Some(contracted.unwrap_or(effective)),
                    charge_category: Some(category),
                    invoice_issuer: Some(get("InvoiceIssuerName").unwrap_or(&provider).to_owned()),
                    import_key: key,
                    extra: serde_json::Value::Object(extra).to_string(),
                    ..LedgerExt::default()
                })
                .build(),
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn csv_quotes_nulls_and_newlines() {
        let text = "a,b,c\n\"x,\"\"y\"\"\",NULL,\n\"multi\nline\",,3";
        let r: Vec<Vec<Cell>> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .into_records()
            .map(|r| r.unwrap().iter().map(cell).collect())
            .collect();
        assert_eq!(r[1], vec![Some("x,\"y\"".into()), None, None]);
        assert_eq!(r[2], vec![Some("multi\nline".into()), None, Some("3".into())]);
    }

    #[test]
    fn a_stream_past_its_cap_is_an_error_not_a_short_file() {
        let mut capped = Capped { inner: &b"0123456789ab"[..], left: 10 };
        let mut out = Vec::new();
        let err = capped.read_to_end(&mut out).unwrap_err().to_string();
        assert!(err.contains("inflates to more than") && err.contains("split the export"), "{err}");
        let mut at_cap = Capped { inner: &b"0123456789"[..], left: 10 };
        out.clear();
        assert_eq!(at_cap.read_to_end(&mut out).unwrap(), 10);
    }

    #[test]
    fn times_in_every_provider_spelling() {
        let jan = 1_704_067_200_000_000_000; // 2024-01-01T00:00:00Z
        for s in ["2024-01-01 00:00:00", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000Z", "2024-01-01T00:00Z", "2024-01-01"] {
            assert_eq!(parse_time(s, false), Some(jan), "{s}");
        }
        // GCP's inclusive last day of December ends at January's midnight.
        assert_eq!(parse_time("2023-12-31", true), Some(jan));
        assert_eq!(parse_decimal("1.5E-3"), Some(d("0.0015")));
    }

    #[test]
    fn a_charge_class_focus_does_not_know_is_refused_with_its_cell() {
        let csv = "BilledCost,EffectiveCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,BillingPeriodEnd,ProviderName,ChargeCategory,ChargeClass,BillingAccountId\n\
                   1.25,1.00,USD,2024-01-05T00:00:00Z,2024-01-06T00:00:00Z,2024-01-01,2024-01-31,AWS,Usage,Refund,A1\n";
        match parse_bytes("aws.csv", csv.as_bytes(), &ImportOptions::default()) {
            Err(K8sError::Cell { column, message, .. }) => {
                assert_eq!(column, "ChargeClass");
                assert!(message.contains("Refund"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gcp_lower_case_and_tag_arrays() {
        let csv = "BilledCost,EffectiveCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,BillingPeriodEnd,ProviderName,ChargeCategory,ChargeClass,Tags,BillingAccountId\n\
                   1.25,1.00,USD,2024-01-05T00:00:00Z,2024-01-06T00:00:00Z,2024-01-01,2024-01-31,Google Cloud,usage,correction,\"[{\"\"key\"\":\"\"service\"\",\"\"value\"\":\"\"api\"\"}]\",ABC-1\n";
        let i = parse_bytes("gcp.csv", csv.as_bytes(), &ImportOptions::default()).unwrap();
        let r = &i.rows[0];
        assert_eq!(r.ext.charge_category.as_deref(), Some("Usage"));
        assert_eq!(r.charge_class, Some(ChargeClass::Correction));
        assert_eq!(r.service, "api");
        assert_eq!(r.tags, r#"{"service":"api"}"#);
        assert_eq!(i.keys.iter().next().unwrap(), "google cloud|ABC-1|2024-01");
        assert_eq!(i.periods.iter().next().unwrap().0, "cloud:google cloud:ABC-1");
        assert_eq!(i.totals()["Google Cloud"], (d("1.25"), d("1.00")));
    }

    /// A gzip file read from disk, a record at a time into a sink, gives
    /// the rows and coverage that parsing its bytes whole gives; a sink's
    /// error stops the parse at that row.
    #[test]
    fn a_file_streams_into_a_sink_as_its_bytes_parse() {
        let mut csv = String::from(
            "BilledCost,EffectiveCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,ProviderName,BillingAccountId\n",
        );
        for i in 0..5000 {
            csv.push_str(&format!(
                "0.{i:04},0.{i:04},USD,2024-01-05T{:02}:00:00Z,2024-01-05T{:02}:59:59Z,2024-01-01,AWS,111\n",
                i % 24,
                i % 24
            ));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, csv.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let dir = std::env::temp_dir().join(format!("costplane-focus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bill.csv.gz");
        std::fs::write(&path, &gz).unwrap();
        let whole = parse_bytes("bill.csv.gz", &gz, &ImportOptions::default()).unwrap();
        let mut streamed = Vec::new();
        let summary = parse_file("bill.csv.gz", &path, &ImportOptions::default(), &mut |r| {
            streamed.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(streamed, whole.rows);
        assert_eq!((summary.rows, &summary.keys, &summary.periods), (5000, &whole.keys, &whole.periods));
        // 0.0000 + 0.0001 + ... + 0.4999 = 0.0001 x (4999 x 5000 / 2) = 1249.75
        assert_eq!(whole.totals()["AWS"].0, d("1249.75"));
        let mut seen = 0;
        let err = parse_file("bill.csv.gz", &path, &ImportOptions::default(), &mut |_| {
            seen += 1;
            match seen {
                100 => Err(K8sError::Read { file: "bill.csv.gz".into(), message: "the import stopped".into() }),
                _ => Ok(()),
            }
        })
        .unwrap_err();
        assert_eq!((seen, err.to_string()), (100, "bill.csv.gz: the import stopped".to_owned()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_file_row_and_column() {
        let csv = "BilledCost,EffectiveCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,ProviderName\n\
                   1,1,USD,2024-01-01,2024-01-02,2024-01-01,AWS\n\
                   1,1..5,USD,2024-01-01,2024-01-02,2024-01-01,AWS\n";
        let e = parse_bytes("bad.csv", csv.as_bytes(), &ImportOptions::default()).unwrap_err().to_string();
        assert_eq!(e, "bad.csv: row 2, column EffectiveCost: \"1..5\" is not a decimal number");
        let e = parse_bytes("m.csv", b"BilledCost\n1\n", &ImportOptions::default()).unwrap_err().to_string();
        assert_eq!(e, "m.csv: missing mandatory column EffectiveCost");
        let e = parse_bytes("p.parquet", b"PAR1....", &ImportOptions::default()).unwrap_err().to_string();
        assert!(e.starts_with("p.parquet: not a readable Parquet file"), "{e}");
    }
}
