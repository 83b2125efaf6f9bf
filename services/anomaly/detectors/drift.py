"""Slow drift of one sensor away from what the machine's other sensors say it should read.

Why: on a real machine a temperature follows the load through a thermal lag, so a z-score
against a fixed period flags every warm-up and load cycle, while a slowly wearing bearing or
a failing fan stays inside the normal range for a long time. Here each sensor is predicted
from exponentially weighted (EW) averages of the *other* sensors over several time
constants (a basis of first-order lags: current now, current averaged over 10 minutes, ...),
by ridge regression fitted online from sufficient statistics (Welford co-moments, refitted
every ``refit_every`` learned readings). The residual, in units of the fit's residual
standard deviation, is low-pass filtered (EW mean over ``drift_tau`` readings, a leaky
CUSUM): noise averages out, a sustained offset builds up. The score of a sensor is that
filtered residual over its own root mean square on learned (normal) data, so ~1 is normal.

:meth:`observe_one` advances the sequential state (lags, filtered residuals) without fitting;
:meth:`learn_one` = observe + fit. A caller that learns only normal readings still calls
:meth:`observe_one` on the others, so lags and the drift filter see every reading.

Why our own: River's ``PredictiveAnomalyDetection`` scores one-step forecast errors of one
target, which a slow drift never makes large; nothing in River regresses each sensor on lags
of the others.
"""

from __future__ import annotations

import math

import numpy as np

from anomaly.detectors.base import Detector


