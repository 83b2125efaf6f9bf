"""Hostile input through the real pipeline: every case below is produced to the real
``gateway.readings`` topic in one go, then the real ingest, validation and archival loops run
in-process, each once until idle, against the real broker and embedded ClickHouse. Every
message must be accounted for in ClickHouse (rows of ``readings`` or ``rejected``, found by
the message's partition/offset), each with the outcome its line names, and no loop may die.

The table doubles as documentation of what the platform does with each kind of bad input:
``msg:<reason>`` is one dead letter for the whole message; otherwise the line lists the fate
of each reading, comma-separated (``ok``: stored in ``readings``; else its reason code).
The services' loops are in-process (``run_processor``/``run_sink`` with ``idle_exit_after``),
so the whole table runs in seconds; a loop that died would raise out of its run here.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from readings_support import (
    MACHINE,
    SITE,
    TENANT,
    account,
    assets,
    gateway_batch,
    now_us,
    reading,
    run_archival,
    run_ingest,
    run_validation,
    sent_messages,
)

from plantstream.assets import AssetRegistry
from plantstream.avro import CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, MAGIC, AvroCodec
from plantstream.db import connect
from plantstream.gateway.contract import (
    DEFAULT_LIMITS,
    encode_gateway_batch,
    encode_json_batch,
)
from plantstream.kafka import Output
from plantstream.readingbatch import long_bytes
from plantstream.settings import Settings
from plantstream.topics import GATEWAY_READINGS, machine_key

from kafka_io import produce_all, read_all

CASE_HEADER = "x-test-case"
KEY = machine_key(TENANT, SITE, MACHINE)
AVRO, JSON = CONTENT_TYPE_AVRO.encode(), CONTENT_TYPE_JSON.encode()
_clock = [0]  # the last timestamp ts() gave; hostile_cases() starts it two minutes ago


def ts() -> int:
    """The next in-order timestamp, a millisecond after the last (all valid readings go to the
    same sensor, in table order, so each must be after the one before)."""
    _clock[0] += 1000
    return _clock[0]


def batch(batch_id: str, n: int = 1, **fields: Any) -> dict[str, Any]:
    readings = [reading("V1", ts(), 1.0) for _ in range(n)]
    return {**gateway_batch(batch_id, readings), **fields}


def rfc3339(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).isoformat()


def avro(b: dict[str, Any]) -> bytes:
    return encode_gateway_batch(b, "avro")[0]


def js(doc: Any) -> bytes:
    return encode_json_batch(doc)


def jtext(b: dict[str, Any], **raw: str) -> bytes:
    """JSON of ``b`` with fields replaced by raw JSON text (escapes json.dumps would not write)."""
    text = encode_json_batch({k: v for k, v in b.items() if k not in raw}).decode()
    extra = "".join(f',"{k}":{v}' for k, v in raw.items())
    return (text[:-1] + extra + "}").encode()


def with_reading(b: dict[str, Any], **raw: str) -> bytes:
    """JSON of ``b`` whose first reading has fields given as raw JSON text."""
    r = dict(b["readings"][0])
    for k in raw:
        r.pop(k)
    body = encode_json_batch(r).decode()[:-1] + "".join(f',"{k}":{v}' for k, v in raw.items()) + "}"
    text = encode_json_batch({**b, "readings": []}).decode().replace('"readings":[]', f'"readings":[{body}]')
    return text.encode()


def patched(b: dict[str, Any], old: bytes, new: bytes) -> bytes:
    data = avro(b)
    assert data.count(old) == 1
    return data.replace(old, new)


ASSET = {"tenant": TENANT, "site": SITE, "machine": MACHINE, "machine_type": "press", "description": None,
         "sensors": [], "updated_at": 0}


def overlong_quality() -> bytes:
    """Avro whose quality is the varint of 2**40: fastavro reads it into the schema's int."""
    data = avro(batch("q-2p40"))
    assert data.endswith(long_bytes(192) + b"\x00")
    return data[:-3] + long_bytes(2**40) + b"\x00"


