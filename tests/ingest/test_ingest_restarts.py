"""The real services as processes (``python -m ingest`` / ``python -m validation``): killed
with SIGKILL mid-stream and restarted, they lose and double nothing; ingest's duplicate
detection survives a restart."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from readings_support import (
    assets,
    collect,
    gateway_batch,
    gateway_output,
    now_us,
    publish,
    reading,
    send_paced,
    simulated_batches,
    start_service,
    stop_service,
)

from plantstream.avro import AvroCodec
from plantstream.settings import Settings
from plantstream.topics import READINGS_NORMALIZED, READINGS_REJECTED

from kafka_io import produce_all, read_topic


def test_sigkill_mid_stream_loses_and_doubles_nothing(settings: Settings, service_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    batches, records = simulated_batches(machines=6, seconds=600)
    publish(settings, records)
    outputs = [gateway_output(settings, b) for b in batches]
    outputs += [gateway_output(settings, b) for b in batches[:5]]  # a gateway re-sends five batches
    total = sum(len(b["readings"]) for b in batches) + sum(len(b["readings"]) for b in batches[:5])
    ingest = start_service("ingest", service_env, tmp_path)
    validation = start_service("validation", service_env, tmp_path)
    sender = threading.Thread(target=send_paced, args=(settings, outputs, 12.0))
    sender.start()
    try:
        time.sleep(5)
        ingest.kill()  # SIGKILL, mid-stream
        ingest.wait(10)
        ingest = start_service("ingest", service_env, tmp_path, copy=1)
        time.sleep(3)
        validation.kill()
        validation.wait(10)
        validation = start_service("validation", service_env, tmp_path, copy=1)
        sender.join(60)
        out = collect(settings, expect_readings=total, timeout=120)
    finally:
        sender.join(60)
        codes = [stop_service(ingest), stop_service(validation)]
    assert codes == [0, 0]  # SIGTERM: clean exit
    assert len(out.fates) == total
    assert out.unaccounted() == []  # every reading sent: exactly one fate
    assert max(out.valid_ids.values()) == 1
    assert out.reasons["duplicate_batch"] == 5
    assert sum(out.valid_ids.values()) > total * 0.5  # most of the factory's data is good


def test_duplicate_detection_survives_a_restart(settings: Settings, service_env: dict[str, str],
                                                tmp_path: Path) -> None:
    publish(settings, assets())
    t0 = now_us() - 10_000_000
    first = gateway_batch("batch-a", [reading("V1", t0, 1.0), reading("V1", t0 + 1, 2.0)])
    ingest = start_service("ingest", service_env, tmp_path)
    try:
        produce_all(settings, [gateway_output(settings, first)])
        read_topic(settings, READINGS_NORMALIZED.physical(settings), until=lambda ms: len(ms) >= 1,
                   timeout=60)
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(10)
        ingest = start_service("ingest", service_env, tmp_path, copy=1)
        again = dict(first, sent_at=now_us())
        later = gateway_batch("batch-b", [reading("V1", t0 + 2, 3.0)])
        produce_all(settings, [gateway_output(settings, again), gateway_output(settings, later)])
        normalized = read_topic(settings, READINGS_NORMALIZED.physical(settings),
                                until=lambda ms: len(ms) >= 2, timeout=60)
        dead = read_topic(settings, READINGS_REJECTED.physical(settings), until=lambda ms: len(ms) >= 1,
                          timeout=30)
    finally:
        assert stop_service(ingest) == 0
    codec = AvroCodec()
    batch_ids = [codec.decode(m.value(), "reading_batch")["batch_id"] for m in normalized]
    assert batch_ids == ["batch-a", "batch-b"]
    letters = [codec.decode(m.value(), "dead_letter") for m in dead]
    assert [(d["reason"], d["source_offset"]) for d in letters] == [("duplicate_batch", 1)]
    assert codec.decode(letters[0]["original"], "gateway_batch")["batch_id"] == "batch-a"
