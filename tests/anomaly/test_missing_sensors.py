"""Late sensors join the machine's models; a warm-up with too little data says so and waits."""

from __future__ import annotations

import logging
import math
import random

import pytest

from anomaly.machine import MachineDetector

S = 1_000_000
WARMUP, SETTLE = 200, 20  # join_rows = 180
LATE_UNTIL = 100  # sensor b reports from this row on
FAULT_AT, END = 420, 480


def row(i: int, rnd: random.Random, b_mode: str) -> dict[str, float]:
    """a follows a load cycle, b follows a; from FAULT_AT b moves *against* a (each alone stays
    in its normal range: only a model of both sees it); c is an unrelated level."""
    a = math.sin(2 * math.pi * i / 50) + rnd.gauss(0, 0.05)
    x = {"a": a, "c": 5.0 + rnd.gauss(0, 0.05)}
    b = (-a if i >= FAULT_AT else a) + rnd.gauss(0, 0.05)
    if i >= LATE_UNTIL:
        x["b"] = b
    elif b_mode == "nan":
        x["b"] = float("nan")
    return x


def stream(b_mode: str) -> list[tuple[int, dict[str, float]]]:
    rnd = random.Random(3)
    return [(i * S, row(i, rnd, b_mode)) for i in range(END)]


@pytest.mark.parametrize(("sensors", "b_mode"), [(["a", "b", "c"], "nan"), (None, "absent")])
def test_a_sensor_that_starts_late_joins_the_multivariate_model(
        sensors: list[str] | None, b_mode: str, caplog: pytest.LogCaptureFixture) -> None:
    det = MachineDetector(sensors=sensors, warmup=WARMUP, settle=SETTLE)
    with caplog.at_level(logging.INFO, logger="anomaly.machine"):
        verdicts = det.process_many(stream(b_mode))
    joined = [r for r in caplog.records if r.getMessage() == "sensors joined the machine model"]
    assert [r.sensors for r in joined] == [["b"]]  # type: ignore[attr-defined]
    late = [r for r in caplog.records if "not reporting when the model started" in r.getMessage()]
    assert [r.sensors for r in late] == [["b"]]  # type: ignore[attr-defined]
    assert not any(v.is_anomaly for v in verdicts[:FAULT_AT]), "joining must not raise an alarm"
    fault = [v for v in verdicts[FAULT_AT:] if v.is_anomaly]
    assert fault, "b moving against a is seen once b is in the multivariate model"
    assert all(set(v.contributions) == {"a", "b", "c"} for v in fault)
    assert max(fault[0].contributions, key=fault[0].contributions.get) in ("a", "b")


def test_without_the_late_sensor_the_fault_is_invisible() -> None:
    """Control: the fault above lives only in b's relation to a."""
    det = MachineDetector(sensors=["a", "c"], warmup=WARMUP, settle=SETTLE)
    assert not any(v.is_anomaly for v in det.process_many(stream("nan")))


def test_snapshot_taken_while_a_sensor_is_joining_resumes_identically() -> None:
    rows = stream("nan")
    whole = MachineDetector(sensors=["a", "b", "c"], warmup=WARMUP, settle=SETTLE).process_many(rows)
    first = MachineDetector(sensors=["a", "b", "c"], warmup=WARMUP, settle=SETTLE)
    cut = LATE_UNTIL + 50  # b reports, has not joined yet
    head = first.process_many(rows[:cut])
    resumed = MachineDetector.from_bytes(first.to_bytes())
    tail = resumed.process_many(rows[cut:])
    assert [(v.score, v.is_anomaly) for v in head + tail] == [(v.score, v.is_anomaly) for v in whole]


def test_a_warm_up_without_data_is_extended_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    det = MachineDetector(sensors=["p", "t"], warmup=100, settle=10)
    nan = float("nan")
    rnd = random.Random(5)
    rows = [(i * S, {"p": nan, "t": nan}) for i in range(150)]
    rows += [(i * S, {"p": 1.0 + rnd.gauss(0, 0.01), "t": 20.0 + rnd.gauss(0, 0.1)}) for i in range(150, 260)]
    rows += [(i * S, {"p": 3.0, "t": 20.0}) for i in range(260, 300)]
    with caplog.at_level(logging.WARNING, logger="anomaly.machine"):
        verdicts = det.process_many(rows)
    warned = [r.getMessage() for r in caplog.records if "too little data" in r.getMessage()]
    assert warned == ["warm-up has too little data: 0 of 90 rows had a reading (22 needed); "
                      "extending it, no alarms until then"]
    assert all(v.warming_up for v in verdicts[:150 + 22])  # 22 rows with readings are learned first
    assert not any(v.warming_up for v in verdicts[150 + 22:])
    assert not any(v.is_anomaly for v in verdicts[:260])
    assert any(v.is_anomaly for v in verdicts[260:]), "after the extended warm-up it alarms"


def test_a_warm_up_with_enough_data_ends_on_time_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    rnd = random.Random(6)
    rows = [(i * S, {"p": 1.0 + rnd.gauss(0, 0.01)}) for i in range(120)]
    with caplog.at_level(logging.WARNING, logger="anomaly.machine"):
        verdicts = MachineDetector(warmup=100, settle=10).process_many(rows)
    assert [v.warming_up for v in verdicts] == [True] * 100 + [False] * 20
    assert not caplog.records
