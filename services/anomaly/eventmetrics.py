"""Quality figures of an anomaly detector: row-level, event-level and NAB changepoint score.

Why event-level figures beside row-level F1: maintenance acts on *episodes* (an alarm opens,
someone looks), and row-level F1 flatters on data with a high anomaly share (on SKAB an
always-on alarm scores F1 about 0.7). The same functions score SKAB (``anomaly.skab``) and
the factory simulator (``anomaly.simeval``), so their figures mean the same thing.

Event-level rules (times in microseconds):

- a *true episode* is ``(start, end)``: a run of labelled rows, or an injected fault window;
- an alarm *opening* is the time an alarm episode starts (the service's first event of it);
- a true episode is *detected* when an opening falls in ``[start, end + grace]``; its
  *delay* is the first such opening minus ``start``. An alarm already on when the fault
  starts does not count (it was raised for something else);
- an opening inside no ``[start, end + grace]`` is a *false-alarm episode*; their number is
  reported per machine-day of scored data.

Changepoint score: NAB, standard profile (``A_tp = 1``, ``A_fp = -0.11``, ``A_fn = -1``). A
window of 60 s starts at each labelled changepoint (overlapping windows merge). In a window
only the first detection counts, worth ``A_tp * s(p)`` with NAB's scaled sigmoid
``s(p) = 2 / (1 + exp(5 p)) - 1`` and ``p`` the relative position in the window (-1 at its
start, 0 at its end). A detection outside every window costs ``A_fp * -s(p)``, ``p`` being
the distance after the end of the previous window in window lengths (full ``A_fp`` before
any window). A window without detection costs ``A_fn``. Normalised so the null detector
(never alarms) scores 0 and the perfect one (first instant of every window) 100. This
mirrors NAB's sweeper for binary alarms (no threshold sweep); published NAB figures come
from other implementations, so compare with care.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAB_WINDOW_S = 60.0
A_TP, A_FP, A_FN = 1.0, 0.11, 1.0  # NAB standard profile (A_fp and A_fn are penalties)
US_PER_DAY = 86_400 * 1_000_000

Span = tuple[int, int]


def rates(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Row-level F1, precision, FAR = FP / actual negatives, MAR = FN / actual positives."""
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "far": fp / (fp + tn) if fp + tn else 0.0,
        "mar": fn / (fn + tp) if fn + tp else 0.0,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }


def confusion(alarms: Sequence[bool], labels: Sequence[int]) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` of row alarms against 0/1 labels."""
    tp = fp = fn = tn = 0
    for a, y in zip(alarms, labels, strict=True):
        if a:
            tp, fp = (tp + 1, fp) if y else (tp, fp + 1)
        else:
            fn, tn = (fn + 1, tn) if y else (fn, tn + 1)
    return tp, fp, fn, tn


def label_episodes(ts: Sequence[int], labels: Sequence[int]) -> list[Span]:
    """Maximal runs of rows labelled 1, as ``(first ts, last ts)``."""
    out: list[Span] = []
    start: int | None = None
    for i, y in enumerate(labels):
        if y and start is None:
            start = ts[i]
        elif not y and start is not None:
            out.append((start, ts[i - 1]))
            start = None
    if start is not None:
        out.append((start, ts[-1]))
    return out


def alarm_opens(ts: Sequence[int], alarms: Sequence[bool]) -> list[int]:
    """Times where the alarm state goes from off to on (on at the first row counts)."""
    return [t for i, t in enumerate(ts) if alarms[i] and (i == 0 or not alarms[i - 1])]


@dataclass(frozen=True, slots=True)
class Match:
    """Opening times against true episodes: per-episode delay (None if missed), false openings."""

    delays_us: tuple[int | None, ...]
    false_opens: tuple[int, ...]


def match_episodes(truth: Sequence[Span], opens: Sequence[int], grace_us: int) -> Match:
    """Match alarm openings to true episodes (rules in the module docstring)."""
    delays: list[int | None] = []
    used: set[int] = set()
    for start, end in truth:
        hits = [t for t in opens if start <= t <= end + grace_us]
        used.update(hits)
        delays.append(min(hits) - start if hits else None)
    return Match(tuple(delays), tuple(t for t in opens if t not in used))


def event_figures(matches: Sequence[Match], scored_us: int) -> dict[str, Any]:
    """Pooled event-level figures of several machines (or files) scored for ``scored_us``."""
    delays = [d / 1e6 for m in matches for d in m.delays_us if d is not None]
    episodes = sum(len(m.delays_us) for m in matches)
    false = sum(len(m.false_opens) for m in matches)
    days = scored_us / US_PER_DAY
    return {
        "episodes": episodes, "detected": len(delays),
        "recall": len(delays) / episodes if episodes else 0.0,
        "delay_s_mean": statistics.fmean(delays) if delays else None,
        "delay_s_median": statistics.median(delays) if delays else None,
        "false_alarm_episodes": false, "machine_days": days,
        "false_alarms_per_machine_day": false / days if days else 0.0,
    }


def _scaled_sigmoid(p: float) -> float:
    if p > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def nab_windows(ts: Sequence[int], cps: Sequence[int], start: int) -> list[tuple[float, float]]:
    """Merged ``[t, t + 60 s]`` windows (seconds) for labelled changepoints at rows >= start."""
    wins: list[list[float]] = []
    for i in range(start, len(ts)):
        if cps[i]:
            t = ts[i] / 1e6
            if wins and t <= wins[-1][1]:
                wins[-1][1] = t + NAB_WINDOW_S
            else:
                wins.append([t, t + NAB_WINDOW_S])
    return [(a, b) for a, b in wins]


def nab_raw(windows: Sequence[tuple[float, float]], detections: Sequence[float]) -> float:
    """Raw NAB score (standard profile) of detection times (seconds) against windows."""
    score = 0.0
    hit = [False] * len(windows)
    for t in sorted(detections):
        inside = None
        prev = None
        for j, (a, b) in enumerate(windows):
            if a <= t <= b:
                inside = j
                break
            if b < t:
                prev = j
        if inside is not None:
            if not hit[inside]:
                a, b = windows[inside]
                hit[inside] = True
                score += A_TP * _scaled_sigmoid(-(b - t) / (b - a))
        elif prev is not None:
            a, b = windows[prev]
            score += A_FP * _scaled_sigmoid((t - b) / (b - a))
        else:
            score -= A_FP
    score -= A_FN * hit.count(False)
    return score


def nab_normalised(raw: float, n_windows: int) -> float:
    """0 = null detector, 100 = perfect detector (first instant of every window)."""
    null = -A_FN * n_windows
    perfect = A_TP * _scaled_sigmoid(-1.0) * n_windows
    return 100.0 * (raw - null) / (perfect - null) if n_windows else 0.0
