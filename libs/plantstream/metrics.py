"""Per-service metrics: records in and out, dead letters by reason, batch latency, consumer lag
per partition, open alerts; served to Prometheus and, with ``OTEL_EXPORTER_OTLP_ENDPOINT``
set, pushed over OTLP (:mod:`plantstream.otlpmetrics`).

prometheus_client holds the numbers (one registry per process: the anomaly service's model
memory gauges live there too); the endpoint starts when ``PLANTSTREAM_METRICS_PORT`` is not 0.
Each copy writes the port it serves on to ``$PLANTSTREAM_HOME/run/<instance>.metrics`` so a
scraper (or a person) on a host running many copies can find them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge, Histogram, start_http_server

from plantstream.settings import METRICS_PORT_AUTO, Settings

log = logging.getLogger(__name__)

_RECORDS_IN = PromCounter("plantstream_records_in", "Kafka messages consumed", ["service"])
_RECORDS_OUT = PromCounter("plantstream_records_out", "Kafka messages produced", ["service", "topic"])
_DEAD = PromCounter("plantstream_dead_letters", "Dead letters produced", ["service", "reason"])
_LATENCY = Histogram("plantstream_batch_seconds", "Time to process and commit one batch", ["service"])
_LAG = Gauge("plantstream_consumer_lag",
             "Messages between this copy's consumer position and the partition's high watermark",
             ["service", "topic", "partition"])
_ALERTS_OPEN = Gauge("plantstream_alerts_open",
                     "Active (open or acknowledged) alerts of the machines this copy owns", ["service"])


class ServiceMetrics:
    """Counts what one service does; also exposed as Prometheus metrics."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.records_in = 0
        self.records_out: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.batches = 0
        self.lags: dict[tuple[str, int], int] = {}
        self._open_alerts: dict[Any, int] = {}
        self._records_in = _RECORDS_IN.labels(service)
        self._latency = _LATENCY.labels(service)

    def batch(self, n_in: int, outputs: Sequence[Any], seconds: float) -> None:
        self.batches += 1
        self.records_in += n_in
        self._records_in.inc(n_in)
        self._latency.observe(seconds)
        if outputs:
            per_topic = Counter(out.topic for out in outputs)
            for topic, n in per_topic.items():
                self.records_out[topic] += n
                _RECORDS_OUT.labels(self.service, topic).inc(n)

    def dead_letter(self, reason: str, n: int = 1) -> None:
        self.dead_letters[reason] += n
        _DEAD.labels(self.service, reason).inc(n)

    def lag(self, topic: str, partition: int, messages: int) -> None:
        """Consumer lag of one assigned partition."""
        self.lags[(topic, partition)] = messages
        _LAG.labels(self.service, topic, str(partition)).set(messages)

    def forget_lag(self, topic: str, partition: int) -> None:
        """The partition moved to another copy: stop reporting its lag here."""
        if self.lags.pop((topic, partition), None) is not None:
            try:
                _LAG.remove(self.service, topic, str(partition))
            except KeyError:
                pass

    def open_alerts(self, machine: Any, active: int) -> None:
        """Active alerts of one machine now (the gauge is the sum over machines)."""
        if active:
            self._open_alerts[machine] = active
        else:
            self._open_alerts.pop(machine, None)
        _ALERTS_OPEN.labels(self.service).set(sum(self._open_alerts.values()))


def metrics_file(settings: Settings) -> Path:
    return settings.home / "run" / f"{settings.instance}.metrics"


def serve(settings: Settings, service: str) -> int:
    """Start the Prometheus endpoint (``PLANTSTREAM_METRICS_PORT``; 0: none, auto: a free
    port) and, with an OTLP endpoint configured, the OTLP metrics push. Returns the port
    served on (0: none) and records it in :func:`metrics_file`."""
    if settings.otlp_endpoint:
        from plantstream.otlpmetrics import start_otlp_metrics

        start_otlp_metrics(service, settings)
    if settings.metrics_port == 0:
        return 0
    server, _thread = start_http_server(0 if settings.metrics_port == METRICS_PORT_AUTO
                                        else settings.metrics_port)
    port = int(server.server_port)
    path = metrics_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{port}\n")
    log.info("metrics endpoint", extra={"port": port, "url": f"http://127.0.0.1:{port}/metrics"})
    return port
