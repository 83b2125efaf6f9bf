"""Per-sensor channels: stuck, dropout and drift alarms become univariate anomaly events."""

from __future__ import annotations

import math
import random

from anomaly.detectors import ResidualDrift, SensorHealth
from anomaly.machine import MachineDetector
from anomaly.sensorwatch import SensorWatch
from anomaly.state import MachineState

SENSORS = ["current", "idle", "temp", "vib"]
T0 = 1_750_000_000_000_000


def row(i: int, rng: random.Random, temp_offset: float = 0.0) -> dict[str, float]:
    load = 1.0 + 0.3 * math.sin(i / 40.0)
    return {"current": round(20 * load + rng.gauss(0, 0.1), 2), "idle": 0.0,
            "temp": round(40 + 10 * load + temp_offset + rng.gauss(0, 0.1), 1),
            "vib": round(2 * load + rng.gauss(0, 0.02), 3)}


def machine(arm_after: int = 400) -> MachineState:
    watch = SensorWatch(drift=ResidualDrift(min_fit=100, refit_every=100, drift_tau=30),
                        health=SensorHealth(min_run=20), arm_after=arm_after, holdoff=200)
    st = MachineState(("t", "s", "m"), MachineDetector(SENSORS, warmup=200, settle=20, watch=watch,
                                                       learn_after_warmup="normal"))
    st.rows.expected = frozenset(SENSORS)
    return st


def feed(st: MachineState, rows: list[tuple[int, dict[str, float]]]) -> list[dict]:
    out = []
    for ts, x in rows:
        out += st.feed(list(x), [ts] * len(x), list(x.values()), [192] * len(x), 60_000_000)
    return out


def opened(events: list[dict]) -> list[tuple[int, str, str]]:
    return [((e["ts"] - T0) // 1_000_000, e["model"], e["contributions"][0]["sensor"])
            for e in events if e["ts"] == e["window_start"] == e["window_end"]]


def test_stuck_and_dropout_open_univariate_events_for_the_sensor() -> None:
    rng = random.Random(1)
    st = machine()
    rows = [(T0 + i * 1_000_000, row(i, rng)) for i in range(900)]
    for i in range(600, 700):
        rows[i][1]["vib"] = 2.345  # frozen transmitter
    for i in range(750, 820):
        del rows[i][1]["current"]  # the sensor stops reporting (its row is released by the next one)
    events = feed(st, rows)
    # limits: 20 readings (min_run); the frozen run starts at 600, the gap at 750
    opens = opened(events)
    assert opens[0] == (620, "stuck", "vib") and (770, "dropout", "current") in opens
    # a frozen or missing sensor may also drift from its coupling, but only it is named
    assert {s for t, _, s in opens if t < 750} == {"vib"}
    assert {s for t, _, s in opens if t >= 750} == {"current"}
    first = events[0]
    assert first["kind"] == "univariate" and first["event_id"] == f"t/s/m:stuck:univariate:vib:{first['ts']}"
    closes = [e for e in events if e["ts"] != e["window_end"] and e["kind"] == "univariate"]
    assert {e["contributions"][0]["sensor"] for e in closes} == {"vib", "current"}  # both episodes ended
    machine_level = [s for _, m, s in opens if m == "ewzscore+mahalanobis"]
    assert set(machine_level) <= {"vib", "current"}  # the machine model, too, blames the faulty sensor
    # 'idle' is constant all along: constant is its normal, never "stuck"
    assert all(e["contributions"][0]["sensor"] != "idle" for e in events)


def test_drift_names_the_drifting_sensor_not_its_followers() -> None:
    rng = random.Random(2)
    st = machine()
    healthy = [(T0 + i * 1_000_000, row(i, rng)) for i in range(1200)]
    assert feed(st, healthy) == []
    drifting = [(T0 + i * 1_000_000, row(i, rng, temp_offset=min(8.0, (i - 1200) * 0.02)))
                for i in range(1200, 1800)]
    events = feed(st, drifting)
    assert opened(events)[0][1:] == ("residualdrift", "temp")
    assert {e["contributions"][0]["sensor"] for e in events} == {"temp"}


def test_a_long_frozen_sensor_is_not_learned_so_its_recovery_is_not_an_alarm() -> None:
    """A transmitter frozen for hours: the drift model learns nothing from its rows, so once
    it reports again the real signal is normal, not 'unusual'."""
    rng = random.Random(3)
    st = machine(arm_after=2000)
    watch = st.detector.watch
    rows = [(T0 + i * 1_000_000, row(i, rng)) for i in range(6000)]
    for i in range(500, 4500):
        rows[i][1]["temp"] = 52.0  # frozen near its mean, long enough to arm and refit the drift model
    events = feed(st, rows[:600])
    assert opened(events) == [(520, "stuck", "temp")]
    learned = watch.learned
    events += feed(st, rows[600:4500])
    assert watch.learned == learned  # the frozen rows taught the drift model nothing
    after = feed(st, rows[4500:])
    assert [e for e in opened(after) if e[0] >= 4600] == [], opened(after)  # and its recovery is normal
    assert watch.learned > learned  # learning resumed
