"""OTLP export of the service's Prometheus metrics, for sites that run an OpenTelemetry
collector instead of (or beside) a Prometheus scraper.

The numbers live once, in prometheus_client's registry (what the ``/metrics`` endpoint
serves). Here an OpenTelemetry MeterProvider with a periodic OTLP/HTTP reader (interval:
``OTEL_METRIC_EXPORT_INTERVAL``, default 60 s) observes them at each export: counters as
observable counters, gauges as observable gauges, histograms as their ``_count`` and ``_sum``
counters. Nothing runs on the hot path. Metric families registered later (the anomaly
service's model gauges are created lazily) are picked up by a rescan every few seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from prometheus_client import REGISTRY

from plantstream.settings import Settings

PREFIX = "plantstream_"
RESCAN_SECONDS = 5.0

_started: OtlpMetricsBridge | None = None


def _observations(family_name: str, sample_name: str) -> Iterable[Observation]:
    for family in REGISTRY.collect():
        if family.name != family_name:
            continue
        for s in family.samples:
            if s.name == sample_name:
                yield Observation(s.value, dict(s.labels))


class OtlpMetricsBridge:
    """Declares one observable OpenTelemetry instrument per plantstream Prometheus sample series."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.declared: set[str] = set()
        self._stop = threading.Event()

    def scan(self) -> None:
        for family in REGISTRY.collect():
            if not family.name.startswith(PREFIX):
                continue
            if family.type == "counter":
                self._declare(family.name, family.name + "_total", family.documentation, counter=True)
            elif family.type == "gauge":
                self._declare(family.name, family.name, family.documentation, counter=False)
            elif family.type == "histogram":
                self._declare(family.name, family.name + "_count", family.documentation, counter=True)
                self._declare(family.name, family.name + "_sum", family.documentation, counter=True)

    def _declare(self, family: str, sample: str, doc: str, *, counter: bool) -> None:
        if sample in self.declared:
            return
        self.declared.add(sample)

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            return list(_observations(family, sample))

        make: Any = self.meter.create_observable_counter if counter else self.meter.create_observable_gauge
        make(sample, callbacks=[callback], description=doc)

    def run(self) -> None:
        while not self._stop.wait(RESCAN_SECONDS):
            self.scan()

    def stop(self) -> None:
        self._stop.set()


def start_otlp_metrics(service: str, settings: Settings) -> OtlpMetricsBridge:
    """Start pushing this process's plantstream metrics over OTLP/HTTP (once per process)."""
    global _started
    if _started is not None:
        return _started
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
        resource=Resource.create({"service.name": service, "service.instance.id": settings.instance}))
    bridge = OtlpMetricsBridge(provider.get_meter(f"plantstream.{service}"))
    bridge.scan()
    threading.Thread(target=bridge.run, name="otlp-metrics-rescan", daemon=True).start()
    _started = bridge
    return bridge
