"""Check suite every Detector implementation must pass (parametrised over all of them)."""

from __future__ import annotations

import copy
import doctest
import importlib
import math
import random

import pytest

from anomaly.detectors import Detector, EWZScore, Mahalanobis, ResidualDrift

DETECTORS = [
    EWZScore(),
    EWZScore(alpha=0.05, combine="mean"),
    Mahalanobis(),
    Mahalanobis(n_components=2, rel_tol=0.005),
    Mahalanobis(n_components=2, refresh_every=25),
    ResidualDrift(min_fit=100, refit_every=50),
    ResidualDrift(),
]
IDS = [repr(d) for d in DETECTORS]


def normal_stream(n: int, seed: int = 0) -> list[dict[str, float]]:
    """Correlated noisy sensors around an operating point."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        base = rng.gauss(0.0, 1.0)
        rows.append({
            "flow": 30.0 + base + rng.gauss(0.0, 0.3),
            "pressure": 2.0 + 0.1 * base + rng.gauss(0.0, 0.03),
            "temp": 70.0 + rng.gauss(0.0, 0.5),
        })
    return rows


def trained(det: Detector, rows: list[dict[str, float]]) -> Detector:
    det = det.clone()
    for x in rows:
        det.learn_one(x)
    return det


@pytest.fixture(params=DETECTORS, ids=IDS)
def template(request: pytest.FixtureRequest) -> Detector:
    return request.param


def test_clone_equal_params_fresh_state(template: Detector) -> None:
    rows = normal_stream(300)
    det = trained(template, rows)
    fresh = template.clone()
    cl = det.clone()
    assert cl._get_params() == det._get_params()
    assert cl is not det
    probe = {"flow": 40.0, "pressure": 2.0, "temp": 70.0}
    assert cl.score_one(probe) == fresh.score_one(probe)


def test_deterministic(template: Detector) -> None:
    rows = normal_stream(300)
    a, b = trained(template, rows), trained(template, rows)
    probes = normal_stream(20, seed=1)
    assert [a.score_one(x) for x in probes] == [b.score_one(x) for x in probes]


def test_scores_finite(template: Detector) -> None:
    det = template.clone()
    for x in normal_stream(300):
        assert math.isfinite(det.score_one(x))
        det.learn_one(x)
        assert all(math.isfinite(v) for v in det.contributions_one(x).values())


def test_constant_input_scores_low(template: Detector) -> None:
    const = {"flow": 30.0, "pressure": 2.0, "temp": 70.0}
    det = trained(template, [const] * 300)
    spike = {"flow": 90.0, "pressure": 2.0, "temp": 70.0}
    assert det.score_one(const) <= 0.5
    assert det.score_one(const) < det.score_one(spike)


def test_spike_scores_higher_than_normal(template: Detector) -> None:
    det = trained(template, normal_stream(400))
    normal_scores = sorted(det.score_one(x) for x in normal_stream(100, seed=2))
    spike = {"flow": 60.0, "pressure": 5.0, "temp": 70.0}
    assert det.score_one(spike) > normal_scores[94]


def test_state_roundtrip_same_scores(template: Detector) -> None:
    """A detector restored from its snapshot scores exactly like the original. Snapshots use
    the safe state codec (never pickle)."""
    det = trained(template, normal_stream(200))
    restored = copy.deepcopy(det)
    via_state = type(det).from_state(det.to_state())
    for x in normal_stream(100, seed=3):
        s = det.score_one(x)
        assert restored.score_one(x) == s
        assert via_state.score_one(x) == s
        for d in (det, restored, via_state):
            d.learn_one(x)


def test_learn_and_score_do_not_mutate_input(template: Detector) -> None:
    det = template.clone()
    for x in normal_stream(120):
        before = copy.deepcopy(x)
        det.learn_one(x)
        det.score_one(x)
        det.contributions_one(x)
        assert x == before


def test_contributions_point_at_the_faulty_sensor() -> None:
    for template in (EWZScore(), Mahalanobis(), ResidualDrift(min_fit=100, refit_every=50)):
        det = trained(template, normal_stream(400))
        c = det.contributions_one({"flow": 30.0, "pressure": 2.0, "temp": 90.0})
        assert max(c, key=c.get) == "temp", template


@pytest.mark.parametrize("module", ["anomaly.machine", "anomaly.sensorwatch", "anomaly.detectors.base",
                                    "anomaly.detectors.drift", "anomaly.detectors.ewzscore",
                                    "anomaly.detectors.health", "anomaly.detectors.mahalanobis",
                                    "anomaly.detectors.threshold", "anomaly.regime"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
