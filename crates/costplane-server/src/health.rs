//! The exposition writer `/metrics` uses, and costplane's own health series:
//! ingest, buffer, store, query latency, and the process.
//!
//! One writer serves both formats a scraper may ask for: the Prometheus text
//! format (0.0.4) and OpenMetrics 1.0 (when the `Accept` header names
//! `application/openmetrics-text`, as Prometheus itself does). They differ
//! in three places only, all handled here: a counter's metadata names the
//! family without `_total` in OpenMetrics, `HELP` escapes quotes there, and
//! an OpenMetrics body ends with `# EOF`. Sample lines are the same.

use std::fmt::Write as _;

use costplane_pipeline::{HistogramSnapshot, StatsSnapshot, LATENCY_BUCKETS};

/// The exposition format of one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it is
    /// named with a non-zero quality, the text format otherwise.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            if parts.next() != Some("application/openmetrics-text") {
                continue;
            }
            let q = parts.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse::<f64>().ok()).unwrap_or(1.0);
            if q > 0.0 {
                return Format::OpenMetrics;
            }
        }
        Format::Text
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// `_sum` and `_count` samples, quantiles where the family has them.
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// Builds one exposition body.
pub struct Exposition {
    out: String,
    format: Format,
}

impl Exposition {
    pub fn new(format: Format) -> Exposition {
        Exposition { out: String::with_capacity(16 * 1024), format }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes a family's `# HELP` and `# TYPE` lines. `name` is the sample
    /// name (with `_total` for counters).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let meta = match (self.format, kind) {
            (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let mut escaped = help.replace('\\', "\\\\").replace('\n', "\\n");
        if self.format == Format::OpenMetrics {
            escaped = escaped.replace('"', "\\\"");
        }
        let _ = write!(self.out, "# HELP {meta} {escaped}\n# TYPE {meta} {}\n", kind.as_str());
    }

    /// Writes one sample; `labels` are (name, raw value) pairs.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(self.out, "{sep}{k}=\"{}\"", label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    pub fn one(&mut self, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The samples of one histogram series (its family already written).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (i, count) in h.cumulative.iter().enumerate() {
            let le = LATENCY_BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), |b| format!("{b:?}"));
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, count);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds);
        self.sample(&format!("{name}_count"), labels, h.count());
    }

    /// The body, terminated as the format requires.
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// Escapes a label value for both exposition formats.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Dead-letter series `/metrics` shows at most; the rest are summed into one.
pub const MAX_DEAD_LETTER_SERIES: usize = 200;

/// The dead-letter series a caller may see, as (tenant, signal, reason,
/// items): a tenant key sees its own tenant's only; past
/// [`MAX_DEAD_LETTER_SERIES`] the rest are summed under tenant `__other__`,
/// so senders cannot grow a scrape without bound by naming tenants.
pub fn dead_letter_series(dead: &[costplane_pipeline::DeadLetterCount], tenant: Option<&str>) -> Vec<(String, String, String, u64)> {
    let mut visible: Vec<&costplane_pipeline::DeadLetterCount> = dead.iter().filter(|d| tenant.is_none_or(|t| d.tenant == t)).collect();
    visible.sort_by(|a, b| b.items.cmp(&a.items).then_with(|| (&a.tenant, &a.signal, &a.reason).cmp(&(&b.tenant, &b.signal, &b.reason))));
    let mut out: Vec<(String, String, String, u64)> = Vec::new();
    let mut other = 0u64;
    for (i, d) in visible.into_iter().enumerate() {
        if i < MAX_DEAD_LETTER_SERIES {
            out.push((d.tenant.clone(), d.signal.clone(), d.reason.clone(), d.items));
        } else {
            other = other.saturating_add(d.items);
        }
    }
    if other > 0 {
        out.push(("__other__".into(), String::new(), "other".into(), other));
    }
    out
}

