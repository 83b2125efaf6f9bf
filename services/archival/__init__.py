"""archival: Kafka topics -> ClickHouse, exactly once, plus read-only SQL in embedded mode."""
