"""Avro batches through the real broker: topics from the catalog, per-machine keys, and the
transactional processor loop (exactly-once from input to output)."""

from __future__ import annotations

import threading
import time

from tx_input import committed

from plantstream.avro import AvroCodec
from plantstream.kafka import Output, create_topics, describe_topics
from plantstream.runner import Processor, StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.topics import (
    ALERT_COMMANDS,
    ASSETS,
    CATALOG,
    GATEWAY_READINGS,
    TENANT_GATEWAY_READINGS,
    machine_key,
)

from brokers import Broker
from kafka_io import end_offsets, produce_all, read_all, read_topic


def batch(machine: str, i: int, n: int = 100) -> dict:
    return {"batch_id": f"{machine}-{i}", "tenant": "acme", "site": "s1", "machine": machine,
            "gateway": "gw", "sent_at": 1_700_000_000_000_000 + i, "sequence": i,
            "readings": [{"tag": "T1", "ts": 1_700_000_000_000_000 + i * 1000 + k, "value": float(k),
                          "unit": None, "quality": 192} for k in range(n)]}


def test_broker_is_real_and_topics_follow_the_catalog(settings: Settings, broker: Broker) -> None:
    rows = {r["topic"]: r for r in describe_topics(settings)}
    assert len(rows) == len([spec for spec in CATALOG if not spec.per_tenant])  # no tenant yet
    assert all(r["exists"] for r in rows.values())
    create_topics(settings, tenants=["acme"])  # what publishing acme's machines does
    deadline = time.monotonic() + 15  # the broker's metadata learns of new topics a moment later
    while len(rows := {r["topic"]: r for r in describe_topics(settings)}) < len(CATALOG) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(rows) == len(CATALOG)  # one topic per per-tenant spec for acme
    acme = rows[TENANT_GATEWAY_READINGS.for_tenant(settings, "acme")]
    assert acme["exists"] and acme["partitions"] == settings.partitions  # co-partitioned with the rest
    assert rows[GATEWAY_READINGS.physical(settings)]["partitions"] == settings.partitions
    assert rows[ASSETS.physical(settings)]["partitions"] == 1
    assert rows[ASSETS.physical(settings)]["policy"] == "compact"


def test_avro_batches_round_trip_and_stay_in_one_partition_per_machine(settings: Settings) -> None:
    codec = AvroCodec()
    topic = GATEWAY_READINGS.physical(settings)
    sent = [batch(f"m{m}", i) for m in range(5) for i in range(20)]
    produce_all(settings, [Output(topic, machine_key("acme", "s1", b["machine"]),
                                  codec.encode("gateway_batch", b)) for b in sent])
    msgs = read_topic(settings, topic, until=lambda ms: len(ms) >= len(sent))
    got = [codec.decode(m.value(), "gateway_batch") for m in msgs]
    assert sorted(g["batch_id"] for g in got) == sorted(b["batch_id"] for b in sent)
    partitions: dict[str, set[int]] = {}
    order: dict[str, list[int]] = {}
    for m, g in zip(msgs, got, strict=True):
        partitions.setdefault(g["machine"], set()).add(m.partition())
        order.setdefault(g["machine"], []).append(g["sequence"])
    assert all(len(p) == 1 for p in partitions.values())
    assert all(seq == sorted(seq) for seq in order.values())  # per-machine order kept


class Doubler(Processor):
    """Emits each input twice to another topic: enough to see exactly-once at work."""

    name = "doubler"

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic
        self.commits = 0

    def process(self, messages):
        return [Output(self.out_topic, m.key(), m.value()) for m in messages for _ in range(2)]

    def committed(self) -> None:
        self.commits += 1


def test_processor_output_and_offsets_commit_together(settings: Settings) -> None:
    src, dst = GATEWAY_READINGS.physical(settings), ALERT_COMMANDS.physical(settings)
    produce_all(settings, [Output(src, str(i % 7).encode(), str(i).encode()) for i in range(1000)])
    proc = Doubler(dst)
    # leaves once its input is read to the end and committed (the idle cap is far away)
    run_processor(proc, settings, [src], "doubler", stop=StopFlag(), idle_exit_after=3600,
                  until_read_to_end=True)
    n = settings.partitions
    assert committed(settings, "doubler", src, n) == end_offsets(settings, src, n)
    out = read_topic(settings, dst, until=lambda ms: len(ms) >= 2000)
    assert sorted(int(m.value()) for m in out) == sorted(list(range(1000)) * 2)
    assert proc.commits >= 1
    # A second run of the same group finds everything committed: no output is repeated.
    again = Doubler(dst)
    stop = StopFlag()
    threading.Timer(8, lambda: setattr(stop, "stopping", True)).start()
    run_processor(again, settings, [src], "doubler", stop=stop, idle_exit_after=3)
    assert again.commits == 0
    assert len(read_all(settings, dst)) == 2000