/// Appends the pipeline's series; `tenant` is the caller's tenant key, if any.
pub fn write_pipeline_metrics(out: &mut Exposition, s: &StatsSnapshot, tenant: Option<&str>) {
    use Kind::{Counter, Gauge, Histogram};
    out.family("costplane_ingest_items_total", Counter, "Items (spans, log records, data points) accepted, by signal.");
    for sig in &s.signals {
        out.sample("costplane_ingest_items_total", &[("signal", sig.signal)], sig.accepted_items);
    }
    out.family("costplane_ingest_bytes_total", Counter, "Bytes of accepted export requests (uncompressed OTLP bodies), by signal.");
    for sig in &s.signals {
        out.sample("costplane_ingest_bytes_total", &[("signal", sig.signal)], sig.accepted_bytes);
    }
    out.family(
        "costplane_ingest_refused_items_total",
        Counter,
        "Items refused with a retryable answer because the buffer was full (clients retry), by signal.",
    );
    for sig in &s.signals {
        out.sample("costplane_ingest_refused_items_total", &[("signal", sig.signal)], sig.refused_items);
    }
    out.family(
        "costplane_ingest_rejected_items_total",
        Counter,
        "Invalid items dropped from export requests (OTLP partial success; final), by signal.",
    );
    for sig in &s.signals {
        out.sample("costplane_ingest_rejected_items_total", &[("signal", sig.signal)], sig.rejected_items);
    }
    out.one("costplane_ingest_accepted_rows_total", Counter, "Rows accepted into the pipeline.", s.accepted_rows);
    out.one("costplane_ingest_refused_rows_total", Counter, "Rows refused because the buffer was full (clients retry).", s.refused_rows);
    out.one("costplane_store_written_rows_total", Counter, "Rows the store committed.", s.written_rows);
    out.one(
        "costplane_store_write_errors_total",
        Counter,
        "Failed store write attempts (retried, or the batch was split to isolate bad data).",
        s.write_errors,
    );
    out.one("costplane_store_write_retries_total", Counter, "Store write attempts that were retried.", s.retries);
    out.one("costplane_store_write_panics_total", Counter, "Store writes that panicked (retried).", s.write_panics);
    out.one("costplane_store_write_seconds_total", Counter, "Time spent in successful store writes.", s.write_seconds);
    out.family("costplane_store_write_duration_seconds", Histogram, "Duration of successful store writes (one per batch).");
    out.histogram("costplane_store_write_duration_seconds", &[], &s.write_duration);
    out.one("costplane_store_up", Gauge, "1 when the store's last write succeeded.", u8::from(s.store_healthy));
    out.one("costplane_queue_bytes", Gauge, "Bytes of decoded rows held in memory, waiting for the store.", s.queued_bytes);
    out.family("costplane_buffer_bytes", Gauge, "Bytes of the disk buffer's segments.");
    out.sample("costplane_buffer_bytes", &[("kind", s.buffer.kind)], s.buffer.bytes);
    out.one("costplane_buffer_limit_bytes", Gauge, "The buffer's size limit.", s.buffer.limit_bytes);
    out.one("costplane_buffer_records", Gauge, "Accepted requests not yet stored (or dead-lettered).", s.buffer.records);
    out.one(
        "costplane_buffer_spilled_records",
        Gauge,
        "Accepted requests kept in the disk buffer only (the queue is at its memory budget; read back as the store catches up).",
        s.buffer.spilled_records,
    );
    out.one("costplane_ingest_lag_seconds", Gauge, "Age of the oldest accepted, not yet stored request.", s.buffer.oldest_age_seconds);
    out.one("costplane_buffer_replayed_requests_total", Counter, "Requests replayed from the disk buffer at start.", s.replayed_requests);
    out.one(
        "costplane_buffer_corrupt_records",
        Gauge,
        "Corrupt records the disk buffer skipped and quarantined when it was opened (see buffer_dir/quarantine).",
        s.buffer.corrupt_records,
    );
    out.family("costplane_dead_letter_items_total", Counter, "Items moved to the dead-letter area, by tenant, signal and reason.");
    for (t, signal, reason, items) in dead_letter_series(&s.dead_letters, tenant) {
        out.sample("costplane_dead_letter_items_total", &[("tenant", &t), ("signal", &signal), ("reason", &reason)], items);
    }
}

/// Appends `process_*` series read from `/proc/self` (Linux; nothing
/// elsewhere). Ticks and pages use the Linux defaults (100 Hz, 4 KiB), which
/// are what every supported target runs with.
pub fn write_process_metrics(out: &mut Exposition) {
    let Some(p) = process_stats() else { return };
    out.one("process_cpu_seconds_total", Kind::Counter, "Total user and system CPU time spent in seconds.", p.cpu_seconds);
    out.one("process_resident_memory_bytes", Kind::Gauge, "Resident memory size in bytes.", p.resident_bytes);
    out.one("process_virtual_memory_bytes", Kind::Gauge, "Virtual memory size in bytes.", p.virtual_bytes);
    out.one("process_start_time_seconds", Kind::Gauge, "Start time of the process since unix epoch in seconds.", p.start_time_seconds);
    out.one("process_threads", Kind::Gauge, "Number of OS threads in the process.", p.threads);
    if let Some(fds) = p.open_fds {
        out.one("process_open_fds", Kind::Gauge, "Number of open file descriptors.", fds);
    }
    if let Some(max) = p.max_fds {
        out.one("process_max_fds", Kind::Gauge, "Maximum number of open file descriptors.", max);
    }
}

