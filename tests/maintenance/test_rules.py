"""Pure rule logic: one shared check suite every rule must pass, the doctests, and the
numbers behind the trend rule."""

from __future__ import annotations

import doctest
import importlib
import math
from collections import deque

import numpy as np
import pytest

from maintenance.machine import state_codec
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


def test_rule_survives_a_snapshot_mid_stream(rule: AlertRule) -> None:
    """The service keeps rules in its state store: a restored rule must continue identically."""
    obs = stream()
    half = len(obs) // 2
    a = rule.clone()
    run(a, obs[:half])
    b = state_codec().decode(state_codec().encode(a))
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
                                    "maintenance.words", "maintenance.problems",
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


def _sent(ts: int, ingest_s: float, sent_s: float, sensor: str = "temp") -> Reading:
    """A reading sampled at ``ts`` whose batch the gateway sent at ``sent_s`` (its clock) and
    ingest accepted at ``ingest_s`` (platform clock), seconds."""
    return Reading(sensor, ts, 50.0, ingest_time=int(ingest_s * 1e6), spec=SPEC, sent_at=int(sent_s * 1e6))


def test_clock_skew_uses_sent_at_so_buffered_and_historical_data_is_no_skew() -> None:
    rule = ClockSkew(max_skew_s=300)
    # a week-old backlog sent now by a gateway with a good clock: 20 batches of 30 readings
    week = 7 * 86_400
    found = [f for b in range(20) for i in range(30)
             for f in rule.update(_sent((b * 30 + i) * 1_000_000, week + b + 0.3, week + b))]
    assert found == []
    old_rule = ClockSkew(max_skew_s=300)  # the same data without sent_at (v1 producers): misfires
    assert [f for b in range(20) for i in range(30)
            for f in old_rule.update(Reading("temp", (b * 30 + i) * 1_000_000, 50.0,
                                             ingest_time=int((week + b) * 1e6), spec=SPEC))]


def test_clock_skew_from_sent_at_finds_a_gateway_ahead_or_behind_per_batch() -> None:
    for offset in (-900.0, 900.0):  # gateway clock ahead (sent_at later than ingest) and behind
        rule = ClockSkew(max_skew_s=300, batch_window=5)
        found = []
        for b in range(8):
            ingest = 10_000.0 + 10 * b
            found += [f for i in range(20) for f in rule.update(_sent(i, ingest, ingest - offset))]
        assert len(found) == 4  # one per batch once 5 batches are in the window, not one per reading
        assert all(f.severity == "warning" and f.evidence["from_sent_at"] == 1.0 for f in found)
        assert round(found[-1].evidence["skew_s"]) == offset
        assert ("behind" if offset > 0 else "ahead of") in found[-1].title


def test_one_batch_stuck_in_a_queue_is_not_clock_skew() -> None:
    rule = ClockSkew(max_skew_s=300, batch_window=5)
    found = []
    for b in range(12):
        delay = 1200.0 if b == 6 else 0.5  # ingest caught up on one old batch
        found += rule.update(_sent(0, 1000.0 * b + delay, 1000.0 * b))
    assert found == []


def test_clock_skew_fault_of_the_simulator_is_found_from_sent_at() -> None:
    from plantstream.gateway.simulator import Factory

    start = 1_777_636_800_000_000
    f = Factory.build(1, seed=13, machine_types=["pump"], start_us=start, horizon=900,
                      faults=["clock_skew:machine=pump-01,start=300,duration=400,offset=-600"])
    rule = ClockSkew(max_skew_s=300)
    found = []
    for b in f.batches(batch_size=70):  # 7 sensors: 10 ticks per batch
        last_tick = start + (10 * b["sequence"] + 9) * 1_000_000  # true (platform) time of its last tick
        skewed = 300e6 <= last_tick - start < 700e6
        assert b["sent_at"] == last_tick + 50_000 - (600_000_000 if skewed else 0)  # the offset moves sent_at
        r = b["readings"][0]
        found += [(last_tick, x) for x in rule.update(Reading("vibration", r["ts"], r["value"],
                                                              last_tick + 150_000, sent_at=b["sent_at"]))]
    assert len(found) == 40 - 4  # every skewed batch once the window of 5 is full
    assert all(300e6 <= t - start < 700e6 and round(x.evidence["skew_s"]) == 600 for t, x in found)


def test_limit_title_severity_and_evidence_agree_after_a_critical_breach() -> None:
    """A cold pump: flow far below the critical limit, then between critical and warning. The
    alert stays critical (within the calm period severity does not fall), so its title and
    evidence name the critical limit and the reading that crossed it, with the latest reading
    alongside, in plain words."""
    from maintenance.lifecycle import AlertBook, Policy

    spec = {"unit": "m3/h", "warning_low": 3.0, "critical_low": 2.0}
    rule, book, policy = LimitRule(hold_s=7200), AlertBook("t", "s", "pump-01"), Policy()
    alerts = []
    for i, v in enumerate((0.5, 1.5, 2.6, 2.8, 2.9)):
        t = i * 1_000_000
        for f in rule.update(Reading("flow", t, v, t, spec, arrived=t)):
            alerts += [e.record for e in book.apply(f, t, policy, unit="m3/h")]
    book_alert = book.alerts[("condition", "*")].record()
    for rec in [*alerts, book_alert]:
        assert rec["severity"] == "critical" and rec["sensors"] == ["flow"]
        assert "critical limit 2 m3/h crossed" in rec["title"] and "warning limit" not in rec["title"]
        assert rec["evidence"]["limit"] == 2.0 and rec["evidence"]["value"] < 2.0
    # the last reading beyond the critical limit, and the latest one
    assert {k: v for k, v in book_alert["evidence"].items() if "." not in k} == {
        "value": 1.5, "limit": 2.0, "side": -1.0, "current_value": 2.9, "current_limit": 3.0,
        "latched": 1.0}  # it was critical: it waits for a person (lifecycle's latch)
    assert book_alert["evidence"]["flow.limit.current_value"] == 2.9
    assert book_alert["title"] == "Flow 1.5 m3/h; critical limit 2 m3/h crossed (now 2.9 m3/h)"
    # after the hold, a new warning-only breach is a warning again (a new alert by then)
    later = 7201 * 1_000_000 + 4_000_000
    (f,) = rule.update(Reading("flow", later, 2.9, later, spec, arrived=later))
    assert (f.severity, f.evidence, f.title) == ("warning", {"value": 2.9, "limit": 3.0, "side": -1.0},
                                                 "Flow 2.9 m3/h, below its warning limit 3 m3/h")


def test_rules_pickled_by_the_previous_version_still_load() -> None:
    """The state store holds rules: state written before this version must restore (the state
    codec calls the rule's ``__setstate__`` with the fields it has)."""
    old_limit = LimitRule.__new__(LimitRule)
    old_limit.__setstate__({})
    assert old_limit._get_params() == {"hold_s": 7200.0} and old_limit.update(
        Reading("temp", 0, 99.0, 0, SPEC))[0].severity == "critical"
    old_skew = ClockSkew.__new__(ClockSkew)
    old_skew.__setstate__({"max_skew_s": 60.0, "window": 2, "_skews": deque(maxlen=2)})
    found = [f for s in range(6)
             for f in old_skew.update(Reading("temp", 0, 1.0, 0, sent_at=10**9 * (s + 1)))]
    assert found and old_skew.clone()._get_params() == {"max_skew_s": 60.0, "window": 2, "batch_window": 5}
