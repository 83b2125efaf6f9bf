"""The archival service as a real process against the real broker and embedded ClickHouse:
SIGKILL in the middle of writing, restart, redelivery, poison records."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from archival_records import anomaly, codec, key, pipeline_outputs, reading_batch
from confluent_kafka import Consumer, Producer, TopicPartition

from plantstream.db import connect
from plantstream.db.query import find_endpoint, port_file
from plantstream.kafka import Output, consumer_config, producer_config
from plantstream.settings import Settings
from plantstream.topics import ALERTS, ANOMALIES, NOTIFICATIONS, READINGS_REJECTED, READINGS_VALID

from kafka_io import end_offsets, produce_all

ARCHIVED = (READINGS_VALID, READINGS_REJECTED, ANOMALIES, ALERTS, NOTIFICATIONS)


def start(env: dict[str, str], log: Path, **extra: str) -> subprocess.Popen:
    env = {**env, "PLANTSTREAM_QUERY_PORT": "0", **extra}
    return subprocess.Popen([sys.executable, "-m", "archival"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("a"))


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"archival exited with {proc.returncode} while waiting for {what}"
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def count(settings: Settings, sql: str) -> int:
    endpoint = find_endpoint(settings, timeout=1)
    if endpoint is None:
        return -1
    return int(endpoint.arrow(sql).column(0)[0].as_py())


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def archived_ids(settings: Settings) -> dict[str, list]:
    client = connect(settings.clickhouse_url)
    try:
        q = lambda sql: [r[0] if len(r) == 1 else tuple(r) for r in client.query(sql).result_rows]  # noqa: E731
        return {
            "readings": q("SELECT reading_id FROM readings"),
            "rejected": q("SELECT id FROM rejected WHERE stage != 'archival'"),
            "archival_dead": q("SELECT reason FROM rejected WHERE stage = 'archival' ORDER BY kafka_topic"),
            "anomalies": q("SELECT event_id FROM anomalies"),
            "alerts": q("SELECT alert_id, revision FROM alerts"),
            "notifications": q("SELECT attempt_id FROM notifications"),
        }
    finally:
        client.close()


def assigned_offsets(log: Path, since_line: int) -> dict[str, int]:
    """topic[partition] -> start offset, from the service's 'partitions assigned' log lines."""
    found = {}
    for line in log.read_text().splitlines()[since_line:]:
        if '"partitions assigned"' in line:
            for item in json.loads(line)["partitions"]:
                where, _, offset = item.rpartition("@")
                found[where] = int(offset)
    return found