@dataclass
class Case:
    """One hostile message and what must become of it: ``msg:<reason>`` (one dead letter for
    the whole message) or the fate of each reading, comma-separated (``ok``: in ``readings``)."""

    name: str
    value: bytes | None
    expect: str
    headers: list[tuple[str, bytes | None]] | None = None
    key: bytes | None = KEY


def V(t: int, value: float = 1.0, tag: str = "V1", unit: str | None = None) -> dict[str, Any]:
    """One reading (of the vibration sensor unless told)."""
    return reading(tag, t, value, unit)


def rs(batch_id: str, *readings: dict[str, Any]) -> dict[str, Any]:
    """A batch with exactly these readings."""
    return {**batch(batch_id), "readings": list(readings)}


B = batch
CT = "content-type"
X10K = "x" * 10_000
DEEP_OK = '{"meta":' + '{"a":' * 20 + "1" + "}" * 20 + "}"  # 22 deep with the batch: within 32
BAD_KEY = machine_key(TENANT, SITE, "press-02")
EVIL_KEY = machine_key("evil", SITE, MACHINE)
GHOST_KEY = machine_key(TENANT, SITE, "ghost")
MAX64, MIN64 = 2**63 - 1, -(2**63)
DEEP_NO = "[" * 32 + "]" * 32  # 33 deep with the batch
OVER = DEFAULT_LIMITS.max_readings + 1


