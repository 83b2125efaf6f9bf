"""Per-machine online anomaly detection: the object the service and the benchmark share.

Pipeline per reading row (one timestamp, several sensors of one machine):

1. EW smoothing of each sensor (``smoothing``): machine faults are sustained episodes, and
   averaging a few seconds of readings lifts a small level shift out of the sensor noise.
2. Warm-up (first ``warmup`` rows): detectors learn from the smoothed rows; nothing alarms.
   At the end of warm-up each detector's scores on the warm-up rows are re-computed with the
   final model and their ``calibration_q`` quantile becomes that detector's unit, so scores of
   different detectors can be combined (max of weighted, calibrated scores) and the
   threshold is calibrated on the machine's own normal data.
3. After warm-up: score, threshold with hysteresis, optionally keep learning (policy
   ``learn_after_warmup``): ``"never"`` (default; nothing can absorb a long fault),
   ``"normal"`` (only rows judged normal) or ``"always"``. Only the models keep learning: the
   threshold stays where the warm-up put it (in calibrated score units). Learning it from the
   scores it accepted let it climb with a slow fault (a motor overheating over 1.5 h raised it
   6x and was never reported), and learning only scores below its quantile made it sink.

Episodes, not states: with a ``regime`` check (:class:`~anomaly.regime.RegimeCheck`), an
episode that has lasted and settled at a new stable level (flat again, not still moving away
from the old normal) is a changed operating point, not a fault that lasts for ever: the
detector *re-baselines*. The episode closes on that row (``Verdict.rebaseline`` names each
sensor's shift), the models start afresh and learn the new level over a new warm-up (no
alarms meanwhile), and the sensor watch's drift model re-learns too. A developing fault keeps
moving, never settles and keeps alarming.

Missing and new sensors: the models take the sensors that have reported by the first learned
row. A sensor that starts reporting later (NaN or absent until then, or new in the data of a
machine unknown to the registry) is kept out of the models until it has reported for
``join_rows`` rows (``warmup - settle``); then it *joins*: the multivariate model is refitted
on the recent rows judged normal, which include it, and the per-sensor model learns it from
them. A warm-up with too little data (fewer than ``min_warmup_rows`` rows with any reading)
is extended until it has them, and says so in the log, as it does for sensors that never
reported during warm-up.

Snapshots: a ``MachineDetector`` is plain Python/numpy state, written with the safe state
codec of ``anomaly.snapshot`` (never pickle), and scoring resumes identically after a restore.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from anomaly.detectors.base import Detector
from anomaly.detectors.ewzscore import EWZScore
from anomaly.detectors.mahalanobis import Mahalanobis
from anomaly.detectors.threshold import AdaptiveThreshold
from anomaly.regime import RegimeCheck
from anomaly.sensorwatch import SensorAlarm, SensorWatch

log = logging.getLogger(__name__)
_LEARN_POLICIES = ("never", "normal", "always")
# Templates (always cloned, never mutated). Chosen on SKAB, see anomaly.skab and the README.
DEFAULT_UNIVARIATE = EWZScore(rel_tol=0.005, combine="max")
# refresh_every=8: its eigendecomposition every 8th learned row, not every row. Measured with
# `plantstream bench anomaly`: the same SKAB and simulator figures (F1 0.742 vs 0.741 on all 30
# files; 11/12 faults, 4.1 false alarms per machine-day, either way) at 142k readings/s, not 107k.
DEFAULT_MULTIVARIATE = Mahalanobis(n_components=3, rel_tol=0.005, refresh_every=8)
DEFAULT_THRESHOLD = AdaptiveThreshold(q=0.99, factor=2.5, k_on=5, n_on=5, m_off=5)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of one row.

    ``score`` and ``threshold`` are in units of the warm-up ``calibration_q`` quantile of the
    machine's own scores; ``is_anomaly`` is the state after hysteresis; ``state_changed`` is
    True on the row where that state flipped (open/close an anomaly episode);
    ``contributions`` maps sensor -> share of the score (sums to 1; filled when anomalous
    unless the detector was built with ``contributions="always"``). ``rebaseline`` is set on
    the row where a settled episode closed by re-baselining: ``(sensor, shift, level)`` for
    each sensor, its shift in its old normal standard deviations and its new level, largest
    shift first.
    """

    ts_micros: int
    score: float
    threshold: float
    is_anomaly: bool
    state_changed: bool
    warming_up: bool
    contributions: dict[str, float] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    model: str = ""
    model_version: str = ""
    sensor_alarms: tuple[SensorAlarm, ...] = ()
    rebaseline: tuple[tuple[str, float, float], ...] = ()


