"""Entry point of ``python -m anomaly``: readings.valid -> anomalies on the transactional loop
(the shared start-up is in plantstream.entry; the logic in anomaly.processor and
anomaly.scorer)."""

from __future__ import annotations

from anomaly.processor import AnomalyProcessor
from plantstream.entry import run_registry_processor
from plantstream.settings import Settings
from plantstream.topics import READINGS_VALID

SERVICE = "anomaly"


def main() -> None:
    wait = Settings.from_env().batch_wait_seconds
    run_registry_processor(SERVICE, READINGS_VALID, AnomalyProcessor, batch_size=2000, max_wait=wait)
