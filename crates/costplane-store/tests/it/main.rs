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

/// Runs every conformance scenario against one backend. `$open` is an async
/// fn returning a `support::Backend`.
macro_rules! store_conformance_suite {
    ($name:ident, $open:path) => {
        mod $name {
            use crate::conformance as c;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn all_scenarios_give_the_expected_answers() {
                let backend = $open().await;
                c::traces_round_trip(&backend).await;
                c::logs_round_trip(&backend).await;
                c::metrics_round_trip(&backend).await;
                c::a_batch_written_twice_is_stored_once(&backend).await;
                c::usage_and_ledger_round_trip(&backend).await;
                c::one_ledger_row_per_key_per_closed_hour(&backend).await;
                c::usage_is_read_since_a_write_number(&backend).await;
                c::kubernetes_samples_round_trip(&backend).await;
                c::stored_bytes_are_measured(&backend).await;
                crate::readonly::hostile_statements_are_refused(&backend).await;
                crate::readonly::results_are_bounded(&backend).await;
            }
        }
    };
}

store_conformance_suite!(duckdb, crate::support::open_duckdb);
store_conformance_suite!(clickhouse_engine, crate::support::open_clickhouse);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_slow_ad_hoc_queries_are_stopped_and_block_nothing() {
    let backend = support::open_duckdb().await;
    backend.store.write(&data::traces(5)).await.unwrap();
    readonly::a_slow_query_is_stopped_and_blocks_nothing(&backend).await;
}
