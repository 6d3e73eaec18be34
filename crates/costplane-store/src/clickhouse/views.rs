//! The cost views (`cost_views.rs`) as ClickHouse views in costplane's
//! database, created or replaced at every connect (`ON CLUSTER` in cluster
//! mode), so Grafana's ClickHouse datasource runs the same dashboards'
//! queries as the embedded store's PostgreSQL endpoint.

use super::{schema, schema_error, ClickHouseStore, Op};
use crate::cost_views;
use crate::StoreError;

impl ClickHouseStore {
    pub(super) async fn create_cost_views(&self) -> Result<(), StoreError> {
        let o = &self.config.schema;
        let prefix = format!("{}.", schema::ident(&o.database));
        let on_cluster = o.cluster.as_deref().map(|c| format!(" ON CLUSTER {}", schema::ident(c))).unwrap_or_default();
        for statement in cost_views::clickhouse_statements(&prefix, &on_cluster) {
            self.execute(&statement, &[], None, Op::Write).await.map_err(schema_error)?;
        }
        Ok(())
    }
}
