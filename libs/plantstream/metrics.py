"""Per-service counters: records in and out, dead letters by reason, batch latency.

Kept in-process and, when ``PLANTSTREAM_METRICS_PORT`` is set, served to Prometheus.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram, start_http_server

_RECORDS_IN = PromCounter("plantstream_records_in", "Kafka messages consumed", ["service"])
_RECORDS_OUT = PromCounter("plantstream_records_out", "Kafka messages produced", ["service", "topic"])
_DEAD = PromCounter("plantstream_dead_letters", "Dead letters produced", ["service", "reason"])
_LATENCY = Histogram("plantstream_batch_seconds", "Time to process and commit one batch", ["service"])


class ServiceMetrics:
    """Counts what one service does; also exposed as Prometheus metrics."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.records_in = 0
        self.records_out: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.batches = 0

    def batch(self, n_in: int, outputs: Sequence[Any], seconds: float) -> None:
        self.batches += 1
        self.records_in += n_in
        _RECORDS_IN.labels(self.service).inc(n_in)
        _LATENCY.labels(self.service).observe(seconds)
        for out in outputs:
            self.records_out[out.topic] += 1
            _RECORDS_OUT.labels(self.service, out.topic).inc()

    def dead_letter(self, reason: str, n: int = 1) -> None:
        self.dead_letters[reason] += n
        _DEAD.labels(self.service, reason).inc(n)


def serve(port: int) -> None:
    """Start the Prometheus endpoint on ``port`` (0: do nothing)."""
    if port:
        start_http_server(port)