#[derive(Debug, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub threads: u64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_BYTES: u64 = 4096;

fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = boot.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok())?;
    let mut p = parse_stat(&stat, btime)?;
    p.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    p.max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
        l.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse().ok())
    });
    Some(p)
}

/// Parses `/proc/self/stat` (fields after the parenthesised command, which
/// may itself hold spaces and parentheses).
fn parse_stat(stat: &str, boot_time_seconds: f64) -> Option<ProcessStats> {
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcessStats {
        cpu_seconds: (num(14)? + num(15)?) as f64 / TICKS_PER_SECOND,
        threads: num(20)?,
        start_time_seconds: boot_time_seconds + num(22)? as f64 / TICKS_PER_SECOND,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * PAGE_BYTES,
        open_fds: None,
        max_fds: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_sees_only_its_dead_letters_and_the_series_are_capped() {
        let count = |tenant: &str, items: u64| costplane_pipeline::DeadLetterCount {
            tenant: tenant.into(),
            signal: "traces".into(),
            reason: "rejected by the store".into(),
            items,
        };
        let dead = vec![count("acme", 3), count("globex", 5)];
        let names = |t: Option<&str>| dead_letter_series(&dead, t).into_iter().map(|(t, ..)| t).collect::<Vec<_>>();
        assert_eq!(names(Some("acme")), vec!["acme"]);
        assert_eq!(names(None), vec!["globex", "acme"]);
        // 250 tenants of 1 item each: 200 series, the other 50 items summed.
        let many: Vec<_> = (0..250).map(|i| count(&format!("t{i:03}"), 1)).collect();
        let series = dead_letter_series(&many, None);
        assert_eq!(series.len(), MAX_DEAD_LETTER_SERIES + 1);
        assert_eq!(series.last().unwrap(), &("__other__".to_owned(), String::new(), "other".to_owned(), 50));
    }

    #[test]
    fn accept_headers_pick_the_format() {
        // What Prometheus 2.42 sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                    text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(Format::from_accept(Some("application/openmetrics-text; q=0")), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
    }

    #[test]
    fn counters_are_named_without_total_in_openmetrics() {
        let mut e = Exposition::new(Format::OpenMetrics);
        e.one("x_total", Kind::Counter, "a \"b\"", 1);
        assert_eq!(e.finish(), "# HELP x a \\\"b\\\"\n# TYPE x counter\nx_total 1\n# EOF\n");
        let mut e = Exposition::new(Format::Text);
        e.one("x_total", Kind::Counter, "a \"b\"", 1);
        assert_eq!(e.finish(), "# HELP x_total a \"b\"\n# TYPE x_total counter\nx_total 1\n");
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let h = HistogramSnapshot { cumulative: (1..=13).collect(), sum_seconds: 1.5 };
        let mut e = Exposition::new(Format::Text);
        e.histogram("d", &[("a", "b")], &h);
        let text = e.finish();
        assert!(text.starts_with("d_bucket{a=\"b\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("d_bucket{a=\"b\",le=\"1.0\"} 8\n"), "{text}");
        assert!(text.contains("d_bucket{a=\"b\",le=\"+Inf\"} 13\nd_sum{a=\"b\"} 1.5\nd_count{a=\"b\"} 13\n"), "{text}");
    }

    #[test]
    fn proc_stat_fields_are_read_after_the_command() {
        // Fields: pid (comm) state ppid ... utime=14 stime=15 ... threads=20,
        // starttime=22, vsize=23, rss=24.
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[0] = "S".into();
        fields[14 - 3] = "250".into(); // utime ticks
        fields[15 - 3] = "50".into(); // stime ticks
        fields[20 - 3] = "7".into();
        fields[22 - 3] = "1000".into();
        fields[23 - 3] = "123456".into();
        fields[24 - 3] = "10".into();
        let stat = format!("42 (cost plane) x) {}", fields.join(" "));
        let p = parse_stat(&stat, 1_700_000_000.0).unwrap();
        // (250 + 50) / 100 = 3 s of CPU; 1000 / 100 = 10 s after boot; 10
        // pages of 4096 bytes = 40960.
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!((p.threads, p.virtual_bytes, p.resident_bytes), (7, 123_456, 40_960));
        assert!(process_stats().is_some(), "/proc/self is readable here");
    }
}
