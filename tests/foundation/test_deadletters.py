"""Dead letters as records (pure logic, no broker): Kafka Connect's layout (original key and
headers kept, ``__connect.errors.*`` context headers), the size bound (the whole Kafka record
fits PLANTSTREAM_DEAD_LETTER_MAX_BYTES, the original cut with its full length and hash kept),
v1 <-> v2 schema evolution and the headers a replay re-sends."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from pathlib import Path

import pytest

from plantstream.avro import AvroCodec
from plantstream.cli.deadletters import Letter, Selection, regrouped_batch, resends
from plantstream.deadletter import (
    CONTENT_TYPE_READING_JSON,
    HEADER_EXCEPTION_CLASS,
    HEADER_EXCEPTION_MESSAGE,
    HEADER_ID,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_REPLAY_OF,
    HEADER_STAGE,
    HEADER_TOPIC,
    DeadLetters,
    DeadLetterTooLarge,
    Source,
    kafka_record_size,
    replay_headers,
)
from plantstream.errors import PlantstreamError
from plantstream.gateway.contract import decode_gateway_message
from plantstream.settings import Settings

codec = AvroCodec()
SETTINGS = Settings(home=Path("/nonexistent"), kafka_bootstrap="127.0.0.1:1", clickhouse_url="chdb://memory",
                    topic_prefix="t.")
KEY = b"acme/plant1/press-01"
HEADERS = [("content-type", b"application/json"), ("ps-gateway", b"gw-1"), ("empty", None)]
TWO_MB = random.Random(3).randbytes(2_000_000)


def source(value: bytes, headers: list | None = None, key: bytes | None = KEY) -> Source:
    return Source("t.gateway.readings", 2, 41, value, HEADERS if headers is None else headers, key)


def test_a_dead_letter_keeps_the_original_key_and_headers_and_carries_connect_error_headers() -> None:
    out = DeadLetters(SETTINGS, "ingest").make(
        source(b'{"bad":'), "malformed_json", "not JSON: line 1", exception=ValueError("line 1"))
    assert (out.topic, out.key) == ("t.readings.rejected", KEY)
    headers = dict(out.headers)
    assert {k: headers[k] for k in (HEADER_TOPIC, HEADER_PARTITION, HEADER_OFFSET, HEADER_STAGE,
                                     HEADER_REASON, HEADER_ID, HEADER_EXCEPTION_CLASS,
                                     HEADER_EXCEPTION_MESSAGE)} == {
        "__connect.errors.topic": b"t.gateway.readings", "__connect.errors.partition": b"2",
        "__connect.errors.offset": b"41", "__connect.errors.stage": b"ingest",
        "__plantstream.errors.reason": b"malformed_json",
        "__plantstream.errors.id": b"t.gateway.readings:2:41:-1",
        "__connect.errors.exception.class.name": b"ValueError",
        "__connect.errors.exception.message": b"not JSON: line 1"}
    rec = codec.decode(out.value, "dead_letter")
    assert rec["original"] == b'{"bad":' and rec["truncated"] is False
    assert rec["original_key"] == KEY
    assert rec["original_headers"] == [{"key": k, "value": v} for k, v in HEADERS]
    assert rec["original_length"] == 7 and rec["original_sha256"] == hashlib.sha256(b'{"bad":').hexdigest()
    assert rec["content_type"] == "application/json"


def test_without_an_original_key_the_dead_letter_is_keyed_by_machine_and_names_no_exception_class() -> None:
    out = DeadLetters(SETTINGS, "ingest").make(source(b"x", key=None), "unknown_machine", "add it",
                                               tenant="acme", site="plant1", machine="press-09")
    assert out.key == b"acme/plant1/press-09"
    assert HEADER_EXCEPTION_CLASS not in dict(out.headers)
    assert codec.decode(out.value, "dead_letter")["original_key"] is None


@pytest.mark.parametrize("limit", [1_000_000, 50_000])
def test_a_2mb_original_is_cut_so_the_whole_record_fits_and_its_length_and_hash_are_kept(limit: int) -> None:
    dead = DeadLetters(replace(SETTINGS, dead_letter_max_bytes=limit), "ingest")
    out = dead.make(source(TWO_MB), "message_too_large", "over 1 MiB")
    size = kafka_record_size(out.key, out.value, out.headers)
    assert limit - 16 <= size <= limit  # fits, and the cut is no deeper than needed
    rec = codec.decode(out.value, "dead_letter")
    assert rec["truncated"] is True
    assert TWO_MB.startswith(rec["original"]) and len(rec["original"]) > limit - 2_000
    assert rec["original_length"] == 2_000_000
    assert rec["original_sha256"] == hashlib.sha256(TWO_MB).hexdigest()


def test_an_original_that_fits_is_not_cut() -> None:
    value = random.Random(4).randbytes(900_000)
    rec = codec.decode(DeadLetters(SETTINGS, "ingest").make(source(value), "unknown_machine", "x").value,
                       "dead_letter")
    assert rec["original"] == value and rec["truncated"] is False


def test_a_hostile_envelope_is_cut_too_so_even_that_dead_letter_fits() -> None:
    dead = DeadLetters(replace(SETTINGS, dead_letter_max_bytes=20_000), "ingest")
    huge_id = "m" * 300_000
    headers = [(f"h{i}", b"v" * 1000) for i in range(100)]
    out = dead.make(source(b"payload", headers=headers, key=b"k" * 50_000), "invalid_batch",
                    f"machine {huge_id} is too long", tenant="acme", site="plant1", machine=huge_id,
                    sensor=huge_id)
    assert kafka_record_size(out.key, out.value, out.headers) <= 20_000
    rec = codec.decode(out.value, "dead_letter")
    assert rec["truncated"] is True and rec["original"] == b"" and rec["original_headers"] == []
    assert rec["machine"] == huge_id[:256] and len(rec["original_key"]) == 256
    assert rec["original_length"] == 7 and rec["original_sha256"] == hashlib.sha256(b"payload").hexdigest()


def test_a_header_name_that_is_not_unicode_text_is_kept_escaped() -> None:
    out = DeadLetters(SETTINGS, "ingest").make(source(b"x", headers=[("bad\ud800", b"v")]), "invalid_batch",
                                               "y")
    kept = codec.decode(out.value, "dead_letter")["original_headers"]
    assert kept == [{"key": "bad\\ud800", "value": b"v"}]


def test_a_limit_too_small_for_any_dead_letter_is_a_clear_configuration_error() -> None:
    dead = DeadLetters(replace(SETTINGS, dead_letter_max_bytes=300), "ingest")
    with pytest.raises(DeadLetterTooLarge, match="PLANTSTREAM_DEAD_LETTER_MAX_BYTES=300"):
        dead.make(source(b"x" * 1000), "invalid_batch", "y" * 200)


def test_v1_dead_letters_read_as_v2_with_defaults_and_v2_reads_as_v1() -> None:
    v1 = {"id": "a:0:1:-1", "tenant": "acme", "site": "s", "machine": "m", "stage": "ingest",
          "reason": "unknown_machine", "detail": "d", "source_topic": "a", "source_partition": 0,
          "source_offset": 1, "original": b"raw", "truncated": False, "rejected_at": 1}
    as_v2 = codec.decode(codec.encode("dead_letter", v1, version=1), "dead_letter")
    assert as_v2["original_key"] is None and as_v2["original_headers"] == []
    assert as_v2["original_length"] is None and as_v2["original_sha256"] is None
    v2_bytes = DeadLetters(SETTINGS, "ingest").make(source(b"raw"), "unknown_machine", "d").value
    as_v1 = codec.decode(v2_bytes, "dead_letter", version=1)
    assert as_v1["original"] == b"raw" and "original_key" not in as_v1


def test_a_replay_resends_the_original_headers_without_error_context_and_marks_itself() -> None:
    original = [("content-type", b"application/json"), ("__connect.errors.topic", b"x"),
                ("__plantstream.errors.reason", b"r"), (HEADER_REPLAY_OF, b"older:0:1:-1"), ("empty", None)]
    assert replay_headers(original, "t.gateway.readings:2:41:-1") == [
        ("content-type", b"application/json"), ("empty", None),
        (HEADER_REPLAY_OF, b"t.gateway.readings:2:41:-1")]


def test_the_replay_selection_quotes_its_filters_and_checks_the_machine() -> None:
    where = Selection(reasons=("unknown_machine",), machine="acme/plant1/o'brien",
                      source_topics=("gateway.readings",)).where("t.")
    assert "reason IN ('unknown_machine')" in where
    assert "machine = 'o\\'brien'" in where
    assert "source_topic IN ('gateway.readings', 't.gateway.readings')" in where
    with pytest.raises(PlantstreamError, match="tenant/site/machine"):
        Selection(machine="press-01").where("")


def letter(id_: str, content_type: str | None = CONTENT_TYPE_READING_JSON, truncated: bool = False) -> Letter:
    return Letter(id_, "acme", "plant1", "press-01", "ingest", "unknown_tag", "t.gateway.readings", "",
                  truncated, 10, KEY, tuple(HEADERS), 10, content_type)


def test_ingest_reading_dead_letters_of_one_message_replay_as_one_gateway_batch() -> None:
    a, b = letter("t.gateway.readings:2:41:3"), letter("t.gateway.readings:2:41:4")
    other, whole = letter("t.gateway.readings:0:5:0"), letter("t.gateway.readings:1:9:-1", "application/json")
    assert resends([a, other, b, whole]) == [[a, b], [other], [whole]]
    readings = {a.id: b'{"tag":"X9","ts":5,"value":4.0,"unit":null,"quality":192}',
                b.id: b'{"tag":"X9","ts":6,"value":5.0,"unit":null,"quality":192}'}
    value, headers = regrouped_batch([a, b], readings, now_us=77)
    batch = decode_gateway_message(value, headers)
    assert (batch["tenant"], batch["machine"], batch["gateway"], batch["sent_at"]) == (
        "acme", "press-01", "gw-1", 77)
    assert [(r["tag"], r["ts"], r["value"]) for r in batch["readings"]] == [("X9", 5, 4.0), ("X9", 6, 5.0)]
    assert batch["batch_id"].startswith("replay:t.gateway.readings:2:41:")
    again = regrouped_batch([a, b], readings, now_us=99)[0]
    assert decode_gateway_message(again, headers)["batch_id"] == batch["batch_id"]  # ingest drops a copy
    assert dict(headers)[HEADER_REPLAY_OF] == f"{a.id},{b.id}".encode()
    assert ("content-type", b"application/json") in headers and ("empty", None) in headers


def test_what_replay_refuses() -> None:
    assert letter("t.gateway.readings:2:41:-1", truncated=True).refusal == "truncated"
    validation_reading = letter("t.readings.normalized:0:3:7", "application/vnd.plantstream.avro; x")
    assert validation_reading.refusal == "per-reading"
    assert letter("t.gateway.readings:2:41:3").refusal is None
