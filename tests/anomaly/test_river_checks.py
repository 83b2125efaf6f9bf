"""Every detector the service can build is a River anomaly detector that passes River's own check
suite, ``river.checks.check_estimator``, unchanged.

River runs its anomaly checks (learning, purity, shuffled/emerging/disappearing features,
pickling, clone independence, bounded memory, ROC AUC >= 0.5) on its ``CreditCard`` data set,
which it downloads from the internet. This machine reaches only package registries, so
:func:`machine_stream` stands in for it: readings of a pump on a shared load cycle (correlated
sensors, the way the service sees them) with labelled fault episodes and spikes, one of them
only visible in how sensors move together. Everything else is River's code, called through its public entry
point.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import pytest
from river import checks, preprocessing

from anomaly.detectors import EWZScore, Mahalanobis, ResidualDrift
from anomaly.detectors.base import Detector
from anomaly.machine import DEFAULT_MULTIVARIATE, DEFAULT_UNIVARIATE

SENSORS = ("current", "speed", "pressure", "flow", "temp_bearing", "vibration")


def machine_stream(rows: int, seed: int = 7) -> Iterator[tuple[dict[str, float], bool]]:
    """``(reading, is_anomaly)`` pairs, like River's data sets.

    Machine faults are episodes, not independent points (unlike CreditCard's frauds): three
    sustained ones (a bearing-temperature step, a pressure that stops following the load, a
    vibration burst), 40 rows each, at 40 %, 60 % and 80 % of the stream, plus 1 % single-row
    spikes. A per-sensor model must see the step and the spikes, only a joint one the decoupled
    pressure, and a slow-drift model the sustained episodes.
    """
    rng = random.Random(seed)
    episodes = {int(rows * f): kind for f, kind in ((0.4, "step"), (0.6, "decoupled"), (0.8, "burst"))}
    kind, until = "", -1
    for i in range(rows):
        load = 1.0 + 0.3 * math.sin(i / 40.0)
        x = {
            "current": 12.0 * load + rng.gauss(0, 0.2),
            "speed": 1450.0 * load + rng.gauss(0, 5.0),
            "pressure": 4.0 * load + rng.gauss(0, 0.05),
            "flow": 30.0 * load + rng.gauss(0, 0.4),
            "temp_bearing": 45.0 + 5.0 * load + rng.gauss(0, 0.3),
            "vibration": 2.5 + rng.gauss(0, 0.1),
        }
        if i in episodes:
            kind, until = episodes[i], i + 40
        anomalous = i < until
        if anomalous and kind == "step":
            x["temp_bearing"] += 4.0
        elif anomalous and kind == "decoupled":  # inside its normal range, at the wrong load
            x["pressure"] = 4.0 * (2.0 - load) + rng.gauss(0, 0.05)
        elif anomalous and kind == "burst":
            x["vibration"] += abs(rng.gauss(2.0, 0.5))
        elif i > 50 and rng.random() < 0.01:
            k = rng.choice(SENSORS)
            x[k] *= rng.choice((0.8, 1.2))
            anomalous = True
        yield x, anomalous


class _Stream:
    """Re-iterable, like River's data sets (``check_estimator`` iterates each more than once)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def __iter__(self) -> Iterator[tuple[dict[str, float], bool]]:
        return machine_stream(self.rows)


def _local_datasets(model: object, scale: int = 1) -> Iterator[_Stream]:
    yield _Stream(1000 * scale)


DETECTORS: list[Detector] = [
    DEFAULT_UNIVARIATE,
    DEFAULT_MULTIVARIATE,
    EWZScore(alpha=0.01),
    Mahalanobis(),
    ResidualDrift(min_fit=100, refit_every=100, drift_tau=20.0),
    ResidualDrift(),
]


@pytest.mark.parametrize("detector", DETECTORS, ids=repr)
def test_detector_passes_rivers_check_estimator(detector: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "_yield_datasets", _local_datasets)
    names = [getattr(c, "__name__", "") for c in checks.yield_checks(detector.clone())]
    assert "check_roc_auc" in names and "check_emerging_features" in names  # the anomaly suite ran
    checks.check_estimator(detector.clone())


def test_the_stand_in_data_set_is_not_trivial() -> None:
    """An always-high or constant score would not pass ROC AUC >= 0.5 by luck: the labels are mixed."""
    labels = [y for _, y in machine_stream(1000)]
    assert 100 <= sum(labels) <= 200


def test_a_detector_composes_with_rivers_preprocessing() -> None:
    model = preprocessing.StandardScaler() | EWZScore(rel_tol=0.0)
    scores, labels = [], []
    for x, y in machine_stream(2000):
        scores.append(model.score_one(x))
        model.learn_one(x)
        labels.append(y)
    normal = sorted(s for s, y in zip(scores[100:], labels[100:], strict=True) if not y)
    anomalous = [s for s, y in zip(scores[100:], labels[100:], strict=True) if y]
    p99 = normal[int(0.99 * (len(normal) - 1))]
    assert sum(s > p99 for s in anomalous) >= 0.5 * len(anomalous)
