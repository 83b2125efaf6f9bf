"""The service's pure logic (no Kafka): row assembly, episodes, scorer, snapshots."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from anomaly.config import detector_factory
from anomaly.events import Episode
from anomaly.machine import Verdict
from anomaly.rows import RowAssembler
from anomaly.scorer import Scorer, ScorerConfig
from anomaly.synthetic import Fault, SyntheticMachine, stream
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters
from plantstream.settings import Settings

SETTINGS = replace(Settings(Path("/tmp"), "127.0.0.1:1", "chdb:///tmp/x", topic_prefix="u."),
                   anomaly_warmup=100, anomaly_learn="normal")
codec = AvroCodec()


def scorer(**kw: float) -> Scorer:
    cfg = ScorerConfig(update_seconds=20, snapshot_rows=int(kw.get("snapshot_rows", 50)),
                       snapshot_seconds=1e9)
    return Scorer(detector_factory(SETTINGS), cfg, DeadLetters(SETTINGS, "anomaly"), "u.readings.valid")


def test_rows_split_across_batches_and_redelivery_skipped() -> None:
    ra = RowAssembler(expected=frozenset({"a", "b"}))
    assert ra.add(["a"], [1], [1.0], [192]) == []
    assert ra.add(["b", "a"], [1, 2], [2.0, 3.0], [192, 192]) == [(1, {"a": 1.0, "b": 2.0})]
    # sample 2 lacks b; sample 3 shows it will not come; a redelivered sample 1 is skipped
    assert ra.add(["a", "a", "b"], [1, 3, 3], [9.0, 4.0, 5.0], [192, 192, 192]) == [
        (2, {"a": 3.0}), (3, {"a": 4.0, "b": 5.0})]
    assert ra.late == 1
    assert ra.add(["a"], [4], [1.0], [0]) == [] and ra.bad_quality == 1


def test_unknown_machine_learns_its_sensor_set() -> None:
    ra = RowAssembler()
    assert ra.add(["x", "y", "x"], [1, 1, 2], [1.0, 2.0, 3.0], [192] * 3) == [(1, {"x": 1.0, "y": 2.0})]
    assert ra.expected == {"x", "y"}
    assert ra.add(["y"], [2], [4.0], [192]) == [(2, {"x": 3.0, "y": 4.0})]


def test_episode_open_update_close() -> None:
    ep = Episode()

    def v(ts: int, on: bool, changed: bool) -> Verdict:
        return Verdict(ts, 5.0 if on else 0.1, 1.0, on, changed, False)

    assert ep.step(v(10, True, True), 20) == (10, 10)
    assert ep.step(v(20, True, False), 20) is None
    assert ep.step(v(30, True, False), 20) == (10, 30)
    assert ep.step(v(40, False, True), 20) == (10, 30)  # closes: window ends at the last on row
    assert ep.step(v(50, False, False), 20) is None


def test_scorer_events_dead_letters_and_snapshot_restore() -> None:
    ms = [SyntheticMachine("t", "p", "m0", ["a", "b", "c"], seed=1, fault=Fault("b", 300), load_period=80)]
    data = [(k, codec.encode("reading_batch", r)) for k, r in stream(ms, 400)]
    sc = scorer()
    snaps: dict[bytes, bytes] = {}
    events = []
    for off, (k, v) in enumerate(data):
        out = sc.handle(k, v, 0, off, snaps.get)
        events += [codec.decode(e, "anomaly_event") for e in out.events]
        if out.snapshot:
            snaps[k] = out.snapshot
        if off == 20:  # the copy restarts here: state comes back from the last snapshot
            assert snaps, "a snapshot is due every 50 rows"
            sc = scorer()
            sc.handle(*data[off - 4], 0, off, snaps.get)  # redelivered: already learned, skipped
            assert sc.restored == 1 and sc.states[k].rows.late == 30  # 10 samples x 3 sensors
    assert events and events[0]["contributions"][0]["sensor"] == "b"
    assert events[0]["event_id"] == f"t/p/m0:ewzscore+mahalanobis:multivariate:{events[0]['window_start']}"
    bad = sc.handle(b"k", b"\xc3\x01" + b"\0" * 12, 2, 99, snaps.get)
    assert bad.events == [] and bad.dead_letter is not None
    dl = codec.decode(bad.dead_letter.value, "dead_letter")
    assert (dl["reason"], dl["stage"], dl["source_offset"]) == ("unknown_schema", "anomaly", 99)


def test_snapshot_of_other_model_version_is_not_loaded() -> None:
    ms = [SyntheticMachine("t", "p", "m0", ["a", "b"], seed=2)]
    data = [(k, codec.encode("reading_batch", r)) for k, r in stream(ms, 60)]
    sc = scorer(snapshot_rows=10)
    snaps: dict[bytes, bytes] = {}
    for off, (k, v) in enumerate(data):
        out = sc.handle(k, v, 0, off, snaps.get)
        snaps[k] = out.snapshot or snaps.get(k, b"")
    other = scorer()
    other.model_version = sc.model_version + "-next"  # a version other than the writer's
    other.handle(*data[0], 0, 0, snaps.get)
    assert other.restored == 0 and other.created == 1
    assert sc.memory_report()["bytes_max"] < 1_000_000 and sc.drop_partitions({0}) == 1
