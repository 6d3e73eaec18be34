//! Store tests: one conformance suite run against every backend (embedded
//! DuckDB, and ClickHouse's real engine: chDB behind the test front, or the
//! server at `COSTPLANE_TEST_CLICKHOUSE_URL`), plus backend-specific checks.

mod clickhouse;
mod conformance;
mod data;
mod embedded;
mod readonly;
mod reconcile;
mod segments;
mod support;

/// The conformance suite: one test per (backend, scenario), each on a
/// fresh store, so that one scenario's failure neither hides the others'
/// results nor leaves them data to trip on. `$open` is an async fn
/// returning a `support::Backend`.
macro_rules! store_conformance_suite {
    (backends: [$(($backend:ident, $open:path)),+ $(,)?], scenarios: $scenarios:tt) => {
        $(store_conformance_suite!(@one $backend, $open, $scenarios);)+
    };
    (@one $backend:ident, $open:path, [$($scenario:ident => $run:path),+ $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let backend = $open().await;
                    $run(&backend).await;
                }
            )+
        }
    };
}

store_conformance_suite!(
    backends: [(duckdb, crate::support::open_duckdb), (clickhouse_engine, crate::support::open_clickhouse)],
    scenarios: [
        traces_round_trip => crate::conformance::traces_round_trip,
        logs_round_trip => crate::conformance::logs_round_trip,
        metrics_round_trip => crate::conformance::metrics_round_trip,
        a_batch_written_twice_is_stored_once => crate::conformance::a_batch_written_twice_is_stored_once,
        usage_and_ledger_round_trip => crate::conformance::usage_and_ledger_round_trip,
        one_ledger_row_per_key_per_closed_hour => crate::conformance::one_ledger_row_per_key_per_closed_hour,
        usage_is_read_since_a_write_number => crate::conformance::usage_is_read_since_a_write_number,
        kubernetes_samples_round_trip => crate::conformance::kubernetes_samples_round_trip,
        stored_bytes_are_measured => crate::conformance::stored_bytes_are_measured,
        staged_rows_stay_invisible_and_survive_other_replacements_until_their_switch =>
            crate::conformance::staged_rows_stay_invisible_and_survive_other_replacements_until_their_switch,
        costs_sum_per_window_without_the_hours_between => crate::conformance::costs_sum_per_window_without_the_hours_between,
        hostile_statements_are_refused => crate::readonly::hostile_statements_are_refused,
        results_are_bounded => crate::readonly::results_are_bounded,
    ]
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_slow_ad_hoc_queries_are_stopped_and_block_nothing() {
    let backend = support::open_duckdb().await;
    backend.store.write(&data::traces(5)).await.unwrap();
    readonly::a_slow_query_is_stopped_and_blocks_nothing(&backend).await;
}
