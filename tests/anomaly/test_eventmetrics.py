"""Event-level, row-level and NAB figures on hand-made series with known answers."""

from __future__ import annotations

import math

import pytest

from anomaly.eventmetrics import (
    US_PER_DAY,
    Match,
    alarm_opens,
    confusion,
    event_figures,
    label_episodes,
    match_episodes,
    nab_normalised,
    nab_raw,
    nab_windows,
    rates,
)

S = 1_000_000  # one second in microseconds


def test_label_episodes_are_maximal_runs_including_one_at_the_end() -> None:
    ts = [i * S for i in range(10)]
    assert label_episodes(ts, [0, 0, 1, 1, 1, 0, 0, 1, 1, 0]) == [(2 * S, 4 * S), (7 * S, 8 * S)]
    assert label_episodes(ts, [1, 0, 0, 0, 0, 0, 0, 0, 1, 1]) == [(0, 0), (8 * S, 9 * S)]
    assert label_episodes(ts, [0] * 10) == []


def test_alarm_opens_are_off_to_on_transitions() -> None:
    ts = [10, 20, 30, 40, 50, 60]
    assert alarm_opens(ts, [True, True, False, True, False, True]) == [10, 40, 60]
    assert alarm_opens(ts, [False] * 6) == []


def test_match_first_opening_in_window_gives_delay_others_are_false() -> None:
    truth = [(100 * S, 200 * S), (500 * S, 600 * S), (800 * S, 850 * S)]
    opens = [50 * S, 150 * S, 160 * S, 620 * S, 700 * S, 900 * S]
    m = match_episodes(truth, opens, grace_us=30 * S)
    # 150 s and 160 s both fall in the first window (first counts); 620 s is within the grace
    # of the second; nothing opens in [800, 880] s: missed.
    assert m.delays_us == (50 * S, 120 * S, None)
    assert m.false_opens == (50 * S, 700 * S, 900 * S)


def test_alarm_already_on_before_the_fault_does_not_detect_it() -> None:
    m = match_episodes([(100 * S, 200 * S)], [90 * S], grace_us=0)
    assert m.delays_us == (None,) and m.false_opens == (90 * S,)


def test_event_figures_pool_machines_and_count_false_alarms_per_machine_day() -> None:
    a = Match(delays_us=(10 * S, None), false_opens=(1, 2, 3))
    b = Match(delays_us=(30 * S,), false_opens=(4,))
    ev = event_figures([a, b], scored_us=2 * US_PER_DAY)
    assert (ev["episodes"], ev["detected"]) == (3, 2)
    assert ev["recall"] == pytest.approx(2 / 3)
    assert ev["delay_s_mean"] == pytest.approx(20.0) and ev["delay_s_median"] == pytest.approx(20.0)
    assert ev["false_alarm_episodes"] == 4 and ev["machine_days"] == pytest.approx(2.0)
    assert ev["false_alarms_per_machine_day"] == pytest.approx(2.0)
    empty = event_figures([Match((None,), ())], scored_us=US_PER_DAY // 2)
    assert empty["delay_s_mean"] is None and empty["recall"] == 0.0
    assert empty["false_alarms_per_machine_day"] == 0.0


def test_row_rates_and_the_all_alarm_baseline() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    c = confusion([False, True, False, False, True, True, True, False, False, False], labels)
    assert c == (3, 1, 3, 3)
    r = rates(*c)
    assert r["f1"] == pytest.approx(6 / 10) and r["far"] == pytest.approx(1 / 4)
    assert r["mar"] == pytest.approx(3 / 6) and r["precision"] == pytest.approx(3 / 4)
    base = rates(*confusion([True] * 10, labels))  # alarm on every row: F1 = 2p / (1 + p)
    assert base["f1"] == pytest.approx(2 * 0.6 / 1.6) and base["far"] == 1.0 and base["mar"] == 0.0


def test_nab_windows_merge_overlaps_and_skip_the_warmup() -> None:
    ts = [i * S for i in range(300)]
    cps = [0] * 300
    for i in (5, 100, 130, 250):
        cps[i] = 1
    assert nab_windows(ts, cps, start=50) == [(100.0, 190.0), (250.0, 310.0)]


def test_nab_scoring_profile() -> None:
    wins = [(100.0, 160.0)]
    assert nab_normalised(nab_raw(wins, []), 1) == 0.0
    assert nab_normalised(nab_raw(wins, [100.0]), 1) == pytest.approx(100.0)
    late = nab_raw(wins, [150.0])
    assert 0 < late < nab_raw(wins, [110.0])
    assert nab_raw(wins, [50.0]) == pytest.approx(-1.0 - 0.11)  # FP before any window + FN
    assert -1.0 < nab_raw(wins, [100.0, 170.0]) - nab_raw(wins, [100.0]) < 0.0


def test_nab_detection_at_window_end_scores_zero_raw() -> None:
    wins = [(0.0, 60.0), (200.0, 260.0)]
    assert nab_raw(wins, [60.0, 260.0]) == pytest.approx(0.0)  # s(0) = 0 per window
    perfect = 2 / (1 + math.exp(-5)) - 1
    assert nab_normalised(0.0, 2) == pytest.approx(100 * 2 / (2 * perfect + 2))
    # only the first detection in a window counts; a second one there costs nothing
    assert nab_raw(wins, [0.0, 30.0, 200.0]) == pytest.approx(2 * perfect)


def test_simulator_scoring_uses_the_same_event_rules() -> None:
    from anomaly.simeval import _score
    from plantstream.gateway.truth import FaultWindow

    m1, m2 = ("t", "s", "m1"), ("t", "s", "m2")
    truth = [FaultWindow("t", "s", "m1", "bearing_wear", ("temp",), 1000 * S, 2000 * S),
             FaultWindow("t", "s", "m2", "spikes", ("vib",), 50 * S, 80 * S)]  # starts in m2's warm-up
    opens = {m1: [(1500 * S, "temp"), (2030 * S, "vib"), (5000 * S, "temp")], m2: [(3000 * S, "vib")]}
    warm_end = {m1: 100 * S, m2: 100 * S}
    last_ts = {m1: 43_300 * S, m2: 43_300 * S}  # 12 h scored each: one machine-day in all
    res = _score(truth, opens, warm_end, last_ts, rows=10, seconds=1.0, sensors_per_machine=2.0,
                 n_machines=2)
    assert (res["faults_scored"], res["detected"], res["sensor_hits"]) == (1, 1, 1)
    assert res["per_fault"][1] == {"machine": "m2", "kind": "spikes", "excluded": "starts during warm-up"}
    ev = res["events"]
    assert (ev["episodes"], ev["detected"], ev["delay_s_mean"]) == (1, 1, 500.0)
    # 2030 s is within the 60 s grace of m1's fault; 5000 s on m1 and 3000 s on m2 are false
    assert ev["false_alarm_episodes"] == 2 and res["false_alarms"] == 2
    assert ev["machine_days"] == pytest.approx(1.0)
    assert ev["false_alarms_per_machine_day"] == pytest.approx(2.0)
    assert res["false_alarms_per_machine_hour"] == pytest.approx(2 / 24)
