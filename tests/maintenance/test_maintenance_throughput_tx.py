"""The maintenance service on transactional input, as validation writes ``readings.valid``.

Regression: faust's consumer advanced its committed offset past one transaction commit
marker per commit (``broker_commit_interval``, 1 s), so 3,000 records in 300 transactions
(~300 markers per partition) took ~5 minutes to commit although they were applied in
seconds; and it read uncommitted, so records of aborted upstream transactions were applied
(see ``plantstream.faustkafka``). Asserted here: the group commits every record within a
generous bound, and an aborted transaction's records are never seen (its garbage record is
not dead-lettered, the committed one is).
"""

from __future__ import annotations

from pathlib import Path

from maintenance_support import Service
from tx_input import produce_transactions, wait_committed_past

from anomaly.synthetic import SyntheticMachine, asset_record, stream
from plantstream.assets import publish_assets
from plantstream.avro import AvroCodec
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import READINGS_REJECTED, READINGS_VALID

from kafka_io import read_topic

SENSORS = [f"s{i}" for i in range(10)]
MACHINES, SAMPLES, PER_BATCH = 10, 600, 2  # 3,000 records of 20 readings
PER_TRANSACTION = 10
DRAIN_BOUND_S = 90.0  # measured ~10 s with the fix (start-up included); ~300 s with the bug


def test_transactional_input_is_committed_promptly_and_aborted_records_are_skipped(
        settings: Settings, service_env: dict[str, str], tmp_path: Path) -> None:
    codec = AvroCodec()
    topic = READINGS_VALID.physical(settings)
    ms = [SyntheticMachine("acme", "plant1", f"m{k}", SENSORS, seed=k) for k in range(MACHINES)]
    publish_assets(settings, [asset_record(m) for m in ms])
    records = [Output(topic, k, codec.encode("reading_batch", r)) for k, r in stream(ms, SAMPLES, PER_BATCH)]
    assert len(records) == 3000
    aborted = [Output(topic, m.key, b"aborted garbage " + m.key) for m in ms]
    garbage = Output(topic, ms[0].key, b"committed garbage")

    last = produce_transactions(settings, records[:1500], PER_TRANSACTION)
    produce_transactions(settings, aborted, PER_TRANSACTION, abort=True)
    for part in (produce_transactions(settings, records[1500:], PER_TRANSACTION),
                 produce_transactions(settings, [garbage], 1)):
        last |= {p: max(off, last.get(p, -1)) for p, off in part.items()}

    service = Service(service_env, tmp_path / "maintenance.log").start()
    try:
        wait_committed_past(settings, "maintenance", topic, last, DRAIN_BOUND_S, service.assert_running)
    finally:
        service.stop()

    dead = read_topic(settings, READINGS_REJECTED.physical(settings), idle=3)
    originals = [codec.decode(m.value(), "dead_letter")["original"] for m in dead]
    assert originals == [b"committed garbage"]
