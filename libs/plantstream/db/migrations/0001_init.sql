-- One table per archived topic, plus per-minute and per-hour rollups of the readings.
--
-- Exactly-once without a replacing engine: every table stores the Kafka partition and
-- offset of its source message, and the archival service resumes after the highest offset
-- ClickHouse holds (offsets live with the data). An insert is one block that lands in one
-- table partition, so it is one part: all of it or none of it. That is why `readings` is
-- partitioned by the month of `ingest_time` (the same for every reading of one Kafka
-- message) while its sort key and TTL use the sample time `ts`.
--
-- Ids are LowCardinality (few distinct values repeated in every row); timestamps use
-- DoubleDelta, float values Gorilla, small integers T64, then ZSTD. Avro ints map to
-- Int32 and longs to Int64, so no value a producer can write is refused on insert.
-- `{ttl_days}` is PLANTSTREAM_CLICKHOUSE_TTL_DAYS; archival re-applies it at start-up.

CREATE TABLE IF NOT EXISTS readings (
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    sensor LowCardinality(String),
    ts DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    unit LowCardinality(String),
    quality Int32 CODEC(T64, ZSTD(1)),
    reading_id String CODEC(ZSTD(3)),
    gateway LowCardinality(String),
    ingest_time DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    -- Set by ClickHouse when the row is written: end-to-end latency is archived_at - ts.
    archived_at DateTime64(6, 'UTC') DEFAULT now64(6) CODEC(DoubleDelta, ZSTD(1)),
    kafka_partition UInt16 CODEC(T64, ZSTD(1)),
    kafka_offset UInt64 CODEC(DoubleDelta, ZSTD(1)),
    -- The resume position per partition without scanning the table (kept inside each part).
    PROJECTION kafka_positions (SELECT kafka_partition, max(kafka_offset) GROUP BY kafka_partition)
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ingest_time)
ORDER BY (tenant, site, machine, sensor, ts)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Rollups: sums and counts (avg = value_sum / readings) with min, max and the last sample
-- time, merged in the background; dashboards read these, never the raw rows. They keep a
-- deduplication window too: a repeated insert (same token) must not count twice here.
CREATE TABLE IF NOT EXISTS readings_1m (
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    sensor LowCardinality(String),
    minute DateTime64(0, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    readings SimpleAggregateFunction(sum, UInt64),
    value_min SimpleAggregateFunction(min, Float64),
    value_max SimpleAggregateFunction(max, Float64),
    value_sum SimpleAggregateFunction(sum, Float64),
    last_ts SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, site, machine, sensor, minute)
TTL toDateTime(minute) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1m_mv TO readings_1m AS
SELECT tenant, site, machine, sensor, toStartOfMinute(ts) AS minute,
       count() AS readings, min(value) AS value_min, max(value) AS value_max,
       sum(value) AS value_sum, max(ts) AS last_ts
FROM readings
GROUP BY tenant, site, machine, sensor, minute;

CREATE TABLE IF NOT EXISTS readings_1h (
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    sensor LowCardinality(String),
    hour DateTime64(0, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    readings SimpleAggregateFunction(sum, UInt64),
    value_min SimpleAggregateFunction(min, Float64),
    value_max SimpleAggregateFunction(max, Float64),
    value_sum SimpleAggregateFunction(sum, Float64),
    last_ts SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, site, machine, sensor, hour)
TTL toDateTime(hour) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h_mv TO readings_1h AS
SELECT tenant, site, machine, sensor, toStartOfHour(ts) AS hour,
       count() AS readings, min(value) AS value_min, max(value) AS value_max,
       sum(value) AS value_sum, max(ts) AS last_ts
FROM readings
GROUP BY tenant, site, machine, sensor, hour;

-- Dead letters from every stage. `kafka_topic` is where the row was read from: the
-- readings.rejected topic, or, for an undecodable record archival met on another topic
-- (stage 'archival'), that topic; so resume positions cover both.
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
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (tenant, site, stage, reason, rejected_at)
TTL toDateTime(rejected_at) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS anomalies (
    event_id String,
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    ts DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    score Float64 CODEC(Gorilla, ZSTD(1)),
    threshold Float64 CODEC(Gorilla, ZSTD(1)),
    kind LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    sensors Array(LowCardinality(String)),
    shares Array(Float64),
    sensor_values Array(Nullable(Float64)),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, site, machine, ts)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Every alert revision; the current state of an alert is its highest revision.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id String,
    revision Int32,
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
    occurrences Int32,
    escalation_level Int32,
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
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS notifications (
    attempt_id String,
    alert_id String,
    revision Int32,
    tenant LowCardinality(String),
    site LowCardinality(String),
    machine LowCardinality(String),
    channel LowCardinality(String),
    target String,
    attempt Int32,
    outcome LowCardinality(String),
    detail String CODEC(ZSTD(3)),
    escalation_level Int32,
    attempted_at DateTime64(6, 'UTC'),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (tenant, site, machine, alert_id, attempted_at)
TTL toDateTime(attempted_at) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000
