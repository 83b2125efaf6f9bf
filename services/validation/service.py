"""Entry point: readings.normalized -> readings.valid (the shared start-up is in plantstream.entry)."""

from __future__ import annotations

from plantstream.entry import run_registry_processor
from plantstream.topics import READINGS_NORMALIZED
from validation.processor import ValidationProcessor


def main() -> None:
    run_registry_processor("validation", READINGS_NORMALIZED, ValidationProcessor)
