"""The anomaly service on transactional input, as validation writes ``readings.valid``.

Regression, kept since anomaly moved from faust to the transactional loop: the faust
version committed past one transaction marker per commit, so 3,000 records in 300
transactions took minutes to commit, and it read uncommitted records of aborted upstream
transactions. Asserted here: the group commits every record within a generous bound, and an
aborted transaction's records are never seen (its garbage record is not dead-lettered, the
committed one is).
"""

from __future__ import annotations

from dataclasses import replace

from tx_input import dead_letter_originals, wait_committed_past, write_mixed_valid_readings

from anomaly.service import SERVICE
from plantstream.avro import AvroCodec
from plantstream.settings import Settings
from plantstream.topics import READINGS_VALID

DRAIN_BOUND_S = 90.0  # measured ~5 s with the fix (in-process start-up included); ~600 s with the bug


def test_transactional_input_is_committed_promptly_and_aborted_records_are_skipped(
        settings: Settings) -> None:
    codec = AvroCodec()
    last = write_mixed_valid_readings(settings, codec)

    service = SERVICE.start(replace(settings, anomaly_warmup=100))  # the shipped service, in a thread
    try:
        wait_committed_past(settings, "anomaly", READINGS_VALID.physical(settings), last, DRAIN_BOUND_S,
                            service.assert_running)
    finally:
        service.stop()

    assert dead_letter_originals(settings, codec) == [b"committed garbage"]
