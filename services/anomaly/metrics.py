"""Prometheus gauges for the anomaly service's model memory (the issue's per-machine budget)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Gauge

_MACHINES = Gauge("plantstream_anomaly_machines", "Machines with a model in this copy")
_BYTES_MAX = Gauge("plantstream_anomaly_model_bytes_max", "Largest per-machine model (snapshot bytes)")
_BYTES_TOTAL = Gauge("plantstream_anomaly_model_bytes_total", "Sum of per-machine model sizes")


def export_memory(report: Mapping[str, float]) -> None:
    _MACHINES.set(report["machines"])
    _BYTES_MAX.set(report["bytes_max"])
    _BYTES_TOTAL.set(report["bytes_total"])
