"""Two copies of each service in one consumer group split the partitions, and every reading
still ends up exactly once valid or rejected."""

from __future__ import annotations

import json
from pathlib import Path

from readings_support import collect, gateway_output, publish, simulated_batches, start_service, stop_service
from receivers import wait_for

from plantstream.kafka import ReliableProducer
from plantstream.settings import Settings
from plantstream.topics import GATEWAY_READINGS, READINGS_NORMALIZED


def _assigned(log: Path, topic: str) -> set[int]:
    parts: set[int] = set()
    for line in log.read_text().splitlines():
        if '"partitions assigned"' in line:
            for p in json.loads(line)["partitions"]:
                name, _, num = p.partition("[")
                if name == topic:
                    parts.add(int(num.rstrip("]")))
    return parts


def _split_between_two(logs: Path, name: str, topic: str) -> bool:
    owned = [_assigned(log, topic) for log in sorted(logs.glob(f"{name}-*.log"))]
    return len(owned) == 2 and all(owned)


def test_two_copies_share_partitions_and_total_output_is_unchanged(
        settings: Settings, service_env: dict[str, str], tmp_path: Path) -> None:
    batches, records = simulated_batches(machines=8, seconds=300, seed=11)
    publish(settings, records)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [start_service(name, service_env, logs, copy)
             for name in ("ingest", "validation") for copy in (0, 1)]
    try:
        # the group has settled with both copies in it before the data comes
        for name, spec in (("ingest", GATEWAY_READINGS), ("validation", READINGS_NORMALIZED)):
            topic = spec.physical(settings)
            wait_for(lambda n=name, t=topic: _split_between_two(logs, n, t), 60,
                     f"both {name} copies owning partitions")
        producer = ReliableProducer(settings)
        for b in batches:
            producer.produce(gateway_output(settings, b))
        producer.flush(60)
        total = sum(len(b["readings"]) for b in batches)
        out = collect(settings, expect_readings=total, timeout=120)
    finally:
        codes = [stop_service(p) for p in procs]
    assert codes == [0, 0, 0, 0]
    assert out.unaccounted() == [] and len(out.fates) == total
    assert max(out.valid_ids.values()) == 1
    for name, topic in (("ingest", GATEWAY_READINGS), ("validation", READINGS_NORMALIZED)):
        owned = [_assigned(log, topic.physical(settings)) for log in sorted(logs.glob(f"{name}-*.log"))]
        assert len(owned) == 2 and all(owned), (name, owned)  # both copies got work
        assert owned[0] | owned[1] == set(range(settings.partitions))
