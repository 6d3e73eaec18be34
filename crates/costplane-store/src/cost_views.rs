//! The cost views SQL tools read: `service_costs`, `pod_costs`,
//! `network_costs`, `storage_costs`, `shared_infrastructure_allocation`
//! and `cost_anomalies` (the table names of the CloudSentinel Grafana
//! design), one description for both stores.
//!
//! They read the ledger's current revisions only (as every ledger read
//! does) through `costplane_cost_rows`, and anomalies from
//! `costplane_anomalies`. Money stays exact (`DECIMAL(38, 12)` on DuckDB,
//! `Decimal(38, 12)` on ClickHouse); `timestamp` is the hour's start in UTC.
//!
//! On the embedded store they also make PostgreSQL's time arithmetic
//! work: the bundled DuckDB has no ICU, so `now()` (a `TIMESTAMP WITH TIME
//! ZONE`) cannot take `- INTERVAL '7 days'`. A macro `now()` in the store's
//! schema, which DuckDB looks up before its built-in function, answers the
//! current UTC time as a plain `TIMESTAMP`, the type of every time column.
//!
//! `cost_type` follows `/metrics`: `llm`; `ingest`, `query`, `storage` for
//! telemetry; the head of `x_UsageType` (`cpu`, `memory`, `gpu`, `volume`,
//! `network`, `shared`, `idle`, ...) for Kubernetes and cloud rows, `cloud`
//! for other cloud rows.

/// `cost_type` values a usage type's head names directly.
const COST_TYPES: [&str; 12] =
    ["llm", "ingest", "storage", "query", "cpu", "memory", "gpu", "volume", "network", "shared", "idle", "cloud"];

/// The views' names, in creation order (each reads the ones before).
pub const VIEWS: [&str; 6] =
    ["service_costs", "pod_costs", "network_costs", "storage_costs", "shared_infrastructure_allocation", "cost_anomalies"];

/// A backend's spelling of what differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    DuckDb,
    ClickHouse,
}

impl Flavor {
    fn head(self) -> &'static str {
        match self {
            Flavor::DuckDb => "split_part(x_UsageType, '/', 1)",
            Flavor::ClickHouse => "splitByChar('/', x_UsageType)[1]",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Flavor::DuckDb => "split_part(x_UsageType, '/', 2)",
            Flavor::ClickHouse => "if(position(x_UsageType, '/') > 0, substring(x_UsageType, position(x_UsageType, '/') + 1), '')",
        }
    }

    fn timestamp(self, column: &str) -> String {
        match self {
            Flavor::DuckDb => format!("CAST({column} AS TIMESTAMP)"),
            Flavor::ClickHouse => format!("toDateTime64({column}, 6, 'UTC')"),
        }
    }

    fn money(self) -> &'static str {
        match self {
            Flavor::DuckDb => "DECIMAL(38, 12)",
            Flavor::ClickHouse => "Decimal(38, 12)",
        }
    }

    /// A JSON string field of an anomaly record's body, by regular expression
    /// (the embedded DuckDB is built without its JSON extension).
    fn body_field(self, key: &str) -> String {
        match self {
            Flavor::DuckDb => format!("regexp_extract(\"Body\", '\"{key}\":\"?([^\",}}]*)', 1)"),
            Flavor::ClickHouse => format!("extract(Body, '\"{key}\":\"?([^\",}}]*)')"),
        }
    }
}

/// The ledger's current rows, as the cost API reads them; `prefix` names
/// the database on ClickHouse (`db.`), empty on DuckDB.
pub fn current_rows_sql(prefix: &str) -> String {
    format!(
        "SELECT * FROM {prefix}costplane_ledger WHERE x_Revision IN \
         (SELECT max(Revision) FROM {prefix}costplane_ledger_hours GROUP BY Hour, Scope)"
    )
}

/// The ClickHouse statements: the current-rows view and the cost views in
/// database `prefix` (`db.`), `on_cluster` (` ON CLUSTER c` or empty)
/// after each view's name.
pub fn clickhouse_statements(prefix: &str, on_cluster: &str) -> Vec<String> {
    let mut out = vec![format!("CREATE OR REPLACE VIEW {prefix}costplane_cost_rows AS {}", current_rows_sql(prefix))];
    out.extend(view_statements(Flavor::ClickHouse, prefix));
    out.into_iter().map(|s| s.replacen(" AS ", &format!("{on_cluster} AS "), 1)).collect()
}

