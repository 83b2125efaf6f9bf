"""The faust-streaming app: readings.valid in, anomalies out, model state in a table.

Why these choices:

- Raw bytes in and out (``AvroCodec`` does the Avro), so faust's own codecs never touch the
  platform's records.
- The table ``models`` holds each machine's ``model_snapshot`` record; its changelog
  (``<prefix>anomaly-models-changelog``, compacted, created with the topic catalog because
  broker auto-creation is off and faust is not allowed to declare topics) is what a restarted
  or newly assigned copy recovers from. Snapshots are written every N rows or T seconds
  per machine (bounded cost), and for every machine with unsaved rows when partitions are
  revoked (shutdown, rebalance).
- Outputs go to the same partition number as their input, so ``anomalies`` stays
  co-partitioned with ``readings.valid`` whatever partitioner the upstream producers use.
- Input is read at least once, read_committed (``plantstream.faustkafka.App``: records of
  aborted upstream transactions are never seen, and commits move past transaction markers);
  the row assembler skips sample times the model has already seen, so redeliveries do not
  train the model twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from faust.types import TP
from opentelemetry import trace
from opentelemetry.trace import Tracer

from anomaly.scorer import Scorer
from plantstream import faustkafka
from plantstream.kafka import Output, faust_group_options
from plantstream.metrics import ServiceMetrics
from plantstream.settings import Settings
from plantstream.telemetry import batch_attributes, inject_headers, kafka_attributes, message_span
from plantstream.topics import ANOMALIES, ANOMALY_MODELS, READINGS_REJECTED, READINGS_VALID

log = logging.getLogger(__name__)

TABLE = "models"
APP_SUFFIX = "anomaly"
MEMORY_REPORT_S = 30.0
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def app_id(settings: Settings) -> str:
    """The consumer group and faust app id; the table changelog is ``<id>-models-changelog``."""
    return settings.topic_prefix + APP_SUFFIX


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]


def build_app(settings: Settings, scorer: Scorer, metrics: ServiceMetrics,
              tracer: Tracer | None = None) -> faust.App:
    """A faust app wired to ``scorer``; run it with ``anomaly.service.run_worker``."""
    tracer = tracer or trace.get_tracer("plantstream.anomaly")
    datadir = settings.home / "anomaly" / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faustkafka.App(  # faust.App, fixed for transactional (gapped) input topics
        app_id(settings),
        broker=broker_urls(settings.kafka_bootstrap),
        datadir=str(datadir),
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,  # topics come from the catalog (plantstream topics create)
        topic_disable_leader=True,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_commit_interval=2.0,
        **faust_group_options(),
        producer_acks=-1,
        producer_max_request_size=4 * 1024 * 1024,
        table_standby_replicas=0,
    )
    changelog = app.topic(ANOMALY_MODELS.physical(settings), partitions=settings.partitions,
                          compacting=True, internal=True, **RAW)
    models = app.Table(TABLE, default=None, partitions=settings.partitions, changelog_topic=changelog,
                       key_type=bytes, value_type=bytes)  # bytes types: raw serializers
    source = app.topic(READINGS_VALID.physical(settings), **RAW)
    sink = app.topic(ANOMALIES.physical(settings), **RAW)
    rejected = app.topic(READINGS_REJECTED.physical(settings), **RAW)
    source_name = READINGS_VALID.physical(settings)
    sink_name = ANOMALIES.physical(settings)
    last_report = [time.monotonic()]

    def lookup(key: bytes) -> bytes | None:
        return models.get(key)

    @app.agent(source, name="score")
    async def score(stream: Any) -> None:
        async for event in stream.events():
            t0 = time.perf_counter()
            msg = event.message
            key = event.key
            with message_span(tracer, "anomaly.score", msg.headers,
                              kafka_attributes(msg.topic, msg.partition, msg.offset)
                              | batch_attributes(event.value)) as span:
                try:
                    out = scorer.handle(key, event.value, msg.partition, msg.offset, lookup)
                except Exception as exc:  # a bug must not stop the machine's stream: dead-letter it
                    log.exception("scoring failed; message dead-lettered",
                                  extra={"partition": msg.partition, "offset": msg.offset})
                    out = scorer.failed(event.value, msg.partition, msg.offset, exc)
                key = out.key or key
                outputs = [Output(sink_name, key, v) for v in out.events]
                if out.events:
                    span.set_attribute("plantstream.anomaly_events", len(out.events))
                    headers = inject_headers()
                    for value in out.events:
                        await sink.send(key=key, value=value, partition=msg.partition, headers=headers)
                if out.dead_letter is not None:
                    dl = out.dead_letter
                    outputs.append(dl)
                    await rejected.send(key=dl.key, value=dl.value, headers=dl.headers,
                                        partition=msg.partition)
            if out.snapshot is not None:
                models[key] = out.snapshot
            metrics.batch(1, outputs, time.perf_counter() - t0)
            now = time.monotonic()
            if now - last_report[0] >= MEMORY_REPORT_S:
                last_report[0] = now
                report_memory(scorer)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == source_name}
        saved = scorer.snapshot_all(parts)
        for key, partition, snap in saved:
            models.send_changelog(partition, key, snap)
        if saved:
            await app.producer.flush()
        dropped = scorer.drop_partitions(parts)
        log.info("partitions revoked", extra={"partitions": sorted(parts), "snapshots": len(saved),
                                              "machines_dropped": dropped})

    @app.on_before_shutdown.connect
    async def on_shutdown(app: faust.App, **_: Any) -> None:
        # The consumer has stopped; the producer is flushed right after this signal.
        saved = scorer.snapshot_all()
        for key, partition, snap in saved:
            if partition >= 0:
                models.send_changelog(partition, key, snap)
        log.info("snapshots written at shutdown", extra={"snapshots": len(saved)})

    return app


def report_memory(scorer: Scorer) -> dict[str, Any]:
    """Log and export per-machine model memory (snapshot bytes)."""
    from anomaly.metrics import export_memory

    rep = scorer.memory_report()
    export_memory(rep)
    log.info("model memory", extra=rep)
    return rep
