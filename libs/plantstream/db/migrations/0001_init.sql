-- First tables: one per archived topic. Every table stores the Kafka partition and offset
-- of its source message, so the archival service can resume exactly after the last row
-- ClickHouse holds (offsets live with the data: a crash can neither lose nor double rows).
-- Ids are LowCardinality (few distinct values, repeated in every row); time series use
-- DoubleDelta on timestamps and Gorilla on float values, then ZSTD.

CREATE TABLE IF NOT EXISTS readings (
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    sensor LowCardinality(String),
    ts DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    unit LowCardinality(String),
    quality UInt16 CODEC(T64, ZSTD(1)),
    reading_id String CODEC(ZSTD(1)),
    ingest_time DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    kafka_partition UInt16 CODEC(T64, ZSTD(1)),
    kafka_offset UInt64 CODEC(DoubleDelta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, site, machine, sensor, ts)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS rejected (
    id String,
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    stage LowCardinality(String),
    reason LowCardinality(String),
    detail String CODEC(ZSTD(3)),
    sensor Nullable(String),
    ts Nullable(DateTime64(6, 'UTC')),
    value Nullable(Float64),
    source_topic LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    original String CODEC(ZSTD(3)),
    truncated Bool,
    content_type Nullable(String),
    rejected_at DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (tenant, site, reason, rejected_at)
TTL toDateTime(rejected_at) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS anomalies (
    event_id String,
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    ts DateTime64(6, 'UTC'),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    score Float64,
    threshold Float64,
    kind LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    sensors Array(LowCardinality(String)),
    shares Array(Float64),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, site, machine, ts)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS alerts (
    alert_id String,
    revision UInt32,
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    sensors Array(LowCardinality(String)),
    rule LowCardinality(String),
    severity LowCardinality(String),
    state LowCardinality(String),
    title String,
    first_seen DateTime64(6, 'UTC'),
    last_seen DateTime64(6, 'UTC'),
    occurrences UInt32,
    escalation_level UInt8,
    evidence Map(String, Float64),
    recommended_action Nullable(String),
    actor Nullable(String),
    note Nullable(String),
    silenced_until Nullable(DateTime64(6, 'UTC')),
    updated_at DateTime64(6, 'UTC'),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(updated_at)
ORDER BY (tenant, site, machine, alert_id, revision)
TTL toDateTime(updated_at) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000