/// `CREATE` statements of the views, over `costplane_cost_rows` (a view or
/// table of current ledger rows) and `costplane_anomalies`; `prefix` names
/// the database on ClickHouse (`db.`), empty on DuckDB.
pub fn view_statements(flavor: Flavor, prefix: &str) -> Vec<String> {
    let (head, detail, money) = (flavor.head(), flavor.detail(), flavor.money());
    let types = COST_TYPES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let create = |name: &str, body: String| match flavor {
        Flavor::DuckDb => format!("CREATE OR REPLACE VIEW {name} AS {body}"),
        Flavor::ClickHouse => format!("CREATE OR REPLACE VIEW {prefix}{name} AS {body}"),
    };
    let lines = format!(
        "SELECT {start} AS \"timestamp\", {end} AS period_end, x_Source AS source,
    CASE WHEN x_Source = 'llm' THEN 'llm'
         WHEN x_Source = 'telemetry' THEN (CASE WHEN {head} = 'queries' THEN 'query' WHEN {head} = 'storage' THEN 'storage' ELSE 'ingest' END)
         WHEN {head} IN ({types}) THEN {head}
         WHEN x_Source = 'cloud' THEN 'cloud' ELSE 'other' END AS cost_type,
    {detail} AS detail, x_Service AS service_name, x_Tenant AS tenant, x_Project AS project, x_Model AS model,
    x_Operation AS operation, ProviderName AS cloud_provider, ServiceName AS provider_service, x_UsageType AS usage_type,
    coalesce(x_Cluster, '') AS cluster_name, coalesce(x_Namespace, '') AS namespace, coalesce(x_Pod, '') AS pod_name,
    coalesce(x_SharedFrom, '') AS shared_from, coalesce(x_AllocationMethod, '') AS allocation_method,
    ConsumedQuantity AS quantity, ConsumedUnit AS unit, BillingCurrency AS currency, BilledCost AS cost_usd
FROM {prefix}costplane_cost_rows",
        start = flavor.timestamp("ChargePeriodStart"),
        end = flavor.timestamp("ChargePeriodEnd"),
    );
    let lines = format!("({lines})");
    let sum_of = |t: &str| format!("sum(CASE WHEN cost_type = '{t}' THEN cost_usd ELSE CAST(0 AS {money}) END)");
    let anomaly_time = |key: &str| match flavor {
        Flavor::DuckDb => format!("make_timestamp(TRY_CAST({} AS BIGINT) * 1000000)", flavor.body_field(key)),
        Flavor::ClickHouse => format!("toDateTime64(toInt64OrZero({}), 6, 'UTC')", flavor.body_field(key)),
    };
    let to_money = |e: String| match flavor {
        Flavor::DuckDb => format!("TRY_CAST({e} AS DECIMAL(38, 12))"),
        Flavor::ClickHouse => format!("toDecimal128OrNull({e}, 12)"),
    };
    let to_float = |e: String| match flavor {
        Flavor::DuckDb => format!("TRY_CAST({e} AS DOUBLE)"),
        Flavor::ClickHouse => format!("toFloat64OrNull({e})"),
    };
    // A record's latest version (ClickHouse keeps every write of a key).
    let anomalies = match flavor {
        Flavor::DuckDb => format!("{prefix}costplane_anomalies WHERE NOT coalesce(\"Deleted\", false)"),
        Flavor::ClickHouse => format!(
            "(SELECT Key, argMax(Body, UpdatedNs) AS Body FROM {prefix}costplane_anomalies GROUP BY Key \
             HAVING argMax(Deleted, UpdatedNs) = 0) AS a"
        ),
    };
    vec![
        create(
            "service_costs",
            format!(
                "SELECT \"timestamp\", service_name, cost_type, cost_usd, cloud_provider, source, tenant, project, model, operation,
    usage_type, cluster_name, namespace, currency FROM {lines} AS l"
            ),
        ),
        create(
            "pod_costs",
            format!(
                "SELECT \"timestamp\", pod_name, namespace, service_name, cluster_name, tenant,
    {cpu} AS cpu_cost_usd, {memory} AS memory_cost_usd, {gpu} AS gpu_cost_usd, {volume} AS storage_cost_usd,
    {network} AS network_cost_usd, sum(cost_usd) AS total_cost_usd
FROM {lines} AS l WHERE source = 'kubernetes' AND pod_name <> '' AND cost_type <> 'idle'
GROUP BY \"timestamp\", pod_name, namespace, service_name, cluster_name, tenant",
                cpu = sum_of("cpu"),
                memory = sum_of("memory"),
                gpu = sum_of("gpu"),
                volume = sum_of("volume"),
                network = sum_of("network"),
            ),
        ),
        create(
            "network_costs",
            format!(
                "SELECT \"timestamp\", service_name, namespace, pod_name, cluster_name, tenant,
    CASE detail WHEN 'receive' THEN 'ingress' WHEN 'transmit' THEN 'egress' ELSE detail END AS direction,
    quantity AS gb, cost_usd
FROM {lines} AS l WHERE cost_type = 'network'"
            ),
        ),
        create(
            "storage_costs",
            format!(
                "SELECT \"timestamp\", CASE WHEN detail <> '' THEN detail ELSE cost_type END AS storage_type, service_name, namespace,
    pod_name, cluster_name, tenant,
    CASE WHEN unit IN ('GiB-Hours', 'GiB') THEN quantity ELSE NULL END AS storage_gb, cost_usd
FROM {lines} AS l WHERE cost_type IN ('volume', 'storage')"
            ),
        ),
        create(
            "shared_infrastructure_allocation",
            format!(
                "WITH shared AS (
    SELECT \"timestamp\", service_name, namespace, cluster_name, tenant, shared_from, allocation_method, cost_usd,
        CASE WHEN source = 'kubernetes' AND shared_from = '__idle__' THEN 'idle'
             WHEN source = 'kubernetes' THEN 'kubernetes'
             WHEN cost_type = 'storage' THEN 'storage' ELSE 'telemetry' END AS resource_type
    FROM {lines} AS l WHERE (source = 'kubernetes' AND shared_from <> '') OR source = 'telemetry'
), own AS (
    SELECT \"timestamp\", cluster_name, namespace,
        sum(CASE WHEN cost_type = 'cpu' THEN cost_usd ELSE CAST(0 AS {money}) END) AS cpu,
        sum(CASE WHEN cost_type = 'memory' THEN cost_usd ELSE CAST(0 AS {money}) END) AS mem
    FROM {lines} AS l WHERE source = 'kubernetes' AND shared_from = '' AND namespace <> '__idle__'
    GROUP BY \"timestamp\", cluster_name, namespace
), totals AS (
    SELECT \"timestamp\", cluster_name, sum(cpu) AS cpu, sum(mem) AS mem FROM own GROUP BY \"timestamp\", cluster_name
)
SELECT s.\"timestamp\" AS \"timestamp\", s.service_name AS service_name, s.namespace AS namespace, s.cluster_name AS cluster_name,
    s.tenant AS tenant, s.resource_type AS resource_type, s.shared_from AS shared_from, s.allocation_method AS allocation_method,
    round(100 * CAST(o.cpu AS DOUBLE) / nullif(CAST(t.cpu AS DOUBLE), 0), 4) AS cpu_allocation_percent,
    round(100 * CAST(o.mem AS DOUBLE) / nullif(CAST(t.mem AS DOUBLE), 0), 4) AS memory_allocation_percent,
    round(100 * CAST(s.cost_usd AS DOUBLE) / nullif(sum(CAST(s.cost_usd AS DOUBLE)) OVER (PARTITION BY s.\"timestamp\", s.resource_type, s.cluster_name, s.shared_from), 0), 4) AS allocation_percent,
    s.cost_usd AS allocated_cost_usd
FROM shared AS s
LEFT JOIN own AS o ON o.\"timestamp\" = s.\"timestamp\" AND o.cluster_name = s.cluster_name AND o.namespace = s.namespace
LEFT JOIN totals AS t ON t.\"timestamp\" = s.\"timestamp\" AND t.cluster_name = s.cluster_name"
            ),
        ),
        create(
            "cost_anomalies",
            format!(
                "SELECT {start} AS \"timestamp\", {end} AS end_time, {grain} AS grain, {service} AS service_name, {tenant} AS tenant,
    {project} AS project, {source} AS source, {model} AS model, {actual} AS cost_usd, {expected} AS expected_cost,
    {score} AS zscore, {direction} AS direction, {status} AS status, \"Key\" AS anomaly_id
FROM {anomalies}",
                start = anomaly_time("start"),
                end = anomaly_time("end"),
                grain = flavor.body_field("grain"),
                service = flavor.body_field("service"),
                tenant = flavor.body_field("tenant"),
                project = flavor.body_field("project"),
                source = flavor.body_field("source"),
                model = flavor.body_field("model"),
                actual = to_money(flavor.body_field("actual")),
                expected = to_money(flavor.body_field("expected")),
                score = to_float(flavor.body_field("score")),
                direction = flavor.body_field("direction"),
                status = flavor.body_field("status"),
            ),
        ),
    ]
}

/// The embedded store's statements: `now()` as UTC `TIMESTAMP`, the
/// current-rows view and the cost views.
pub fn duckdb_statements() -> Vec<String> {
    let mut out = vec![
        "CREATE OR REPLACE MACRO now() AS CAST(get_current_timestamp() AS TIMESTAMP)".to_owned(),
        format!("CREATE OR REPLACE VIEW costplane_cost_rows AS {}", current_rows_sql("")),
    ];
    out.extend(view_statements(Flavor::DuckDb, ""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_is_described_for_both_stores() {
        for flavor in [Flavor::DuckDb, Flavor::ClickHouse] {
            let statements = view_statements(flavor, "costplane.");
            assert_eq!(statements.len(), VIEWS.len());
            for (statement, name) in statements.iter().zip(VIEWS) {
                assert!(statement.contains(&format!("VIEW {}{name} AS", if flavor == Flavor::ClickHouse { "costplane." } else { "" })));
            }
        }
        assert!(duckdb_statements()[0].contains("MACRO now()"));
    }
}