def test_sigkill_mid_write_restart_and_redelivery_leave_every_record_once(
        settings: Settings, service_env: dict[str, str], tmp_path: Path) -> None:
    outs, expect = pipeline_outputs(settings, batches=1500)
    poison = [Output(READINGS_VALID.physical(settings), key("m1"), b"not avro at all"),
              Output(ANOMALIES.physical(settings), key("m2"),
                     codec.encode("anomaly_event", anomaly(99))[:-3])]  # truncated body
    produce_all(settings, outs[:800] + poison + outs[800:])
    total_readings = len(expect["readings"])
    log = tmp_path / "archival.log"

    # Small batches so that the kill lands between writes of one partition's data.
    proc = start(service_env, log, PLANTSTREAM_ARCHIVAL_BATCH="10", PLANTSTREAM_ARCHIVAL_MAX_WAIT="0.05")
    wait_for("first rows", lambda: count(settings, "SELECT count() FROM readings") > 0, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    partial = archived_ids(settings)["readings"]
    assert 0 < len(partial) < total_readings, "the kill must land in the middle of the archive"

    proc = start(service_env, log, PLANTSTREAM_ARCHIVAL_BATCH="200")
    wait_for("every reading", lambda: count(settings, "SELECT count() FROM readings") >= total_readings, proc)
    wait_for("alerts", lambda: count(settings, "SELECT count() FROM alerts") >= 30, proc)
    time.sleep(1.5)  # anything still pending (a duplicate) would land now
    stop(proc)
    assert not port_file(settings).exists()

    got = archived_ids(settings)
    assert got.pop("archival_dead") == ["malformed_avro", "not_avro"]  # anomalies, readings.valid
    for table, ids in got.items():
        assert len(ids) == len(set(ids)), f"duplicates in {table}"
        assert set(ids) == expect[table], f"{table} differs from what was produced"

    # Redelivery: the group's offsets go back to the start; the archive must not grow.
    group = Consumer(consumer_config(settings, "archival"))
    group.commit(offsets=[TopicPartition(spec.physical(settings), p, 0)
                          for spec in ARCHIVED for p in range(settings.partitions)], asynchronous=False)
    group.close()
    lines_before = len(log.read_text().splitlines())
    proc = start(service_env, log)
    sentinels = []
    producer = Producer(producer_config(settings))
    for p in range(settings.partitions):  # one new batch per partition, after everything else
        rec = reading_batch(f"late{p}", 0)
        sentinels += [r["reading_id"] for r in rec["readings"]]
        producer.produce(READINGS_VALID.physical(settings), codec.encode("reading_batch", rec), key("late"),
                         partition=p)
    assert producer.flush(30) == 0
    wait_for("sentinels", lambda: count(
        settings, "SELECT count() FROM readings WHERE machine LIKE 'late%'") == len(sentinels), proc)
    starts = assigned_offsets(log, lines_before)
    for spec in ARCHIVED:
        topic = spec.physical(settings)
        ends = end_offsets(settings, topic, settings.partitions)
        for p in range(settings.partitions):
            if spec is READINGS_VALID:
                assert starts[f"{topic}[{p}]"] == ends[p] - 1, "resumes after the archived offsets"
            elif ends[p]:
                assert starts[f"{topic}[{p}]"] == ends[p], "resumes after the archived offsets"
    stop(proc)
    again = archived_ids(settings)
    assert again.pop("archival_dead") == ["malformed_avro", "not_avro"]
    assert sorted(again["readings"]) == sorted(got["readings"] + sentinels)
    for table in ("rejected", "anomalies", "alerts", "notifications"):
        assert sorted(again[table]) == sorted(got[table]), f"redelivery changed {table}"


def test_poison_records_become_dead_letters_and_the_service_keeps_going(
        settings: Settings, service_env: dict[str, str], tmp_path: Path) -> None:
    valid = READINGS_VALID.physical(settings)
    bad_ts = reading_batch("m7", 1)
    bad_ts["readings"][3]["ts"] = 2**62  # year ~148 000: ClickHouse cannot store it
    produce_all(settings, [
        Output(valid, key("m7"), b"\xc3\x01" + b"\x00" * 8 + b"body"),  # unknown schema fingerprint
        Output(valid, key("m7"), codec.encode("anomaly_event", anomaly(1))),
        Output(valid, key("m7"), codec.encode("reading_batch", bad_ts)),
        Output(valid, key("m7"), codec.encode("reading_batch", reading_batch("m7", 2))),
    ])
    proc = start(service_env, tmp_path / "archival.log")
    wait_for("the good batch", lambda: count(settings, "SELECT count() FROM readings") == 20, proc)
    wait_for("three dead letters", lambda: count(settings, "SELECT count() FROM rejected") == 3, proc)
    endpoint = find_endpoint(settings)
    assert endpoint is not None
    rows = endpoint.arrow("SELECT reason, stage, source_topic, machine, length(original) AS n FROM rejected "
                          "ORDER BY source_offset").to_pylist()
    assert [r["reason"] for r in rows] == ["unknown_schema", "wrong_schema", "timestamp_out_of_range"]
    assert all(r["stage"] == "archival" and r["source_topic"] == valid and r["machine"] == "m7" for r in rows)
    assert rows[0]["n"] == 14  # the original bytes, kept
    stop(proc)