class ResidualDrift(Detector):
    """Per-sensor drift of the lagged-regression residual (score: max over sensors).

    Parameters
    ----------
    taus
        Time constants (in readings) of the EW lags of the other sensors used as regressors;
        1 is the current value.
    ridge
        Ridge penalty on standardized regressors (per reading).
    refit_every
        Learned readings between refits (the first fit after ``min_fit``).
    min_fit
        Learned readings before the first fit; the score is 0 until then.
    drift_tau
        Time constant (readings) of the EW mean of the standardized residual.
    rms_window
        Time constant (learned readings) of the mean square of that filtered residual
        that normalises the score (default: no forgetting, so a slow fault that is partly
        learned cannot quickly inflate its own yardstick).
    rms_floor
        Floor on that root mean square (in residual standard deviations).
    rel_tol, min_std
        Floors on the residual standard deviation: relative to the sensor's mean level and
        absolute (as in :class:`~anomaly.detectors.EWZScore`).
    support
        Extrapolation guard: a sensor ``k`` learned standard deviations from its learned
        mean scores at least ``k / support`` (0 disables). A reading far outside the data
        the regression was fitted on is one it cannot vouch for, even when the other sensors
        moved with it; with the default only extreme excursions (tens of standard
        deviations) reach an alarm threshold of a few units.

    >>> import math
    >>> det = ResidualDrift(min_fit=100, refit_every=100, drift_tau=20)
    >>> for i in range(600):
    ...     load = 1.0 + 0.5 * math.sin(i / 30)
    ...     det.learn_one({"current": 10 * load + 0.05 * (i % 3), "temp": 40 + 8 * load})
    >>> ok = {"current": 10 * (1.0 + 0.5 * math.sin(600 / 30)), "temp": 40 + 8 * (1.0 + 0.5 * math.sin(20))}
    >>> det.score_one(ok) < 3
    True
    >>> for i in range(600, 640):  # the temperature leaves its coupling with the load
    ...     load = 1.0 + 0.5 * math.sin(i / 30)
    ...     det.observe_one({"current": 10 * load, "temp": 40 + 8 * load + 3.0})
    >>> c = det.contributions_one({"current": 10 * (1.0 + 0.5 * math.sin(640 / 30)), "temp": 55.0})
    >>> max(c, key=c.get)
    'temp'
    """

    def __init__(
        self,
        taus: tuple[float, ...] = (1.0, 30.0, 120.0, 600.0, 2400.0),
        ridge: float = 0.01,
        refit_every: int = 300,
        min_fit: int = 300,
        drift_tau: float = 300.0,
        rms_window: float = 1e9,
        rms_floor: float = 0.05,
        rel_tol: float = 0.0005,
        min_std: float = 1e-6,
        support: float = 10.0,
    ) -> None:
        self.support = support
        self.taus = tuple(taus)
        self.ridge = ridge
        self.refit_every = refit_every
        self.min_fit = min_fit
        self.drift_tau = drift_tau
        self.rms_window = rms_window
        self.rms_floor = rms_floor
        self.rel_tol = rel_tol
        self.min_std = min_std
        self._keys: list[str] | None = None
        self._lags: np.ndarray | None = None   # (sensors * taus,) EW lags, sensor-major
        self._alpha: np.ndarray | None = None
        self._n = 0                              # learned readings
        self._mean: np.ndarray | None = None     # of [lags, values]
        self._comoment: np.ndarray | None = None
        self._coef: np.ndarray | None = None     # (sensors, sensors * taus)
        self._icpt: np.ndarray | None = None
        self._sigma: np.ndarray | None = None
        self._drift: np.ndarray | None = None    # EW mean of standardized residual, per sensor
        self._ms: np.ndarray | None = None       # its mean square on learned readings
        self._n_ms = 0
        self._memo: tuple | None = None
        self._level: tuple[np.ndarray, np.ndarray] | None = None  # learned mean, sd per sensor

    # -- state -------------------------------------------------------------------------------
    def _vec(self, x: dict[str, float]) -> np.ndarray:
        if self._keys is None:
            self._keys = sorted(x)
            d, t = len(self._keys), len(self.taus)
            self._alpha = np.tile(1.0 / np.maximum(np.asarray(self.taus, dtype=float), 1.0), d)
            self._drift = np.zeros(d)
            self._ms = np.zeros(d)
            v = np.array([x[k] for k in self._keys], dtype=float)
            self._lags = np.repeat(v, t)
            return v
        assert self._lags is not None
        t = len(self.taus)
        last = self._lags[::t]  # the tau=... first lag; the newest value when taus[0] == 1
        return np.array([x.get(k, last[i]) for i, k in enumerate(self._keys)], dtype=float)

    def _step(self, x: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, lags after x, filtered residual after x) without storing them.

        Scoring and then learning the same reading is the common pattern, so the last result
        is kept until the state changes."""
        key = tuple(x.items())
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        out = self._compute(x)
        self._memo = (key, out)
        return out

    def _compute(self, x: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = self._vec(x)
        assert self._lags is not None and self._alpha is not None and self._drift is not None
        v = np.where(np.isfinite(v), v, self._lags[::len(self.taus)])
        lags = self._lags + self._alpha * (np.repeat(v, len(self.taus)) - self._lags)
        if self._coef is None:
            return v, lags, self._drift
        z = (v - (self._coef @ lags + self._icpt)) / self._sigma
        return v, lags, self._drift + (z - self._drift) / max(self.drift_tau, 1.0)

    def observe_one(self, x: dict[str, float]) -> None:
        """Advance lags and drift filters with ``x`` (no fitting)."""
        _, self._lags, self._drift = self._step(x)
        self._memo = None

    def learn_one(self, x: dict[str, float]) -> None:
        v, lags, drift = self._step(x)
        self._lags, self._drift = lags, drift
        self._memo = None
        row = np.concatenate([lags, v])
        if self._mean is None:
            self._mean = np.zeros(row.size)
            self._comoment = np.zeros((row.size, row.size))
        self._n += 1
        delta = row - self._mean
        self._mean += delta / self._n
        self._comoment += np.outer(delta, row - self._mean)
        if self._coef is not None:
            self._n_ms += 1
            a = max(1.0 / self._n_ms, 1.0 / self.rms_window)
            self._ms += a * (drift * drift - self._ms)
        if self._n >= self.min_fit and (self._n - self.min_fit) % self.refit_every == 0:
            self._fit()

    def _fit(self) -> None:
        assert self._mean is not None and self._comoment is not None and self._keys is not None
        d, t = len(self._keys), len(self.taus)
        f = d * t
        cov = self._comoment / max(self._n - 1, 1)
        sd = np.sqrt(np.maximum(np.diag(cov)[:f], 1e-12))
        corr = cov[:f, :f] / np.outer(sd, sd)
        coef = np.zeros((d, f))
        sigma = np.empty(d)
        for j in range(d):
            keep = np.r_[0:j * t, (j + 1) * t:f]  # every lag but the sensor's own
            c = cov[keep, f + j] / sd[keep]
            w = np.linalg.solve(corr[np.ix_(keep, keep)] + self.ridge * np.eye(keep.size), c)
            var = cov[f + j, f + j] - 2.0 * w @ c + w @ corr[np.ix_(keep, keep)] @ w
            coef[j, keep] = w / sd[keep]
            level = self.rel_tol * self._mean[f + j]
            sigma[j] = math.sqrt(max(var, 0.0) + level * level + self.min_std ** 2)
        self._coef, self._sigma = coef, sigma
        self._level = (self._mean[f:].copy(), np.sqrt(np.diag(cov)[f:] + self.min_std ** 2))
        self._icpt = self._mean[f:] - coef @ self._mean[:f]

    # -- scores ------------------------------------------------------------------------------
    def _scores(self, x: dict[str, float]) -> np.ndarray | None:
        if self._keys is None or self._coef is None:
            return None
        v, _, drift = self._step(x)
        assert self._ms is not None and self._level is not None
        score = np.abs(drift) / np.sqrt(self._ms + self.rms_floor ** 2)
        if self.support:  # far outside the data the regression was fitted on: it cannot vouch
            mean, sd = self._level
            score = np.maximum(score, np.abs(v - mean) / (sd * self.support))
        return score

    def score_one(self, x: dict[str, float]) -> float:
        s = self._scores(x)
        return 0.0 if s is None else float(s.max())

    def contributions_one(self, x: dict[str, float]) -> dict[str, float]:
        s = self._scores(x)
        if s is None or self._keys is None:
            return {}
        return {k: float(s[i]) for i, k in enumerate(self._keys)}
