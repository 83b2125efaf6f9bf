-- Rollups exact after a crash (services/archival/lastrun.py). An insert into `readings`
-- writes the raw part, then the rollup parts; a SIGKILL in between left the rollups short.
-- Each readings row now keeps the first Kafka offset of the insert (run) it came in, and
-- each rollup row the source partition and the highest offset it counts, so archival can
-- tell on resume whether the last run of a partition reached each rollup, and add it from
-- the raw rows if not. -1 / 0: archived before this migration (not checked).
ALTER TABLE readings ADD COLUMN IF NOT EXISTS kafka_run_first Int64 DEFAULT -1 CODEC(DoubleDelta, ZSTD(1));

ALTER TABLE readings_1m
    ADD COLUMN IF NOT EXISTS kafka_partition UInt16,
    ADD COLUMN IF NOT EXISTS kafka_offset_max SimpleAggregateFunction(max, UInt64),
    MODIFY ORDER BY (tenant, site, machine, sensor, minute, kafka_partition);

ALTER TABLE readings_1m_mv MODIFY QUERY
SELECT tenant, site, machine, sensor, toStartOfMinute(ts) AS minute,
       count() AS readings, min(value) AS value_min, max(value) AS value_max,
       sum(value) AS value_sum, max(ts) AS last_ts,
       kafka_partition, max(kafka_offset) AS kafka_offset_max
FROM readings
GROUP BY tenant, site, machine, sensor, minute, kafka_partition;

ALTER TABLE readings_1h
    ADD COLUMN IF NOT EXISTS kafka_partition UInt16,
    ADD COLUMN IF NOT EXISTS kafka_offset_max SimpleAggregateFunction(max, UInt64),
    MODIFY ORDER BY (tenant, site, machine, sensor, hour, kafka_partition);

ALTER TABLE readings_1h_mv MODIFY QUERY
SELECT tenant, site, machine, sensor, toStartOfHour(ts) AS hour,
       count() AS readings, min(value) AS value_min, max(value) AS value_max,
       sum(value) AS value_sum, max(ts) AS last_ts,
       kafka_partition, max(kafka_offset) AS kafka_offset_max
FROM readings
GROUP BY tenant, site, machine, sensor, hour, kafka_partition
