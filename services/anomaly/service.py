"""Entry point of ``python -m anomaly``: readings.valid -> anomalies on the transactional loop
(the shared start-up is in plantstream.entry; the logic in anomaly.processor and
anomaly.scorer)."""

from __future__ import annotations

from anomaly.processor import AnomalyProcessor
from plantstream.entry import ProcessorService
from plantstream.topics import READINGS_VALID

SERVICE = ProcessorService("anomaly", [READINGS_VALID], AnomalyProcessor, batch_size=2000, batched=True)
main = SERVICE.main
