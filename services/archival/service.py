"""Entry point of the archival service: settings, logging, schema, then the sink loop.

In embedded mode (``chdb://``) it also serves read-only SQL on loopback, because no other
process can open the data directory while this one holds it.
"""

from __future__ import annotations

from archival.query_server import QueryServer
from archival.sink import ArchivalSink
from plantstream.db import apply_retention, connect, embedded_path, migrate
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.runner import StopFlag
from plantstream.settings import Settings
from plantstream.sinkloop import run_sink
from plantstream.telemetry import setup_tracing


def main() -> None:
    s = Settings.from_env()
    log = setup_logging("archival", s.log_level, s.log_format)
    setup_tracing("archival", s)
    serve(s, "archival")
    stop = StopFlag().install()
    writer = connect(s.clickhouse_url)
    applied = migrate(writer, ttl_days=s.clickhouse_ttl_days)
    retention = apply_retention(writer, s.clickhouse_ttl_days)
    log.info("clickhouse ready", extra={"migrations": applied, "retention_changed": retention,
                                        "ttl_days": s.clickhouse_ttl_days})
    server = None
    if embedded_path(s.clickhouse_url) is not None:
        server = QueryServer(lambda: connect(s.clickhouse_url), s)
        server.start()
    metrics = ServiceMetrics("archival")
    sink = ArchivalSink(writer, s, metrics)
    try:
        run_sink(sink, s, sink.topics, "archival", batch_size=s.archival_batch,
                 max_wait=s.archival_max_wait, stop=stop, metrics=metrics)
    finally:
        if server is not None:
            server.stop()
        log.info("archival stopped", extra={"rows_written": sink.rows_written})
