"""Dead letters end to end on the real broker and embedded ClickHouse, services in-process:
batches for a machine not yet in the asset registry (unknown_machine) and readings of a tag not
yet mapped (unknown_tag) are dead-lettered with their key and headers, a 2 MB value becomes a
truncated dead letter that fits the size limit, all are archived in ``rejected``; after
``plantstream assets apply`` adds the machine and the sensor, ``plantstream deadletters
replay`` (a dry run first) re-sends them and the readings land in ``readings``; a second
replay doubles nothing; the truncated one is refused."""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import settings_env
from readings_support import (
    ASSET_DOC,
    SITE,
    TENANT,
    gateway_batch,
    gateway_output,
    now_us,
    reading,
    run_archival,
    run_ingest,
    run_validation,
)

from plantstream.assets import AssetFollower
from plantstream.avro import AvroCodec
from plantstream.cli.main import cli
from plantstream.db import connect
from plantstream.deadletter import HEADER_REPLAY_OF, HEADER_TOPIC, kafka_record_size
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import GATEWAY_READINGS, READINGS_NORMALIZED, READINGS_REJECTED, machine_key

from kafka_io import end_offsets, produce_all, read_topic

pytestmark = pytest.mark.integration
NEW_MACHINE = "press-02"
NEW_KEY = machine_key(TENANT, SITE, NEW_MACHINE)
TWO_MB = random.Random(11).randbytes(2_000_000)


def asset_file(path: Path, fixed: bool) -> Path:
    """The test registry; ``fixed`` adds the new machine and a new sensor (tag X9) to the old one."""
    doc = json.loads(json.dumps(ASSET_DOC))
    machines = doc["tenants"][0]["sites"][0]["machines"]
    if fixed:
        machines.append(dict(machines[0], id=NEW_MACHINE))
        machines[0]["sensors"].append({"id": "vibration_2", "tag": "X9", "unit": "mm/s", "valid": [0, 50]})
    path.write_text(yaml.safe_dump(doc))
    return path


def plantstream(monkeypatch: pytest.MonkeyPatch, settings: Settings, *args: str) -> Result:
    """The real CLI, in this process, configured from the environment like a user's shell."""
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def archive(settings: Settings) -> None:
    run_archival(settings)


def rows(settings: Settings, sql: str) -> list[tuple]:
    client = connect(settings.clickhouse_url)
    try:
        return [tuple(r) for r in client.query(sql).result_rows]
    finally:
        client.close()


def gateway_end(settings: Settings) -> int:
    return sum(end_offsets(settings, GATEWAY_READINGS.physical(settings), settings.partitions))


