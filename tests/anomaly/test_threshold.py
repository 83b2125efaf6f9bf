"""AdaptiveThreshold: quantile, warm-up and hysteresis."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from anomaly.detectors import AdaptiveThreshold


def calibrated(**kw: float) -> AdaptiveThreshold:
    th = AdaptiveThreshold(**{"q": 0.9, "factor": 1.0, "min_samples": 10, **kw})
    for s in range(1, 101):
        th.learn(float(s) / 100)  # 0.01 .. 1.00
    return th


def test_infinite_until_min_samples() -> None:
    th = AdaptiveThreshold(min_samples=5)
    for _ in range(4):
        th.learn(1.0)
        assert th.threshold == math.inf
        assert th.step(1e9) == (False, False)
    th.learn(1.0)
    assert math.isfinite(th.threshold)


def test_quantile_matches_numpy() -> None:
    rng = random.Random(0)
    th = AdaptiveThreshold(q=0.97, factor=1.5, window=300, min_samples=1)
    vals = [rng.expovariate(1.0) for _ in range(1000)]
    for v in vals:
        th.learn(v)
    assert th.threshold == pytest.approx(1.5 * np.quantile(vals[-300:], 0.97))
    assert len(th._sorted) == 300  # bounded memory


def test_single_spike_does_not_alarm() -> None:
    th = calibrated(k_on=3, n_on=5, m_off=3)
    states = [th.step(s)[0] for s in [0.1, 5.0, 0.1, 0.1, 0.1, 0.1]]
    assert not any(states)


def test_sustained_high_turns_on_once_then_off_after_m_low() -> None:
    th = calibrated(k_on=3, n_on=5, m_off=3)
    out = [th.step(s) for s in [5.0, 5.0, 5.0, 5.0, 0.1, 5.0, 0.1, 0.1, 0.1, 0.1]]
    assert [o[0] for o in out] == [False, False, True, True, True, True, True, True, False, False]
    assert [i for i, o in enumerate(out) if o[1]] == [2, 8]


def test_k_of_n_on() -> None:
    th = calibrated(k_on=3, n_on=5, m_off=10)
    states = [th.step(s)[0] for s in [5.0, 0.1, 5.0, 0.1, 5.0]]
    assert states[-1] and not any(states[:-1])


def test_reset_and_clone() -> None:
    th = calibrated(k_on=1, n_on=1)
    assert th.step(5.0) == (True, True)
    th.reset_state()
    assert not th.on
    cl = th.clone()
    assert cl.threshold == math.inf and cl.q == th.q and cl.k_on == th.k_on


def test_a_snapshot_leaves_out_the_sorted_window_and_rebuilds_it_exactly() -> None:
    from anomaly.snapshot import state_codec

    rng = random.Random(3)
    th = AdaptiveThreshold(q=0.95, window=200, min_samples=10)
    for _ in range(500):  # past the window: old scores left the sorted copy too
        th.learn(rng.expovariate(1.0))
    codec = state_codec()
    raw = codec.encode(th)
    assert "_sorted" not in raw.decode() and "_fifo" in raw.decode()
    back = codec.decode(raw)
    assert back._sorted == th._sorted == sorted(th._fifo)
    assert back.threshold == th.threshold
    for s in [rng.expovariate(1.0) * 4 for _ in range(50)]:  # the same verdicts afterwards
        assert back.step(s) == th.step(s)
        back.learn(s)
        th.learn(s)
    assert back._sorted == th._sorted


def test_a_snapshot_written_with_the_sorted_window_still_reads() -> None:
    from anomaly.snapshot import state_codec

    th = calibrated()
    codec = state_codec()
    doc = json.loads(codec.encode(th))
    doc["f"]["_sorted"] = {"$fl": doc["f"]["_fifo"]["$qf"]}  # as the previous version wrote it
    back = codec.decode(json.dumps(doc).encode())
    assert back._sorted == th._sorted and back.threshold == th.threshold
