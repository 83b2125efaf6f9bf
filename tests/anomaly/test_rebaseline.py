"""Episodes, not states: a machine that moved to a new steady level gets one episode that closes
with a re-baseline event; a developing fault never settles and keeps alarming.

The simulator cases run the shipped configuration (``DetectorConfig()``) through the service's
per-machine state, at the simulator's 5-s readings: a pump whose discharge-pressure transmitter
is recalibrated (+8 % for good) and a pump whose bearing wears toward its critical limit.
"""

from __future__ import annotations

import math
import random

from anomaly.config import DetectorConfig
from anomaly.machine import MachineDetector
from anomaly.regime import RegimeCheck, warning_limits
from anomaly.simfeed import reading_batches
from anomaly.state import MachineState
from plantstream.gateway.simulator import Factory

T0 = 1_750_000_000_000_000
HOUR = 3600.0


def _rows(n: int, seed: int, shift_at: int | None = None, ramp_at: int | None = None):
    """A machine on a load cycle; ``p`` steps up by 1.0 (25 %) at ``shift_at`` or ramps from ``ramp_at``."""
    rng = random.Random(seed)
    for i in range(n):
        load = 1.0 + 0.1 * math.sin(i / 25.0)
        p = 4.0 * load + rng.gauss(0, 0.03)
        if shift_at is not None and i >= shift_at:
            p += 1.0
        if ramp_at is not None and i >= ramp_at:
            p += 0.005 * (i - ramp_at)
        yield i * 5_000_000, {"p": p, "q": 10.0 * load + rng.gauss(0, 0.1)}


def _detector(learn: str = "normal") -> MachineDetector:
    return MachineDetector(warmup=300, settle=20, learn_after_warmup=learn,
                           regime=RegimeCheck(block=50, blocks=4, min_rows=300))


def test_a_level_shift_is_one_episode_that_closes_with_a_rebaseline() -> None:
    det = _detector()
    verdicts = det.process_many(_rows(3000, seed=1, shift_at=1000))
    opened = [i for i, v in enumerate(verdicts) if v.is_anomaly and v.state_changed]
    rebased = [i for i, v in enumerate(verdicts) if v.rebaseline]
    assert len(opened) == 1 and 1000 <= opened[0] < 1020
    assert len(rebased) == 1 and rebased[0] >= opened[0] + 300
    closing = verdicts[rebased[0]]
    assert closing.state_changed and not closing.is_anomaly and closing.score <= closing.threshold
    sensor, shift, level = closing.rebaseline[0]
    assert sensor == "p" and shift > 3 and abs(level - 5.0) < 0.2
    after = verdicts[rebased[0] + 1:]
    assert any(v.warming_up for v in after[:300])  # the new level is learned over a new warm-up
    assert not any(v.is_anomaly for v in after)  # and is normal from then on


def test_a_developing_fault_never_settles_and_keeps_alarming() -> None:
    """The ramp is never re-baselined, however long it lasts, and the threshold does not climb
    with it: it was set at the end of warm-up (it used to learn every accepted score, so a slow
    fault raised it 6x within 200 rows and was never reported)."""
    det = _detector()
    verdicts = det.process_many(_rows(3000, seed=2, ramp_at=1000))
    assert not any(v.rebaseline for v in verdicts)
    first = next(i for i, v in enumerate(verdicts) if v.is_anomaly)
    assert 1000 < first < 1150 and all(v.is_anomaly for v in verdicts[first + 20:])
    assert len({v.threshold for v in verdicts[300:]}) == 1


def test_without_a_regime_check_the_frozen_model_alarms_for_ever() -> None:
    """The behaviour the re-baseline replaces (and proof the level-shift test can fail)."""
    det = MachineDetector(warmup=300, settle=20, learn_after_warmup="normal")
    verdicts = det.process_many(_rows(3000, seed=1, shift_at=1000))
    assert not any(v.rebaseline for v in verdicts) and verdicts[-1].is_anomaly


def test_a_snapshot_mid_episode_resumes_to_the_same_rebaseline() -> None:
    rows = list(_rows(2500, seed=3, shift_at=800))
    whole = _detector().process_many(rows)
    det = _detector()
    first = det.process_many(rows[:1000])
    resumed = MachineDetector.from_bytes(det.to_bytes()).process_many(rows[1000:])
    def seen(vs: list) -> list:
        return [(v.is_anomaly, v.rebaseline) for v in vs]

    assert seen(first + resumed) == seen(whole)
    assert any(v.rebaseline for v in whole)


