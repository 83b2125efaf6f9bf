"""Pure rule logic: one shared check suite every rule must pass, the doctests, and the
numbers behind the trend rule."""

from __future__ import annotations

import doctest
import importlib
import math
import pickle

import numpy as np
import pytest

from maintenance.robust import theil_sen, time_to_limit
from maintenance.rules import (
    SEVERITIES,
    AlertRule,
    Anomaly,
    ClockSkew,
    LimitRule,
    NoData,
    PersistentAnomaly,
    Reading,
    StuckSensor,
    TrendToLimit,
)

SPEC = {"unit": "degC", "warning_high": 80.0, "critical_high": 95.0, "warning_low": 5.0,
        "critical_low": 0.0, "recommended_action": "Check lubrication."}
H = 3_600_000_000


def stream(n: int = 600) -> list[Reading | Anomaly]:
    """Readings that trip every reading rule (ramp to the limit, then stuck, skewed clock) mixed
    with anomaly events."""
    out: list[Reading | Anomaly] = []
    for i in range(n):
        ts = i * 60_000_000
        value = 50.0 + 0.1 * i if i < n // 2 else 99.0
        out.append(Reading("temp", ts, value, ingest_time=ts + 900_000_000, spec=SPEC, arrived=ts))
        if i % 5 == 0:
            out.append(Anomaly(f"e{i}", "temp", ts, score=3.0, threshold=1.0, share=0.7, value=value))
    return out


RULES = [PersistentAnomaly(k=3, window_s=600), LimitRule(),
         TrendToLimit(horizon_h=48, bucket_s=600, min_points=12),
         StuckSensor(min_readings=10, min_duration_s=300),
         NoData(max_silence_s=60), ClockSkew(max_skew_s=300)]


@pytest.fixture(params=RULES, ids=lambda r: type(r).__name__)
def rule(request: pytest.FixtureRequest) -> AlertRule:
    return request.param.clone()


def run(rule: AlertRule, obs: list[Reading | Anomaly]) -> list:
    found = []
    for o in obs:
        found.extend(rule.update(o))
    found.extend(rule.check(obs[-1].ts + H))
    return found


def test_rule_fires_on_its_condition_with_well_formed_findings(rule: AlertRule) -> None:
    found = run(rule, stream())
    assert found, f"{rule!r} never fired on a stream built to trip it"
    for f in found:
        assert f.rule == rule.name and f.sensor == "temp" and f.severity in SEVERITIES and f.title
        assert f.count >= 1
        assert all(isinstance(v, float) and math.isfinite(v) for v in f.evidence.values()), f.evidence


def test_rule_clone_has_same_params_and_no_state(rule: AlertRule) -> None:
    run(rule, stream())
    fresh = rule.clone()
    assert type(fresh) is type(rule) and fresh._get_params() == rule._get_params()
    assert [f.title for f in run(fresh, stream())] == [f.title for f in run(rule.clone(), stream())]


def test_rule_survives_pickle_mid_stream(rule: AlertRule) -> None:
    """The service keeps rules in a faust table: a restored rule must continue identically."""
    obs = stream()
    half = len(obs) // 2
    a = rule.clone()
    run(a, obs[:half])
    b = pickle.loads(pickle.dumps(a))
    assert [f.title for f in run(a, obs[half:])] == [f.title for f in run(b, obs[half:])]


def test_rule_is_quiet_on_healthy_data(rule: AlertRule) -> None:
    rng = np.random.default_rng(1)
    obs = [Reading("temp", i * 60_000_000, 50.0 + float(rng.normal(0, 0.5)),
                   ingest_time=i * 60_000_000 + 1000, spec=SPEC, arrived=i * 60_000_000) for i in range(600)]
    found = [f for o in obs for f in rule.update(o)] + rule.check(obs[-1].arrived + 30_000_000)
    assert found == []


def test_rule_ignores_nan_and_unknown_specs_without_crashing(rule: AlertRule) -> None:
    for i in range(50):
        rule.update(Reading("temp", i * 60_000_000, float("nan"), ingest_time=i * 60_000_000, spec=None))
    rule.check(10**12)


@pytest.mark.parametrize("module", ["maintenance.robust", "maintenance.rules.base",
                                    "maintenance.rules.persistent_anomaly", "maintenance.rules.limits",
                                    "maintenance.rules.trend", "maintenance.rules.stuck",
                                    "maintenance.rules.no_data", "maintenance.rules.clock_skew",
                                    "plantstream.alertstate",
                                    "plantstream.notify.config", "plantstream.notify.signing"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_theil_sen_interval_covers_the_true_slope_under_noise_and_outliers() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(200):
        x = np.arange(40.0)
        y = 0.5 * x + rng.normal(0, 2.0, 40)
        y[rng.integers(0, 40, 4)] += 60.0  # 10% wild outliers
        fit = theil_sen(x, y)
        covered += fit.slope_low <= 0.5 <= fit.slope_high
    assert covered >= 180  # about 95% nominal; outliers cost a little


def test_time_to_limit_band_is_ordered_and_contains_the_truth_on_a_linear_drift() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(0.0, 12.0, 1 / 6)  # 12 h of 10-minute means
    y = 60.0 + 1.0 * x + rng.normal(0, 0.3, x.size)
    fit = theil_sen(x - x[-1], y)
    ttl = time_to_limit(fit, 95.0)
    truth = 95.0 - (60.0 + x[-1])  # hours left at 1 degC/h
    assert ttl is not None and ttl.low <= truth <= ttl.high and ttl.low <= ttl.expected <= ttl.high


def test_trend_rule_ignores_warm_up_and_late_readings() -> None:
    rule = TrendToLimit(horizon_h=24, bucket_s=600)  # default min_points: 6 h of history
    warm = [Reading("temp", i * 60_000_000, 20.0 + 40 * (1 - math.exp(-i / 30)), 0, SPEC) for i in range(300)]
    assert [f for r in warm for f in rule.update(r)] == []
    assert rule.update(Reading("temp", 0, 500.0, 0, SPEC)) == []  # late: its bucket is closed
