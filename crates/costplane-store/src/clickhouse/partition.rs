//! Rows grouped by the partition they land in, so that no INSERT touches
//! more partitions than ClickHouse's `max_partitions_per_insert_block`
//! (100 by default; above it the insert fails with "Too many partitions for
//! single INSERT block", and would fail the same way on every retry).
//!
//! Telemetry tables are partitioned by day (`toDate(Timestamp)`,
//! `toDate(TimeUnix)`), usage and ledger tables by month
//! (`toYYYYMM(...)`); see `schema.rs`. Groups are by UTC day or month. On a
//! server whose timezone is not UTC one group can straddle two of the
//! server's days, which stays far below the limit.

/// How finely a table is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Granularity {
    /// `toDate(column)`
    Day,
    /// `toYYYYMM(column)`
    Month,
}

impl Granularity {
    /// The `PARTITION BY` expression for `column` (the DDL in `schema.rs` is
    /// written with it).
    pub(crate) fn expression(self, column: &str) -> String {
        match self {
            Granularity::Day => format!("toDate({column})"),
            Granularity::Month => format!("toYYYYMM({column})"),
        }
    }
}

use crate::days::{civil_from_days, DAY_NS};

/// The partition of a day since 1970-01-01 (UTC), named as ClickHouse
/// names it: `YYYYMMDD` by day, `YYYYMM` by month.
fn partition_of_day(days: i64, granularity: Granularity) -> i64 {
    let (year, month, day) = civil_from_days(days);
    match granularity {
        Granularity::Day => year * 10_000 + i64::from(month) * 100 + i64::from(day),
        Granularity::Month => year * 100 + i64::from(month),
    }
}

/// `rows` grouped by partition, partitions ascending, rows in their order.
///
/// Per row only the day is computed; the partition is looked up again only
/// when the day differs from the previous row's (a batch is mostly one day).
pub(crate) fn split<T>(rows: &[T], granularity: Granularity, time_ns: impl Fn(&T) -> i64) -> Vec<(i64, Vec<&T>)> {
    let mut groups: Vec<(i64, Vec<&T>)> = Vec::new();
    let (mut last_day, mut at) = (None, 0);
    for row in rows {
        let day = time_ns(row).div_euclid(DAY_NS);
        if last_day != Some(day) {
            let key = partition_of_day(day, granularity);
            at = groups.iter().position(|g| g.0 == key).unwrap_or_else(|| {
                let capacity = if groups.is_empty() { rows.len() } else { 0 };
                groups.push((key, Vec::with_capacity(capacity)));
                groups.len() - 1
            });
            last_day = Some(day);
        }
        groups[at].1.push(row);
    }
    groups.sort_unstable_by_key(|g| g.0);
    groups
}

/// The deduplication token of one insert: the same batch, table and
/// partition always give the same token, so a retried or replayed insert is
/// dropped by ClickHouse.
pub(crate) fn dedup_token(batch_id: u64, table: &str, partition: i64) -> String {
    format!("{batch_id:016x}-{table}-{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition_of(ns: i64, granularity: Granularity) -> i64 {
        partition_of_day(ns.div_euclid(DAY_NS), granularity)
    }

    #[test]
    fn days_and_months_are_utc_calendar_dates() {
        let day = |ns| partition_of(ns, Granularity::Day);
        let month = |ns| partition_of(ns, Granularity::Month);
        assert_eq!(day(0), 19700101);
        assert_eq!(day(-1), 19691231);
        // The leap day of a century leap year.
        assert_eq!(day(951_782_400 * 1_000_000_000), 20000229);
        assert_eq!(day(1_893_456_000_123_456_789), 20300101);
        assert_eq!(day(1_893_455_999_999_999_999), 20291231);
        assert_eq!(month(1_893_455_999_999_999_999), 202912);
        // 2100 is not a leap year.
        assert_eq!(day(4_107_542_400 * 1_000_000_000 - 1), 21000228);
        // Every day of 1970..2200 follows the previous one.
        let mut previous = day(0);
        for d in 1..(230 * 366) {
            let p = day(d * DAY_NS);
            assert!(p > previous, "{p} after {previous}");
            let (m, dd) = ((p / 100) % 100, p % 100);
            assert!((1..=12).contains(&m) && (1..=31).contains(&dd), "{p}");
            previous = p;
        }
    }

    #[test]
    fn rows_split_by_partition_keep_their_order() {
        let rows = [DAY_NS + 5, 3, 2 * DAY_NS, DAY_NS + 1, 4];
        let groups = split(&rows, Granularity::Day, |&ns| ns);
        let got: Vec<(i64, Vec<i64>)> = groups.into_iter().map(|(p, rs)| (p, rs.into_iter().copied().collect())).collect();
        assert_eq!(got, vec![(19700101, vec![3, 4]), (19700102, vec![DAY_NS + 5, DAY_NS + 1]), (19700103, vec![2 * DAY_NS])]);
        assert_eq!(split(&rows, Granularity::Month, |&ns| ns).len(), 1);
        assert_eq!(dedup_token(0xab, "otel_logs", 20300101), "00000000000000ab-otel_logs-20300101");
    }
}
