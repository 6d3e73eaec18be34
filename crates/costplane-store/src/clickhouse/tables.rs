//! The tables costplane inserts into: the columns each insert sends (the
//! RowBinary encoders' order), with the column definitions and the
//! partition key `schema.rs` declares for the table. Writes, the partition
//! split and the startup schema check all read this one list.

use std::sync::LazyLock;

use super::partition::Granularity;
use super::{rowbinary, schema};

/// One table costplane inserts into.
#[derive(Debug)]
pub(crate) struct Written {
    pub table: &'static str,
    /// The INSERT's column list, in RowBinary order.
    pub columns: String,
    /// The table's column definitions in the DDL.
    pub ddl: String,
    /// The column `PARTITION BY` reads, and how finely it partitions.
    pub time_column: &'static str,
    pub granularity: Granularity,
}

impl Written {
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.split(',').map(str::trim)
    }
}

static WRITTEN: LazyLock<Vec<Written>> = LazyLock::new(|| {
    let written = |table: &'static str, columns: String| {
        let (ddl, time_column, granularity) = schema::layout(table).unwrap_or_else(|| panic!("{table} has no CREATE TABLE"));
        Written { table, columns, ddl, time_column, granularity }
    };
    // The telemetry tables' INSERT columns come from their description.
    let described = |table: &str| crate::tables::described(table).insert_columns().join(", ");
    vec![
        written("otel_traces", described("otel_traces")),
        written("otel_logs", described("otel_logs")),
        written("otel_metrics_gauge", described("otel_metrics_gauge")),
        written("otel_metrics_sum", described("otel_metrics_sum")),
        written("otel_metrics_histogram", described("otel_metrics_histogram")),
        written("otel_metrics_exp_histogram", described("otel_metrics_exp_histogram")),
        written("otel_metrics_summary", described("otel_metrics_summary")),
        written("costplane_usage_telemetry", rowbinary::USAGE_TELEMETRY_COLUMNS.to_owned()),
        written("costplane_usage_llm", rowbinary::USAGE_LLM_COLUMNS.to_owned()),
        written("costplane_usage_kubernetes", rowbinary::USAGE_KUBERNETES_COLUMNS.to_owned()),
        written("costplane_usage_k8s_samples", rowbinary::USAGE_KUBERNETES_COLUMNS.to_owned()),
        written("costplane_ledger", rowbinary::ledger_columns()),
    ]
});

/// Every table costplane inserts into, in write order: usage and ledger
/// last, inside the same retried write as the telemetry they bill (a
/// replay re-sends them with the same tokens). Last rather than first:
/// when the store rejects a telemetry insert, the pipeline splits the batch
/// and writes the halves under new ids, and usage already inserted under
/// the whole batch's tokens would then be billed twice.
pub(crate) fn written() -> &'static [Written] {
    &WRITTEN
}

/// The entry of `table`, which must be one costplane writes.
pub(crate) fn table(name: &str) -> &'static Written {
    written().iter().find(|t| t.table == name).unwrap_or_else(|| panic!("{name} is not a table costplane writes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::schema::SchemaOptions;

    #[test]
    fn the_split_matches_each_tables_partition_key() {
        for cluster in [None, Some("c".to_owned())] {
            let o = SchemaOptions { cluster, ..SchemaOptions::default() };
            let statements = o.statements();
            for t in written() {
                let storage = if o.cluster.is_some() { format!("{}_local", t.table) } else { t.table.to_owned() };
                let create = statements
                    .iter()
                    .find(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS {} ", o.qualified(&storage))))
                    .unwrap_or_else(|| panic!("no CREATE TABLE for {storage}"));
                let key = format!("\nPARTITION BY {}\n", t.granularity.expression(t.time_column));
                assert!(create.contains(&key), "{storage} is not partitioned by {key:?}:\n{create}");
            }
        }
    }

    #[test]
    fn usage_and_ledger_are_written_after_telemetry() {
        let order: Vec<&str> = written().iter().map(|t| t.table).collect();
        let first_cost = order.iter().position(|t| t.starts_with("costplane_")).unwrap();
        let last_otel = order.iter().rposition(|t| t.starts_with("otel_")).unwrap();
        assert!(last_otel < first_cost, "{order:?}");
        assert_eq!(order.len(), crate::TELEMETRY_TABLES.len() + 5);
        assert!(crate::TELEMETRY_TABLES.iter().all(|t| order.contains(t)));
    }
}
