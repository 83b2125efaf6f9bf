"""The notifier on transactional input, as maintenance writes ``alerts``.

Regression for ``plantstream.faustkafka`` (the notifier is its faust user): faust-streaming
0.15's consumer advanced its committed offset past one transaction commit marker per commit
(``broker_commit_interval``, 1 s), so input written one transaction per few records took
minutes to commit although it was applied in seconds; and it read uncommitted, so records of
aborted upstream transactions were applied. Asserted here: the group commits every record
within a generous bound, and an aborted transaction's records are never seen (its garbage
record is not dead-lettered, the committed one is).
"""

from __future__ import annotations

import time
from pathlib import Path

from notifier_support import revision, start_notifier
from tx_input import produce_transactions, wait_committed_past

from plantstream.avro import AvroCodec
from plantstream.kafka import Output
from plantstream.lag import partition_lags
from plantstream.settings import Settings
from plantstream.topics import ALERTS, READINGS_REJECTED, machine_key

from kafka_io import read_topic

MACHINES, REVISIONS, PER_TRANSACTION = 20, 50, 5  # 1,000 revisions in 200 transactions
DRAIN_BOUND_S = 90.0  # a few seconds with the fix (start-up included); minutes with the bug


def test_transactional_alerts_are_committed_promptly_and_aborted_records_are_skipped(
        settings: Settings, service_env: dict[str, str], tmp_path: Path) -> None:
    codec = AvroCodec()
    topic = ALERTS.physical(settings)
    keys = [machine_key("acme", "p1", f"m{k}") for k in range(MACHINES)]
    records = [Output(topic, keys[k], codec.encode("alert_event", revision(r, r, machine=f"m{k}")),
                      [("plantstream-notify", b"raised")] if r == 1 else [])
               for r in range(1, REVISIONS + 1) for k in range(MACHINES)]
    aborted = [Output(topic, key, b"aborted garbage " + key) for key in keys]
    garbage = Output(topic, keys[0], b"committed garbage")

    half = len(records) // 2
    last = produce_transactions(settings, records[:half], PER_TRANSACTION)
    produce_transactions(settings, aborted, PER_TRANSACTION, abort=True)
    for part in (produce_transactions(settings, records[half:], PER_TRANSACTION),
                 produce_transactions(settings, [garbage], 1)):
        last |= {p: max(off, last.get(p, -1)) for p, off in part.items()}

    service = start_notifier(service_env, tmp_path / "notifier.log")  # no routes: follows, sends nothing
    try:
        wait_committed_past(settings, "notifier", topic, last, DRAIN_BOUND_S, service.assert_running)
        # every partition ends with a commit marker: the group must still reach the log end
        deadline = time.monotonic() + 30
        while (behind := [p for p in partition_lags(settings, "notifier") if p.committed != p.end]):
            service.assert_running()
            assert time.monotonic() < deadline, f"notifier group short of the log end: {behind}"
            time.sleep(1)
    finally:
        assert service.stop() == 0, service.tail()

    dead = read_topic(settings, READINGS_REJECTED.physical(settings), idle=3)
    recs = [codec.decode(m.value(), "dead_letter") for m in dead]
    assert [(r["original"], r["stage"], r["reason"]) for r in recs] == [
        (b"committed garbage", "notifier", "not_avro")]