def _simulate(fault: str, hours: float) -> tuple[list[dict], list[tuple[int, dict[str, float]]], dict]:
    factory = Factory.build(machines=1, seed=3, machine_types=["pump"], faults=[fault], horizon=hours * HOUR,
                            interval=5.0, start_us=T0, warm_start=True)
    asset = factory.assets()[0]
    sensors = sorted(s["sensor"] for s in asset["sensors"])
    state = MachineState((asset["tenant"], asset["site"], asset["machine"]), DetectorConfig().build(sensors))
    state.rows.expected = frozenset(sensors)
    state.detector.set_limits(warning_limits({s["sensor"]: s for s in asset["sensors"]}))  # as the service
    events, readings = [], []
    for _, rec in reading_batches(factory, until=hours * HOUR):
        rs = rec["readings"]
        readings += [(r["ts"], {r["sensor"]: r["value"]}) for r in rs]
        events += state.feed([r["sensor"] for r in rs], [r["ts"] for r in rs], [r["value"] for r in rs],
                             [r["quality"] for r in rs], 60_000_000)
    return events, readings, {s["sensor"]: s for s in asset["sensors"]}


def _opens(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["kind"] == kind and e["ts"] == e["window_start"] == e["window_end"]]


def test_simulator_recalibrated_sensor_gives_one_episode_and_one_rebaseline_event() -> None:
    change = T0 + int(3 * HOUR * 1e6)
    events, _, _ = _simulate("recalibration:sensor=discharge_pressure,start=10800,duration=1e6", hours=10)
    opened = _opens(events, "multivariate")
    rebase = [e for e in events if e["kind"] == "rebaseline"]
    assert len(opened) == 1 and change <= opened[0]["ts"] < change + 600_000_000
    assert len(rebase) == 1
    top = rebase[0]["contributions"][0]
    assert top["sensor"] == "discharge_pressure" and rebase[0]["score"] > 2
    closing = [e for e in events if e["event_id"] == opened[0]["event_id"] and e["score"] <= e["threshold"]]
    assert closing and closing[-1]["ts"] == rebase[0]["ts"]  # the episode closed where it re-baselined
    assert rebase[0]["ts"] - change >= 2 * HOUR * 1e6  # confirmed persistent before re-baselining
    later = [e for e in events if e["ts"] > rebase[0]["ts"] and e["kind"] != "rebaseline"]
    assert later == []  # the new level is the machine's normal: nothing alarms in the 5 h after


def test_simulator_bearing_wear_is_not_learned_and_alarms_until_the_critical_limit() -> None:
    events, readings, specs = _simulate("bearing_wear:start=3600,duration=28800", hours=10)
    limit = specs["bearing_temp"]["critical_high"]
    crossed = next(ts for ts, x in readings if x.get("bearing_temp", -math.inf) >= limit)
    assert not [e for e in events if e["kind"] == "rebaseline"]
    first = min(e["window_start"] for e in events if e["kind"] != "rebaseline")
    assert first < crossed  # an alarm before the limit ...
    for eid in {e["event_id"] for e in events if e["window_start"] == first}:
        closes = [e["ts"] for e in events if e["event_id"] == eid and e["score"] <= e["threshold"]]
        assert not closes or min(closes) >= crossed  # ... that lasts until the limit is crossed


def test_simulator_a_motor_that_stays_hot_is_a_fault_not_a_new_operating_point() -> None:
    """Overheating: the cooling fails over 1.5 h, then the motor stays hot, steadily, beyond its
    warning limit for 3.5 h: the check refuses to call that level normal."""
    events, readings, specs = _simulate("overheating:start=3600,duration=18000", hours=7)
    hot = [x["motor_temp"] for ts, x in readings
           if "motor_temp" in x and T0 + 3 * HOUR * 1e6 < ts < T0 + 6 * HOUR * 1e6]
    assert min(hot) > specs["motor_temp"]["warning_high"]  # the steady level is beyond the limit
    assert not [e for e in events if e["kind"] == "rebaseline"]
