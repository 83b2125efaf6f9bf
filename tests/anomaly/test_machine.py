"""MachineDetector: warm-up, verdicts, missing sensors, memory, snapshot-resume continuity."""

from __future__ import annotations

import math
import random

from anomaly.detectors import AdaptiveThreshold, EWZScore
from anomaly.machine import MachineDetector, Verdict

SENSORS = [f"s{i}" for i in range(10)]


def stream(n: int, fault_from: int | None = None, seed: int = 0) -> list[tuple[int, dict]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x = {k: 10.0 + j + rng.gauss(0.0, 0.2) for j, k in enumerate(SENSORS)}
        if fault_from is not None and i >= fault_from:
            x["s3"] += 3.0
        rows.append((1_700_000_000_000_000 + i * 1_000_000, x))
    return rows


def test_warmup_never_alarms_then_detects_fault() -> None:
    md = MachineDetector(warmup=200, settle=20)
    verdicts = md.process_many(stream(400, fault_from=300))
    assert all(v.warming_up and not v.is_anomaly for v in verdicts[:200])
    assert not any(v.is_anomaly for v in verdicts[200:300])
    assert all(v.is_anomaly for v in verdicts[320:])
    opened = [v for v in verdicts if v.state_changed]
    assert len(opened) == 1 and opened[0].is_anomaly
    top = max(opened[0].contributions, key=opened[0].contributions.get)
    assert top == "s3"
    assert math.isclose(sum(opened[0].contributions.values()), 1.0)
    v = verdicts[-1]
    assert isinstance(v, Verdict) and v.model == md.model_name and v.threshold > 0


def test_process_many_equals_process_one() -> None:
    rows = stream(300, fault_from=250)
    a, b = MachineDetector(warmup=100, settle=10), MachineDetector(warmup=100, settle=10)
    assert a.process_many(rows) == [b.process_one(ts, x) for ts, x in rows]


def test_snapshot_resume_continuity() -> None:
    rows = stream(600, fault_from=450)
    ref = MachineDetector(warmup=200, settle=20)
    expected = ref.process_many(rows)
    for cut in (100, 200, 300, 460):  # during warm-up, at its end, after, inside an episode
        md = MachineDetector(warmup=200, settle=20)
        first = md.process_many(rows[:cut])
        restored = MachineDetector.from_bytes(md.to_bytes())
        second = MachineDetector.from_bytes(restored.to_bytes()).process_many(rows[cut:])
        assert first + second == expected, cut


def test_missing_and_nonfinite_sensors() -> None:
    md = MachineDetector(warmup=50, settle=5)
    rows = stream(120)
    for i, (_, x) in enumerate(rows):
        if i % 7 == 3:
            del x["s1"]
        if i % 11 == 0:
            x["s2"] = float("nan")
    verdicts = md.process_many(rows)
    assert verdicts[10].missing == ("s1",) and "s2" in verdicts[11].missing
    assert all(math.isfinite(v.score) for v in verdicts)
    assert not any(v.is_anomaly for v in verdicts)


def test_memory_bounded_for_ten_sensors() -> None:
    md = MachineDetector(warmup=400)
    md.process_many(stream(3000))
    assert md.memory_bytes() < 1_000_000
    assert md.memory_bytes() < 50_000  # in practice ~10 kB


def test_learn_policies_and_clone() -> None:
    for policy in ("never", "normal", "always"):
        md = MachineDetector(
            warmup=100, settle=10, learn_after_warmup=policy, multivariate=None,
            univariate=EWZScore(alpha=0.02), threshold=AdaptiveThreshold(factor=3.0),
        )
        md.process_many(stream(300))
        fresh = md.clone()
        assert fresh.n_rows == 0 and fresh.learn_after_warmup == policy