def test_unknown_machine_and_tag_dead_letters_are_replayed_after_a_registry_fix(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert plantstream(monkeypatch, settings, "assets", "apply",
                       str(asset_file(tmp_path / "assets.yaml", False))).exit_code == 0
    follower = AssetFollower(settings).start()
    try:
        t = now_us() - 5_000_000
        known = gateway_batch("known-1", [reading("V1", t + i, 1.0 + i) for i in range(3)]
                              + [reading("X9", t + i, 4.0 + i) for i in range(2)])  # X9: an unknown tag
        new = [gateway_batch(f"new-{b}", [reading("V1", t + 10 * b + i, 2.0 + i) for i in range(2)],
                             machine=NEW_MACHINE) for b in range(2)]
        outputs = [gateway_output(settings, known), gateway_output(settings, new[0], "json"),
                   gateway_output(settings, new[1])]
        outputs[1].headers.append(("x-site-note", b"line 3"))
        outputs.append(Output(GATEWAY_READINGS.physical(settings), NEW_KEY, TWO_MB, [("x-site-note", None)]))
        produce_all(settings, outputs)
        run_ingest(settings, follower.registry, idle=2)  # (validation runs once, after the replay)

        # every dead letter fits the size limit; the 2 MB one is cut, flagged, its length and hash kept
        dead = read_topic(settings, READINGS_REJECTED.physical(settings), until=lambda ms: len(ms) >= 5)
        assert all(kafka_record_size(m.key(), m.value(), m.headers()) <= settings.dead_letter_max_bytes
                   for m in dead)
        assert sorted(m.key() for m in dead) == [machine_key(TENANT, SITE, "press-01")] * 2 + [NEW_KEY] * 3
        gw_topic = GATEWAY_READINGS.physical(settings)
        assert all(dict(m.headers())[HEADER_TOPIC] == gw_topic.encode() for m in dead)
        archive(settings)
        [big] = rows(settings, "SELECT truncated, original_length, original_sha256, length(original), "
                               "original_header_keys FROM rejected WHERE reason = 'message_too_large'")
        assert big[:3] == (True, 2_000_000, hashlib.sha256(TWO_MB).hexdigest())
        assert 900_000 < big[3] < settings.dead_letter_max_bytes and big[4] == ["x-site-note"]
        unknown = rows(settings, "SELECT original_key, original_header_keys, original_header_values, "
                                 "truncated FROM rejected WHERE reason = 'unknown_machine' ORDER BY id")
        assert len(unknown) == 2 and all(u[0] == NEW_KEY.decode() and not u[3] for u in unknown)
        json_letter = next(u for u in unknown if "x-site-note" in u[1])
        assert dict(zip(json_letter[1], json_letter[2], strict=True))["x-site-note"] == "line 3"

        # a dry run lists them and sends nothing; the truncated one is refused with the reason
        sent_before = gateway_end(settings)
        select = ["--reason", "unknown_machine", "--machine", f"{TENANT}/{SITE}/{NEW_MACHINE}",
                  "--source-topic", "gateway.readings"]
        listed = plantstream(monkeypatch, settings, "deadletters", "list", *select)
        assert listed.exit_code == 0 and "unknown_machine" in listed.output
        dry = plantstream(monkeypatch, settings, "deadletters", "replay", *select, "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "would re-send 2 of 2 dead letters as 2 messages" in dry.output
        assert "nothing sent" in dry.output
        assert dry.output.count(f"{TENANT}/{SITE}/{NEW_MACHINE}") == 2
        refused = plantstream(monkeypatch, settings, "deadletters", "replay", "--reason", "message_too_large")
        assert refused.exit_code == 1
        assert "1 truncated" in refused.output and "nothing was sent" in refused.output
        assert gateway_end(settings) == sent_before

        # the registry fix, then the replay: the readings arrive
        assert plantstream(monkeypatch, settings, "assets", "apply",
                           str(asset_file(tmp_path / "assets.yaml", True))).exit_code == 0
        deadline = time.monotonic() + 20
        while follower.registry.machine(TENANT, SITE, NEW_MACHINE) is None:
            assert time.monotonic() < deadline, "the follower never saw the registry fix"
            time.sleep(0.1)
        done = plantstream(monkeypatch, settings, "deadletters", "replay", *select)
        assert done.exit_code == 0 and "re-sent 2 dead letters as 2 messages" in done.output, done.output
        # the two unknown-tag readings of one gateway message go back as one regrouped batch
        tags = plantstream(monkeypatch, settings, "deadletters", "replay", "--reason", "unknown_tag")
        assert tags.exit_code == 0 and "re-sent 2 dead letters as 1 message " in tags.output, tags.output
        assert gateway_end(settings) == sent_before + 3
        gateway = read_topic(settings, GATEWAY_READINGS.physical(settings), until=lambda ms: len(ms) >= 7)
        resent = [m for m in gateway if HEADER_REPLAY_OF in dict(m.headers() or ())]
        assert sorted(m.key() for m in resent) == [machine_key(TENANT, SITE, "press-01"), NEW_KEY, NEW_KEY]
        resent = [m for m in resent if m.key() == NEW_KEY]
        for m in resent:
            names = [k for k, _ in m.headers()]
            assert not any(k.startswith("__connect.") for k in names)
        json_copy = next(m for m in resent if ("x-site-note", b"line 3") in m.headers())
        assert json_copy.value() == outputs[1].value
        run_ingest(settings, follower.registry, idle=2)
        run_validation(settings, follower.registry, idle=2)
        archive(settings)
        got = rows(settings, "SELECT reading_id, sensor, value FROM readings ORDER BY reading_id")
        assert [r[0] for r in got[:7]] == ["known-1:0", "known-1:1", "known-1:2",
                                          "new-0:0", "new-0:1", "new-1:0", "new-1:1"]
        regrouped = got[7:]  # ingest gave them the replayed batch's id: replay:<source message>:<hash>:<i>
        assert [r[1:] for r in regrouped] == [("vibration_2", 4.0), ("vibration_2", 5.0)]
        assert all(r[0].startswith(f"replay:{GATEWAY_READINGS.physical(settings)}:") for r in regrouped)
        normalized = end_offsets(settings, READINGS_NORMALIZED.physical(settings), settings.partitions)

        # a second replay doubles nothing: ingest drops the batch ids it accepted (duplicate_batch
        # dead letters, nothing more on readings.normalized)
        again = plantstream(monkeypatch, settings, "deadletters", "replay", "--reason", "unknown_machine",
                            "--reason", "unknown_tag", "--source-topic", "gateway.readings")
        assert again.exit_code == 0 and "re-sent 4 dead letters as 3 messages" in again.output, again.output
        run_ingest(settings, follower.registry, idle=2)
        codec = AvroCodec()
        letters = [codec.decode(m.value(), "dead_letter") for m in read_topic(
            settings, READINGS_REJECTED.physical(settings), until=lambda ms: len(ms) >= 8)]
        dups = [d for d in letters if d["reason"] == "duplicate_batch"]
        assert len(dups) == 3 and len(letters) == 8
        assert all(HEADER_REPLAY_OF in [h["key"] for h in d["original_headers"]] for d in dups)
        assert end_offsets(settings, READINGS_NORMALIZED.physical(settings), settings.partitions) \
            == normalized
    finally:
        follower.stop()