def hostile_cases() -> list[Case]:
    """The table, stamped relative to now (built when the test runs, not when it is collected)."""
    _clock[0] = now_us() - 120_000_000
    now = now_us()
    return [
        Case("plain Avro batch", avro(B("ok-avro", 2)), "ok,ok", [(CT, AVRO)]),
        Case("plain JSON batch", js(B("ok-json")), "ok", [(CT, JSON)]),
        Case("empty value", b"", "msg:empty_message"),
        Case("null value (tombstone)", None, "msg:empty_message"),
        Case("2 MB value", b'{"batch_id":"' + b"x" * 2_000_000 + b'"}', "msg:message_too_large"),
        Case("200,000-deep nesting", b'{"readings":' + b"[" * 200_000, "msg:malformed_json"),
        Case("deeply nested but within the bound", jtext(B("deep-ok"), extra=DEEP_OK), "ok"),
        Case("nesting one over the bound", jtext(B("deep-no"), extra=DEEP_NO), "msg:malformed_json"),
        Case("lone surrogate in tenant", jtext(B("sur-t"), tenant='"acme\\ud800"'), "msg:malformed_json"),
        Case("lone surrogate in gateway", jtext(B("sur-g"), gateway='"\\udfff"'), "msg:malformed_json"),
        Case("lone surrogate in tag", with_reading(B("sur-tag"), tag='"V1\\ud83d"'), "msg:malformed_json"),
        Case("surrogate pair (an emoji) in gateway", jtext(B("emoji"), gateway='"gw-\\ud83d\\ude00"'), "ok"),
        Case("non-UTF-8 bytes in JSON", js(B("utf8-j")).replace(b"gw-1", b"gw-\xff"), "msg:malformed_json"),
        Case("non-UTF-8 bytes in Avro", patched(B("utf8-a"), b"gw-1", b"gw-\xff"), "msg:malformed_avro"),
        Case("UTF-16 JSON", js(B("utf16")).decode().encode("utf-16"), "msg:malformed_json", [(CT, JSON)]),
        Case("JSON with a UTF-8 BOM", b"\xef\xbb\xbf" + js(B("bom")), "ok", [(CT, JSON)]),
        Case("10 kB batch id", js(B(X10K)), "msg:invalid_id"),
        Case("10 kB tenant", js(B("big-t", tenant=X10K)), "msg:invalid_id"),
        Case("10 kB tag (Avro)", avro(rs("big-tag", V(ts(), tag=X10K))), "msg:invalid_id"),
        Case("129-character machine id", avro(B("long-m", machine="m" * 129)), "msg:invalid_id"),
        Case("ESC [ sequence in machine id", js(B("esc-m", machine="press-01\x1b[2J")), "msg:invalid_id"),
        Case("ESC [ sequence in a tag", avro(rs("esc-tag", V(ts(), tag="\x1b[31mV1"))), "msg:invalid_id"),
        Case("NUL in batch id", avro(B("nul\x00id")), "msg:invalid_id"),
        Case("bidi override in gateway id", js(B("bidi", gateway="gw-\u202e1")), "msg:invalid_id"),
        Case("CR LF in a unit", js(rs("ctl-unit", V(ts(), unit="mm/s\r\n"))), "msg:invalid_id"),
        Case("key names another machine", avro(B("key-m")), "msg:key_mismatch", key=BAD_KEY),
        Case("key names another tenant", avro(B("key-t")), "msg:key_mismatch", key=EVIL_KEY),
        Case("no key", avro(B("key-none")), "msg:key_mismatch", key=None),
        Case("key of non-UTF-8 bytes", avro(B("key-bin")), "msg:key_mismatch", key=b"\xff\xfe/\x00"),
        Case("truncated Avro", avro(B("trunc"))[:-7], "msg:malformed_avro"),
        Case("Avro header only", avro(B("head"))[:10], "msg:malformed_avro"),
        Case("unknown schema id", MAGIC + struct.pack("<Q", 1) + avro(B("fp"))[10:], "msg:unknown_schema"),
        Case("wrong magic byte, Avro header", b"\xc3\x02" + avro(B("mg"))[2:], "msg:not_avro", [(CT, AVRO)]),
        Case("wrong magic byte, no header", b"\xc3\x02" + avro(B("mg2"))[2:], "msg:unsupported_format"),
        Case("Avro of another schema", AvroCodec().encode("asset", ASSET), "msg:wrong_schema"),
        Case("quality varint of 2**40 (fastavro reads it)", overlong_quality(), "msg:invalid_batch"),
        Case("JSON with duplicate keys", js(B("dup"))[:-1] + b',"tenant":"evil"}', "msg:malformed_json"),
        Case("value as a string", with_reading(B("num-str"), value='"1.5"'), "msg:invalid_batch"),
        Case("value as a boolean", with_reading(B("bool"), value="true"), "msg:invalid_batch"),
        Case("value 1e309 (inf)", with_reading(B("inf"), value="1e309"), "non_finite"),
        Case("value NaN literal", with_reading(B("nan"), value="NaN"), "non_finite"),
        Case("value -0", with_reading(B("neg-zero"), value="-0.0"), "ok"),
        Case("value 10**400", with_reading(B("big-int"), value="1" + "0" * 400), "msg:invalid_batch"),
        Case("integer of 5000 digits", with_reading(B("digits"), value="9" * 5000), "msg:malformed_json"),
        Case("ts as a number in a string", with_reading(B("ts-str"), ts='"1777636800"'), "msg:bad_timestamp"),
        Case("ts as RFC 3339 text", with_reading(B("ts-rfc"), ts=f'"{rfc3339(ts())}"'), "ok"),
        Case("ts negative", avro(rs("ts-neg", V(-1))), "stale_timestamp"),
        Case("ts in year 9999", with_reading(B("ts-9999"), ts='"9999-12-31T23:59:59Z"'), "future_timestamp"),
        Case("ts in nanoseconds", avro(rs("ts-ns", V(now * 1000))), "future_timestamp"),
        Case("ts in milliseconds", avro(rs("ts-ms", V(now // 1000))), "stale_timestamp"),
        Case("ts at int64 max, min", avro(rs("lim", V(MAX64), V(MIN64))), "future_timestamp,stale_timestamp"),
        Case("unknown content-type header", js(B("ctype")), "msg:unsupported_format", [(CT, b"text/csv")]),
        Case("content-type with charset", js(B("ctype-p")), "ok", [(CT, b"application/json; charset=utf8")]),
        Case("content-type header without a value", js(B("ctype-none")), "ok", [(CT, None)]),
        Case("huge header (200 kB)", avro(B("hdr")), "ok", [("x-junk", b"h" * 200_000)]),
        Case("header with non-UTF-8 bytes", avro(B("hdr-bin")), "ok", [("ps-gateway", b"\xff\xfe")]),
        Case("NUL bytes only", b"\x00" * 16, "msg:unsupported_format"),
        Case("whitespace only, JSON header", b" \n\t ", "msg:malformed_json", [(CT, JSON)]),
        Case("JSON array at top level", b"[1, 2, 3]", "msg:invalid_batch", [(CT, JSON)]),
        Case("sequence as text", jtext(B("seq"), sequence='"7"'), "msg:invalid_batch"),
        Case("more readings than the limit", avro(B("big", OVER)), "msg:batch_too_large"),
        Case("unknown machine", avro(B("ghost", machine="ghost")), "msg:unknown_machine", key=GHOST_KEY),
        Case("unknown tag", avro(rs("tags", V(ts()), V(ts(), tag="X"), V(ts()))), "ok,unknown_tag,ok"),
        Case("NaN in Avro", avro(rs("nan-a", V(ts(), math.nan))), "non_finite"),
        Case("duplicate batch", avro(B("ok-avro", 2)), "msg:duplicate_batch"),
        # last: a reading 250 s ahead (within the 300 s tolerance) is accepted but moves the
        # sensor's clock at most 5 s past ingest time, so the real reading after it is in order
        Case("future-stamped reading", avro(rs("future", V(now + 250_000_000))), "ok"),
        Case("real reading after the future one", avro(rs("after", V(now + 120_000_000))), "ok"),
    ]


def case_outputs(settings: Settings, cases: list[Case]) -> list[Output]:
    topic = GATEWAY_READINGS.physical(settings)
    return [Output(topic, c.key, c.value, [(CASE_HEADER, c.name.encode()), *(c.headers or [])])
            for c in cases]


def archived(settings: Settings) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``rejected`` rows (as dead-letter dicts) and the reading ids of ``readings``."""
    client = connect(settings.clickhouse_url)
    try:
        cols = ("id", "stage", "reason", "source_topic", "source_partition", "source_offset", "original")
        dead = [dict(zip(cols, row, strict=True)) for row in client.query(
            f"SELECT {', '.join(cols[:-1])}, hex(original) FROM rejected").result_rows]
        valid = [row[0] for row in client.query("SELECT reading_id FROM readings").result_rows]
    finally:
        client.close()
    for d in dead:
        d["original"] = bytes.fromhex(d["original"])
    return dead, valid


def test_hostile_inputs_are_each_accounted_for_in_clickhouse(settings: Settings) -> None:
    cases = hostile_cases()
    assert len(cases) >= 40 and len({c.name for c in cases}) == len(cases)
    assert produce_all(settings, case_outputs(settings, cases)) == len(cases)
    registry = AssetRegistry(assets())
    ingest = run_ingest(settings, registry, idle=2.0)  # returns: the loop did not die
    validation = run_validation(settings, registry, idle=2.0)
    sink = run_archival(settings)
    assert sink.rows_written > 0

    where = {dict(m.headers())[CASE_HEADER].decode(): (m.partition(), m.offset())
             for m in read_all(settings, GATEWAY_READINGS.physical(settings))}
    assert set(where) == {c.name for c in cases}
    sent = sent_messages(settings)
    dead, valid = archived(settings)
    assert [d for d in dead if d["stage"] == "archival"] == []  # archival stored every record
    out = account(sent, GATEWAY_READINGS.physical(settings), dead, valid)
    assert out.unaccounted() == [], "every reading of every message has exactly one row in ClickHouse"
    whole = {(d["source_partition"], d["source_offset"]): d["reason"] for d in dead
             if d["stage"] == "ingest" and d["id"].endswith(":-1")}
    problems = []
    for c in cases:
        p, o = where[c.name]
        fates = sorted((i, f) for (pp, oo, i), f in out.fates.items() if (pp, oo) == (p, o))
        if c.expect.startswith("msg:"):
            reason = c.expect.removeprefix("msg:")
            got = f"msg:{whole.get((p, o))}"
            ok = whole.get((p, o)) == reason and all(f == [f"dead:{reason}"] for _, f in fates)
        else:
            got = ",".join("ok" if f == ["valid"] else f[0].removeprefix("dead:") for _, f in fates)
            ok = (p, o) not in whole and got == c.expect
        if not ok:
            problems.append(f"{c.name}: expected {c.expect}, got {got} ({fates[:3]})")
    assert problems == []
    assert "processing_error" not in ingest.metrics.dead_letters
    assert "processing_error" not in validation.metrics.dead_letters
