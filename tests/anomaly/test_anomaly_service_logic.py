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


def scorer() -> Scorer:
    return Scorer(detector_factory(SETTINGS), ScorerConfig(update_seconds=20),
                  DeadLetters(SETTINGS, "anomaly"), "u.readings.valid", SETTINGS)


def commit(sc: Scorer, changelog: dict[bytes, bytes]) -> None:
    """What the loop does after each batch: write the changed machines, then commit."""
    for out in sc.store.changelog():
        assert out.partition == 0 and out.key is not None and out.value is not None
        changelog[out.key] = out.value
    sc.store.committed()


def restarted(changelog: dict[bytes, bytes]) -> Scorer:
    """A new copy whose store is rebuilt from the changelog (as on partition assignment)."""
    sc = scorer()
    for key, value in changelog.items():
        sc.store.load(0, key, value)
    return sc


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
    changelog: dict[bytes, bytes] = {}
    events = []
    for off, (k, v) in enumerate(data):
        out = sc.handle(k, v, 0, off)
        events += [codec.decode(e, "anomaly_event") for e in out.events]
        commit(sc, changelog)
        if off == 20:  # the copy restarts here: state comes back from the changelog
            assert set(changelog) == {k}
            sc = restarted(changelog)
            sc.handle(*data[off - 4], 0, off)  # an older batch again: already learned, skipped
            state = sc.store.get(0, k)
            assert sc.restored == 1 and state is not None and state.rows.late == 30  # 10 samples x 3 sensors
            commit(sc, changelog)
    assert events and events[0]["contributions"][0]["sensor"] == "b"
    assert events[0]["event_id"] == f"t/p/m0:ewzscore+mahalanobis:multivariate:{events[0]['window_start']}"
    bad = sc.handle(b"k", b"\xc3\x01" + b"\0" * 12, 2, 99)
    assert bad.events == [] and bad.dead_letter is not None
    dl = codec.decode(bad.dead_letter.value, "dead_letter")
    assert (dl["reason"], dl["stage"], dl["source_offset"]) == ("unknown_schema", "anomaly", 99)


def test_snapshot_of_other_model_version_is_not_loaded() -> None:
    ms = [SyntheticMachine("t", "p", "m0", ["a", "b"], seed=2)]
    data = [(k, codec.encode("reading_batch", r)) for k, r in stream(ms, 60)]
    sc = scorer()
    changelog: dict[bytes, bytes] = {}
    for off, (k, v) in enumerate(data):
        sc.handle(k, v, 0, off)
        commit(sc, changelog)
    other = restarted(changelog)
    other.model_version = sc.model_version + "-next"  # a version other than the writer's
    other.handle(*data[0], 0, 0)
    assert other.restored == 0 and other.created == 1
    assert 0 < sc.memory_report()["bytes_max"] < 1_000_000


def test_aborted_batch_rolls_the_model_back() -> None:
    """A batch whose transaction aborts is consumed again: it must meet the model as it was."""
    ms = [SyntheticMachine("t", "p", "m0", ["a", "b"], seed=3, fault=Fault("a", 150), load_period=50)]
    data = [(k, codec.encode("reading_batch", r)) for k, r in stream(ms, 300)]
    reference, sc = scorer(), scorer()
    changelog: dict[bytes, bytes] = {}
    want, got = [], []
    for off, (k, v) in enumerate(data):
        want += reference.handle(k, v, 0, off).events
        if off % 7 == 3:  # this batch's transaction fails: rolled back, then processed again
            sc.handle(k, v, 0, off)
            sc.store.changelog()
            sc.store.aborted()
        got += sc.handle(k, v, 0, off).events
        commit(sc, changelog)
    assert want and got == want


def test_state_snapshot_is_not_pickle_and_refuses_foreign_classes() -> None:
    import json

    from plantstream.statecodec import StateCodecError

    ms = [SyntheticMachine("t", "p", "m0", ["a", "b"], seed=2)]
    sc = scorer()
    for off, (k, v) in enumerate((k, codec.encode("reading_batch", r)) for k, r in stream(ms, 30)):
        sc.handle(k, v, 0, off)
    [out] = sc.store.changelog()
    rec = codec.decode(out.value, "model_snapshot")
    tree = json.loads(rec["state"])
    assert rec["format"] == "plantstream-state-json-1" and tree["$o"] == "anomaly.state:MachineState"
    tree["$o"] = "os:system"  # a hostile snapshot names a callable: refused, never imported or called
    from anomaly.snapshot import state_codec
    try:
        state_codec().decode(json.dumps(tree).encode())
    except StateCodecError as exc:
        assert "os:system" in str(exc)
    else:
        raise AssertionError("a snapshot naming os:system was decoded")
