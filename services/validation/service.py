"""Entry point: readings.normalized -> readings.valid (the shared start-up is in plantstream.entry)."""

from __future__ import annotations

from plantstream.entry import ProcessorService
from plantstream.topics import READINGS_NORMALIZED
from validation.processor import ValidationProcessor

SERVICE = ProcessorService("validation", [READINGS_NORMALIZED], ValidationProcessor)
main = SERVICE.main