class MachineDetector:
    """Online anomaly detector for one machine (per-sensor + multivariate, thresholded).

    Parameters
    ----------
    sensors
        Sensor ids to use; ``None`` takes the keys of the first row. Unknown keys are ignored.
    warmup
        Rows used only for learning and calibration before any verdict can be anomalous.
    settle
        The first ``settle`` warm-up rows only prime the smoother (not learned).
    smoothing
        EW weight of the newest reading in the per-sensor smoother (1.0 = no smoothing).
    univariate, multivariate
        Detector templates (cloned; either may be ``None``, not both). Defaults:
        ``EWZScore(rel_tol=0.005)`` per sensor and ``Mahalanobis(n_components=3,
        rel_tol=0.005)`` (T-squared + Q) across sensors.
    multivariate_weight
        Weight of the calibrated multivariate score in the max-combination.
    threshold
        :class:`AdaptiveThreshold` template (cloned).
    calibration_q
        Quantile of warm-up scores that defines each detector's score unit.
    learn_after_warmup
        ``"never"``, ``"normal"`` or ``"always"`` (see module docstring).
    contributions
        ``"anomalous"`` (compute only for anomalous rows: cheaper) or ``"always"``.
    watch
        Optional :class:`~anomaly.sensorwatch.SensorWatch` template (cloned): per-sensor
        drift / stuck / dropout channels, reported in ``Verdict.sensor_alarms``. It learns
        from the warm-up rows and afterwards from the rows the learning policy learns.
    regime
        Optional :class:`~anomaly.regime.RegimeCheck` template (cloned): re-baseline when an
        episode settles at a new stable level (see module docstring). ``None``: never.

    >>> md = MachineDetector(warmup=60, settle=10)
    >>> rows = [(i * 1_000_000, {"p": 1.0 + 0.01 * (i % 3), "t": 20.0}) for i in range(100)]
    >>> rows += [(i * 1_000_000, {"p": 5.0, "t": 20.0}) for i in range(100, 120)]
    >>> verdicts = md.process_many(rows)
    >>> any(v.is_anomaly for v in verdicts[:100]), verdicts[-1].is_anomaly
    (False, True)
    >>> max(verdicts[-1].contributions, key=verdicts[-1].contributions.get)
    'p'
    """

    # Class-level defaults: snapshots written before these existed restore with them.
    _members: list[str] | None = None  # sensors in the models (None: not started yet)
    _joining: dict[str, int] | None = None  # sensor -> rows reported while not in the models
    _recent: deque[dict[str, float]] | None = None  # recent normal rows, while a sensor is joining
    _warned: bool = False
    regime: RegimeCheck | None = None
    _warm_from: int = 0  # row where the current warm-up began (after a re-baseline: that row)

    def __init__(
        self,
        sensors: Sequence[str] | None = None,
        warmup: int = 400,
        settle: int = 50,
        smoothing: float = 0.2,
        univariate: Detector | None = DEFAULT_UNIVARIATE,
        multivariate: Detector | None = DEFAULT_MULTIVARIATE,
        multivariate_weight: float = 0.5,
        threshold: AdaptiveThreshold = DEFAULT_THRESHOLD,
        calibration_q: float = 0.99,
        learn_after_warmup: str = "never",
        contributions: str = "anomalous",
        model_name: str | None = None,
        model_version: str = "1",
        watch: SensorWatch | None = None,
        regime: RegimeCheck | None = None,
    ) -> None:
        if learn_after_warmup not in _LEARN_POLICIES:
            raise ValueError(f"learn_after_warmup must be one of {_LEARN_POLICIES}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError("smoothing must be in (0, 1]")
        if settle >= warmup:
            raise ValueError("settle must be smaller than warmup")
        self.sensors = list(sensors) if sensors is not None else None
        self._keys: list[str] | None = list(sensors) if sensors is not None else None
        self.warmup = warmup
        self.settle = settle
        self.smoothing = smoothing
        if univariate is None and multivariate is None:
            raise ValueError("need at least one detector")
        self.univariate = univariate.clone() if univariate is not None else None
        self.multivariate = multivariate.clone() if multivariate is not None else None
        self.multivariate_weight = multivariate_weight
        self.threshold = threshold.clone()
        self.calibration_q = calibration_q
        self.learn_after_warmup = learn_after_warmup
        self.contributions = contributions
        parts = [type(d).__name__.lower() for d in (self.univariate, self.multivariate) if d]
        self.model_name = model_name or "+".join(parts)
        self.model_version = model_version
        self.watch = watch.clone() if watch is not None else None
        self.regime = regime.clone() if regime is not None else None
        self.n_rows = 0
        self._smoothed: dict[str, float] = {}
        self._buffer: list[dict[str, float]] | None = []
        self._scale_u = 1.0
        self._scale_m = 1.0

    # ----------------------------------------------------------------------------------------
    def _smooth(self, x: Mapping[str, float]) -> tuple[dict[str, float], tuple[str, ...]]:
        if self._keys is None:
            self._keys = sorted(x)
        elif self.sensors is None and len(x) > len(self._keys):  # a sensor new in the data
            self._keys += sorted(k for k in x if k not in self._keys)
        a = self.smoothing
        sm = self._smoothed
        missing: list[str] = []
        for k in self._keys:
            v = x.get(k)
            if v is None or not math.isfinite(v):
                missing.append(k)
                continue
            prev = sm.get(k)
            sm[k] = v if prev is None else prev + a * (v - prev)
        return sm, tuple(missing)

    def _raw_scores(self, s: dict[str, float]) -> tuple[float, float]:
        su = self.univariate.score_one(s) if self.univariate is not None else 0.0
        sm = self.multivariate.score_one(s) if self.multivariate is not None else 0.0
        return su, sm

    def _combine(self, su: float, sm: float) -> float:
        cu = su / self._scale_u if self.univariate is not None else 0.0
        if self.multivariate is None:
            return cu
        return max(cu, self.multivariate_weight * sm / self._scale_m)

    def _learn(self, s: dict[str, float]) -> None:
        if self.univariate is not None:
            self.univariate.learn_one(s)
        if self.multivariate is not None:
            self.multivariate.learn_one(s)

    def _learn_around(self, s: dict[str, float], faulty: frozenset[str], thr: float, policy: str) -> None:
        """While a sensor is stuck or missing its frozen or stale value is not normal data, and
        the rows it makes anomalous are not the others' abnormal rows either: only the per-sensor
        model learns, the other sensors, judged on their own scores."""
        if self.univariate is None:
            return
        rest = {k: v for k, v in s.items() if k not in faulty}
        if rest and (policy == "always" or self.univariate.score_one(rest) / self._scale_u <= thr):
            self.univariate.learn_one(rest)

    def _calibrate(self) -> None:
        """End of warm-up: set score units and threshold from the buffered warm-up rows."""
        rows = self._buffer or []
        self._buffer = None
        if not rows:
            return
        if self.regime is not None:
            self.regime.baseline(rows)
        raw = [self._raw_scores(r) for r in rows]
        self._scale_u = _quantile(sorted(r[0] for r in raw), self.calibration_q) or 1.0
        self._scale_m = _quantile(sorted(r[1] for r in raw), self.calibration_q) or 1.0
        for su, sm in raw:
            self.threshold.learn(self._combine(su, sm))

    def _contrib(self, s: dict[str, float]) -> dict[str, float]:
        c: dict[str, float] = {}
        if self.univariate is not None:
            for k, v in self.univariate.contributions_one(s).items():
                c[k] = v / self._scale_u
        if self.multivariate is not None:
            w = self.multivariate_weight / self._scale_m
            for k, v in self.multivariate.contributions_one(s).items():
                c[k] = max(c.get(k, 0.0), w * v)
        total = math.fsum(v for v in c.values() if v > 0)
        if total <= 0:
            return {k: 0.0 for k in c}
        return {k: max(v, 0.0) / total for k, v in c.items()}

    @property
    def join_rows(self) -> int:
        """Rows a late sensor must report before it joins the models (its own warm-up)."""
        return self.warmup - self.settle

    @property
    def min_warmup_rows(self) -> int:
        """Learned rows (with any reading) the warm-up needs before it may end."""
        return max(self.threshold.min_samples, (self.warmup - self.settle) // 4)

    def _model_row(self, s: dict[str, float], missing: tuple[str, ...]) -> dict[str, float]:
        """``s`` restricted to the sensors in the models; counts the reports of the others."""
        members = self._members
        if members is None or len(s) == len(members):  # smoothed keys only grow: same set
            return s
        joining = self._joining
        if joining is None:
            joining = self._joining = {}
            self._recent = deque(maxlen=self.join_rows)
        inside = set(members)
        for k in s:
            if k not in inside and k not in missing:
                joining[k] = joining.get(k, 0) + 1
        return {k: s[k] for k in members}

    def _join(self, s: dict[str, float], normal: bool) -> None:
        """Keep ``s`` if normal; let every sensor that has reported for ``join_rows`` rows join."""
        joining, recent, members = self._joining, self._recent, self._members
        assert joining is not None and recent is not None and members is not None
        if normal:
            recent.append(dict(s))
        ready = sorted(k for k, n in joining.items() if n >= self.join_rows)
        if not ready:
            return
        rows = [r for r in recent if all(k in r for k in ready)]
        new = members + ready
        if self.multivariate is not None:
            mv = self.multivariate.clone()
            for r in rows:
                mv.learn_one({k: r[k] for k in new})
            self.multivariate = mv
            if self._buffer is None and rows:  # calibrated: keep its score unit the warm-up quantile
                scores = sorted(mv.score_one({k: r[k] for k in new}) for r in rows)
                self._scale_m = _quantile(scores, self.calibration_q) or 1.0
        if self.univariate is not None:
            for r in rows:
                self.univariate.learn_one({k: r[k] for k in ready})
        self._members = new
        for k in ready:
            del joining[k]
        if not joining:
            self._joining = self._recent = None
        log.info("sensors joined the machine model", extra={"sensors": ready, "rows": len(rows),
                                                              "model": self.model_name})

    def _warmup_done(self) -> bool:
        """Warm-up rows seen and enough of them learned; warns once when they were not."""
        buffer = self._buffer
        assert buffer is not None
        if len(buffer) >= self.min_warmup_rows:
            late = [k for k in self._keys or () if k not in (self._members or ())]
            if late:
                log.warning("sensors were not reporting when the model started; each joins it "
                            "after reporting for %d rows", self.join_rows, extra={"sensors": late})
            return True
        if not self._warned:
            self._warned = True
            log.warning("warm-up has too little data: %d of %d rows had a reading (%d needed); "
                        "extending it, no alarms until then", len(buffer), self.warmup - self.settle,
                        self.min_warmup_rows, extra={"model": self.model_name, "rows": self.n_rows})
        return False

    # ----------------------------------------------------------------------------------------
    def process_one(self, ts_micros: int, x: Mapping[str, float]) -> Verdict:
        """Learn from and score one row; return the verdict after thresholding."""
        s_all, missing = self._smooth(x)
        s = self._model_row(s_all, missing)
        i = self.n_rows - self._warm_from  # rows into the current warm-up
        self.n_rows += 1
        watch = self.watch
        if i < self.warmup or (self._buffer is not None and len(self._buffer) < self.min_warmup_rows):
            su, sm = self._raw_scores(s)
            score = self._combine(su, sm)
            rewarm = self._warm_from > 0
            if i >= self.settle and s:
                if self._members is None:
                    self._members = list(s)
                self._learn(s)
                assert self._buffer is not None
                self._buffer.append(dict(s))
            alarms: tuple[SensorAlarm, ...] = ()
            if watch is not None:  # after a re-baseline its stuck and dropout channels stay armed
                alarms = tuple(watch.step(ts_micros, _finite(self._keys, x, missing), s_all,
                                          i >= self.settle, rewarm))
            if self._joining is not None:
                self._join(s_all, i >= self.settle)
            if i + 1 >= self.warmup and self._warmup_done():
                self._calibrate()
                if watch is not None and not rewarm:
                    watch.end_warmup()
            return Verdict(
                ts_micros, score, math.inf, False, False, True, {}, missing,
                self.model_name, self.model_version, alarms,
            )
        if self._buffer is not None:  # warm-up never completed (e.g. warmup changed)
            self._calibrate()
        su, sm = self._raw_scores(s)
        score = self._combine(su, sm)
        th = self.threshold
        thr = th.threshold
        on, changed = th.step(score)
        policy = self.learn_after_warmup
        learn = policy == "always" or (policy == "normal" and not on and score <= thr)
        faulty = watch.faulty_sensors if watch is not None and policy != "never" else frozenset()
        if faulty:
            learn = False
            self._learn_around(s, faulty, thr, policy)
        elif learn:
            if self._members is None:
                self._members = list(s)
            self._learn(s)
        contrib = self._contrib(s) if (on or changed or self.contributions == "always") else {}
        alarms: tuple[SensorAlarm, ...] = ()
        if watch is not None:
            alarms = tuple(watch.step(ts_micros, _finite(self._keys, x, missing), s_all, learn, True))
        if self._joining is not None:
            self._join(s_all, not on and score <= thr)
        regime = self.regime
        if regime is not None and on:
            if changed:
                regime.reset()
            if regime.push(s):
                return self._rebaseline(ts_micros, score, thr, contrib, missing, alarms)
        return Verdict(
            ts_micros, score, thr, on, changed, False, contrib, missing,
            self.model_name, self.model_version, alarms,
        )

    def set_limits(self, limits: Mapping[str, tuple[float | None, float | None]]) -> None:
        """Sensors' warning limits ``(low, high)`` (from the asset registry; None: no limit): a
        level beyond them is a fault however steady, so it is never re-baselined."""
        if self.regime is not None:
            self.regime.limits = dict(limits)

    def _rebaseline(self, ts: int, score: float, thr: float, contrib: dict[str, float],
                    missing: tuple[str, ...], alarms: tuple[SensorAlarm, ...]) -> Verdict:
        """Close the settled episode and start learning the new level (a new warm-up)."""
        regime = self.regime
        assert regime is not None
        levels = regime.levels()
        shifts = sorted(((k, d, levels[k]) for k, d in regime.shifts().items()),
                        key=lambda t: abs(t[1]), reverse=True)
        regime.reset()
        self.univariate = self.univariate.clone() if self.univariate is not None else None
        self.multivariate = self.multivariate.clone() if self.multivariate is not None else None
        self.threshold = self.threshold.clone()
        self._scale_u = self._scale_m = 1.0
        self._buffer = []
        self._warm_from = self.n_rows
        closed = alarms
        if self.watch is not None:
            closed = alarms + tuple(self.watch.rebaseline(ts))
        log.info("operating point changed: the anomaly model re-baselines on the new level",
                 extra={"model": self.model_name, "rows": self.n_rows, "score": score,
                        "shifts": {k: round(d, 2) for k, d, _ in shifts[:5]}})
        # The episode closes: like every closing verdict its score is at or below the threshold
        # (the old model's score of this row is in the log line above, not in the verdict).
        return Verdict(ts, min(score, thr), thr, False, True, False, contrib, missing, self.model_name,
                       self.model_version, closed, tuple(shifts))

    def process_many(self, rows: Iterable[tuple[int, Mapping[str, float]]]) -> list[Verdict]:
        """Batch variant of :meth:`process_one` (same results, less call overhead)."""
        step = self.process_one
        return [step(ts, x) for ts, x in rows]

    # ----------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Snapshot (safe state codec). Restore with :meth:`from_bytes`; scoring resumes
        identically."""
        from anomaly.snapshot import state_codec

        return state_codec().encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> MachineDetector:
        """Rebuild from :meth:`to_bytes` output (only the listed state classes are rebuilt)."""
        from anomaly.snapshot import state_codec

        obj = state_codec().decode(data)
        if not isinstance(obj, cls):
            raise TypeError(f"snapshot holds {type(obj).__name__}, not {cls.__name__}")
        return obj

    def memory_bytes(self) -> int:
        """Size of the snapshot, the figure to budget per machine."""
        return len(self.to_bytes())

    def clone(self) -> MachineDetector:
        """Fresh detector with the same configuration (no learned state)."""
        return MachineDetector(
            sensors=None if self.sensors is None else list(self.sensors),
            warmup=self.warmup, settle=self.settle, smoothing=self.smoothing,
            univariate=self.univariate, multivariate=self.multivariate,
            multivariate_weight=self.multivariate_weight, threshold=self.threshold,
            calibration_q=self.calibration_q, learn_after_warmup=self.learn_after_warmup,
            contributions=self.contributions, model_name=self.model_name,
            model_version=self.model_version, watch=self.watch, regime=self.regime,
        )


def _finite(keys: list[str] | None, x: Mapping[str, float], missing: tuple[str, ...]) -> dict[str, float]:
    """The raw row of the machine's sensors without missing or non-finite readings."""
    gone = set(missing)
    return {k: x[k] for k in keys or () if k not in gone}


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted list (numpy's default method)."""
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
