-- costplane ClickHouse schema, version 9

CREATE DATABASE IF NOT EXISTS `otel` ON CLUSTER `c1`;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_schema_migrations` ON CLUSTER `c1` (
    version UInt32,
    applied_at DateTime DEFAULT now()
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/costplane_schema_migrations', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS `otel`.`otel_traces_local` ON CLUSTER `c1` (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_traces_local', '{replica}')
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
TTL toDateTime(Timestamp) + toIntervalDay(7)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS `otel`.`otel_traces` ON CLUSTER `c1` AS `otel`.`otel_traces_local`
ENGINE = Distributed('c1', 'otel', 'otel_traces_local', cityHash64(TraceId));

CREATE TABLE IF NOT EXISTS `otel`.`otel_logs_local` ON CLUSTER `c1` (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime ALIAS toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_logs_local', '{replica}')
PARTITION BY toDate(Timestamp)
ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)
TTL toDateTime(Timestamp) + toIntervalDay(30)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS `otel`.`otel_logs` ON CLUSTER `c1` AS `otel`.`otel_logs_local`
ENGINE = Distributed('c1', 'otel', 'otel_logs_local', cityHash64(ServiceName, TraceId, Timestamp));

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_gauge_local` ON CLUSTER `c1` (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_metrics_gauge_local', '{replica}')
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(365)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_gauge` ON CLUSTER `c1` AS `otel`.`otel_metrics_gauge_local`
ENGINE = Distributed('c1', 'otel', 'otel_metrics_gauge_local', cityHash64(ServiceName, MetricName, Attributes));

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_sum_local` ON CLUSTER `c1` (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_metrics_sum_local', '{replica}')
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(365)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_sum` ON CLUSTER `c1` AS `otel`.`otel_metrics_sum_local`
ENGINE = Distributed('c1', 'otel', 'otel_metrics_sum_local', cityHash64(ServiceName, MetricName, Attributes));

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_histogram_local` ON CLUSTER `c1` (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_metrics_histogram_local', '{replica}')
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(365)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_histogram` ON CLUSTER `c1` AS `otel`.`otel_metrics_histogram_local`
ENGINE = Distributed('c1', 'otel', 'otel_metrics_histogram_local', cityHash64(ServiceName, MetricName, Attributes));

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_exp_histogram_local` ON CLUSTER `c1` (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_metrics_exp_histogram_local', '{replica}')
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(365)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_exp_histogram` ON CLUSTER `c1` AS `otel`.`otel_metrics_exp_histogram_local`
ENGINE = Distributed('c1', 'otel', 'otel_metrics_exp_histogram_local', cityHash64(ServiceName, MetricName, Attributes));

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_summary_local` ON CLUSTER `c1` (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_metrics_summary_local', '{replica}')
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(365)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS `otel`.`otel_metrics_summary` ON CLUSTER `c1` AS `otel`.`otel_metrics_summary_local`
ENGINE = Distributed('c1', 'otel', 'otel_metrics_summary_local', cityHash64(ServiceName, MetricName, Attributes));

CREATE TABLE IF NOT EXISTS `otel`.`costplane_usage_telemetry_local` ON CLUSTER `c1` (
    Hour DateTime64(9) CODEC(Delta, ZSTD(1)),
    Tenant LowCardinality(String),
    Project LowCardinality(String),
    Service LowCardinality(String),
    Signal LowCardinality(String),
    Items UInt64,
    Bytes UInt64,
    WriteSeq UInt64,
    EventDay DateTime64(9),
    INDEX idx_write_seq WriteSeq TYPE minmax GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/costplane_usage_telemetry_local', '{replica}')
PARTITION BY toYYYYMM(Hour)
ORDER BY (Tenant, Hour, Project, Service, Signal)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_usage_telemetry` ON CLUSTER `c1` AS `otel`.`costplane_usage_telemetry_local`
ENGINE = Distributed('c1', 'otel', 'costplane_usage_telemetry_local', cityHash64(Tenant));

ALTER TABLE `otel`.`costplane_usage_telemetry_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS WriteSeq UInt64;

ALTER TABLE `otel`.`costplane_usage_telemetry` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS WriteSeq UInt64;

ALTER TABLE `otel`.`costplane_usage_telemetry_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS EventDay DateTime64(9) DEFAULT toStartOfDay(Hour, 'UTC');

ALTER TABLE `otel`.`costplane_usage_telemetry` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS EventDay DateTime64(9) DEFAULT toStartOfDay(Hour, 'UTC');

CREATE TABLE IF NOT EXISTS `otel`.`costplane_usage_llm_local` ON CLUSTER `c1` (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    Tenant LowCardinality(String),
    Project LowCardinality(String),
    Service LowCardinality(String),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    Provider LowCardinality(String),
    Model LowCardinality(String),
    Operation LowCardinality(String),
    InputTokens UInt64,
    OutputTokens UInt64,
    CacheReadTokens UInt64,
    CacheWriteTokens UInt64,
    ReasoningTokens UInt64,
    ProvidedCost Nullable(Decimal(38, 12)),
    ReceivedAt DateTime64(9),
    Hour DateTime64(9),
    CallKind LowCardinality(String),
    InvalidReason String,
    WriteSeq UInt64,
    CacheWrite1hTokens UInt64,
    INDEX idx_write_seq WriteSeq TYPE minmax GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/costplane_usage_llm_local', '{replica}')
PARTITION BY toYYYYMM(Hour)
ORDER BY (Hour, Tenant, Model)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_usage_llm` ON CLUSTER `c1` AS `otel`.`costplane_usage_llm_local`
ENGINE = Distributed('c1', 'otel', 'costplane_usage_llm_local', cityHash64(Tenant));

ALTER TABLE `otel`.`costplane_usage_llm_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS ReceivedAt DateTime64(9) DEFAULT Timestamp;

ALTER TABLE `otel`.`costplane_usage_llm` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS ReceivedAt DateTime64(9) DEFAULT Timestamp;

ALTER TABLE `otel`.`costplane_usage_llm_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS Hour DateTime64(9) DEFAULT toStartOfHour(Timestamp);

ALTER TABLE `otel`.`costplane_usage_llm` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS Hour DateTime64(9) DEFAULT toStartOfHour(Timestamp);

ALTER TABLE `otel`.`costplane_usage_llm_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS CallKind LowCardinality(String) DEFAULT 'model';

ALTER TABLE `otel`.`costplane_usage_llm` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS CallKind LowCardinality(String) DEFAULT 'model';

ALTER TABLE `otel`.`costplane_usage_llm_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS InvalidReason String;

ALTER TABLE `otel`.`costplane_usage_llm` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS InvalidReason String;

ALTER TABLE `otel`.`costplane_usage_llm_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS WriteSeq UInt64;

ALTER TABLE `otel`.`costplane_usage_llm` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS WriteSeq UInt64;

ALTER TABLE `otel`.`costplane_usage_llm_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS CacheWrite1hTokens UInt64;

ALTER TABLE `otel`.`costplane_usage_llm` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS CacheWrite1hTokens UInt64;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_usage_kubernetes_local` ON CLUSTER `c1` (
    Hour DateTime64(9),
    WrittenAt DateTime64(9),
    Cluster LowCardinality(String),
    Kind LowCardinality(String),
    Payload String CODEC(ZSTD(1))
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/costplane_usage_kubernetes_local', '{replica}')
PARTITION BY toYYYYMM(Hour)
ORDER BY (Hour, Cluster, WrittenAt, Kind)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_usage_kubernetes` ON CLUSTER `c1` AS `otel`.`costplane_usage_kubernetes_local`
ENGINE = Distributed('c1', 'otel', 'costplane_usage_kubernetes_local', cityHash64(Hour));

CREATE TABLE IF NOT EXISTS `otel`.`costplane_usage_k8s_samples_local` ON CLUSTER `c1` (
    Hour DateTime64(9),
    WrittenAt DateTime64(9),
    Cluster LowCardinality(String),
    Kind LowCardinality(String),
    Payload String CODEC(ZSTD(1))
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/costplane_usage_k8s_samples_local', '{replica}')
PARTITION BY toYYYYMM(Hour)
ORDER BY (Hour, Cluster, WrittenAt)
TTL toDateTime(Hour) + INTERVAL 1 DAY
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_usage_k8s_samples` ON CLUSTER `c1` AS `otel`.`costplane_usage_k8s_samples_local`
ENGINE = Distributed('c1', 'otel', 'costplane_usage_k8s_samples_local', cityHash64(Hour));

CREATE TABLE IF NOT EXISTS `otel`.`costplane_ledger_local` ON CLUSTER `c1` (
    ChargePeriodStart DateTime64(9),
    ChargePeriodEnd DateTime64(9),
    BilledCost Decimal(38, 12),
    EffectiveCost Decimal(38, 12),
    ListCost Decimal(38, 12),
    ContractedCost Decimal(38, 12),
    BillingCurrency LowCardinality(String),
    ChargeCategory LowCardinality(String),
    ChargeClass Nullable(String),
    ServiceName LowCardinality(String),
    ServiceCategory LowCardinality(String),
    ProviderName LowCardinality(String),
    PublisherName LowCardinality(String),
    InvoiceIssuerName LowCardinality(String),
    ResourceId String,
    ResourceName String,
    ConsumedQuantity Decimal(38, 12),
    ConsumedUnit LowCardinality(String),
    PricingQuantity Decimal(38, 12),
    PricingUnit LowCardinality(String),
    SkuId String,
    Tags String,
    x_Tenant LowCardinality(String),
    x_Project LowCardinality(String),
    x_Service LowCardinality(String),
    x_Source LowCardinality(String),
    x_Model LowCardinality(String),
    x_Operation LowCardinality(String),
    x_UsageType LowCardinality(String),
    x_PricingStatus LowCardinality(String),
    x_PriceVersion LowCardinality(String),
    x_ChargeStatus LowCardinality(String),
    x_Revision UInt64,
    x_AllocationRatio Nullable(Decimal(38, 12)),
    x_AllocationMethod LowCardinality(String),
    x_Namespace LowCardinality(String),
    x_Pod String,
    x_Node LowCardinality(String),
    x_Cluster LowCardinality(String),
    x_Container LowCardinality(String),
    x_SharedFrom LowCardinality(String),
    x_ImportKey LowCardinality(String),
    x_Extra String
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/costplane_ledger_local', '{replica}')
PARTITION BY toYYYYMM(ChargePeriodStart)
ORDER BY (x_Tenant, ChargePeriodStart, x_Source, x_Project, x_Service)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_ledger` ON CLUSTER `c1` AS `otel`.`costplane_ledger_local`
ENGINE = Distributed('c1', 'otel', 'costplane_ledger_local', cityHash64(x_Tenant));

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_ChargeStatus LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_ChargeStatus LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Revision UInt64;

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Revision UInt64;

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_AllocationRatio Nullable(Decimal(38, 12));

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_AllocationRatio Nullable(Decimal(38, 12));

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_AllocationMethod LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_AllocationMethod LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Namespace LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Namespace LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Pod String;

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Pod String;

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Node LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Node LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Cluster LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Cluster LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Container LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Container LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_SharedFrom LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_SharedFrom LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_ImportKey LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_ImportKey LowCardinality(String);

ALTER TABLE `otel`.`costplane_ledger_local` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Extra String;

ALTER TABLE `otel`.`costplane_ledger` ON CLUSTER `c1` ADD COLUMN IF NOT EXISTS x_Extra String;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_ledger_hours_local` ON CLUSTER `c1` (
    Hour DateTime64(9),
    Scope LowCardinality(String),
    Revision UInt64,
    Status LowCardinality(String),
    UsageRows UInt64,
    PriceVersion String
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/costplane_ledger_hours_local', '{replica}')
PARTITION BY tuple()
ORDER BY (Hour, Scope, Revision)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_ledger_hours` ON CLUSTER `c1` AS `otel`.`costplane_ledger_hours_local`
ENGINE = Distributed('c1', 'otel', 'costplane_ledger_hours_local', cityHash64(Hour));

CREATE TABLE IF NOT EXISTS `otel`.`costplane_budgets_local` ON CLUSTER `c1` (
    Key String,
    Body String,
    UpdatedNs Int64,
    Deleted UInt8
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/otel/costplane_budgets_local', '{replica}', UpdatedNs)
ORDER BY Key;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_budgets` ON CLUSTER `c1` AS `otel`.`costplane_budgets_local`
ENGINE = Distributed('c1', 'otel', 'costplane_budgets_local', cityHash64(Key));

CREATE TABLE IF NOT EXISTS `otel`.`costplane_budget_notifications_local` ON CLUSTER `c1` (
    Key String,
    Body String,
    UpdatedNs Int64,
    Deleted UInt8
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/otel/costplane_budget_notifications_local', '{replica}', UpdatedNs)
ORDER BY Key;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_budget_notifications` ON CLUSTER `c1` AS `otel`.`costplane_budget_notifications_local`
ENGINE = Distributed('c1', 'otel', 'costplane_budget_notifications_local', cityHash64(Key));

CREATE TABLE IF NOT EXISTS `otel`.`costplane_anomalies_local` ON CLUSTER `c1` (
    Key String,
    Body String,
    UpdatedNs Int64,
    Deleted UInt8
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/otel/costplane_anomalies_local', '{replica}', UpdatedNs)
ORDER BY Key;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_anomalies` ON CLUSTER `c1` AS `otel`.`costplane_anomalies_local`
ENGINE = Distributed('c1', 'otel', 'costplane_anomalies_local', cityHash64(Key));

CREATE TABLE IF NOT EXISTS `otel`.`costplane_insights_progress_local` ON CLUSTER `c1` (
    Key String,
    Body String,
    UpdatedNs Int64,
    Deleted UInt8
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/otel/costplane_insights_progress_local', '{replica}', UpdatedNs)
ORDER BY Key;

CREATE TABLE IF NOT EXISTS `otel`.`costplane_insights_progress` ON CLUSTER `c1` AS `otel`.`costplane_insights_progress_local`
ENGINE = Distributed('c1', 'otel', 'costplane_insights_progress_local', cityHash64(Key));

CREATE TABLE IF NOT EXISTS `otel`.`otel_traces_trace_id_ts_local` ON CLUSTER `c1` (
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_traces_trace_id_ts_local', '{replica}')
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start)
TTL Start + toIntervalDay(7)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS `otel`.`otel_traces_trace_id_ts` ON CLUSTER `c1` AS `otel`.`otel_traces_trace_id_ts_local`
ENGINE = Distributed('c1', 'otel', 'otel_traces_trace_id_ts_local', cityHash64(TraceId));

CREATE MATERIALIZED VIEW IF NOT EXISTS `otel`.`otel_traces_trace_id_ts_mv` ON CLUSTER `c1` TO `otel`.`otel_traces_trace_id_ts_local`
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM `otel`.`otel_traces_local`
WHERE TraceId != ''
GROUP BY TraceId;

INSERT INTO `otel`.`costplane_schema_migrations` (version) VALUES (9);
