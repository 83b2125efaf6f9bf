"""Forecaster residual per sensor: surprise relative to an exponentially smoothed level.

Why: a z-score against a fixed training period flags slow, harmless drift; a one-step
forecast residual only flags *changes* the forecaster did not expect. Complementary to
:class:`~anomaly.detectors.EWZScore` for sudden steps and spikes.
"""

from __future__ import annotations

from anomaly.detectors.base import Detector


class EWResidual(Detector):
    """Squared one-step residual of an EW level forecast, scaled by its EW variance.

    Parameters
    ----------
    alpha
        Smoothing weight of the level forecast.
    beta
        Smoothing weight of the residual variance.
    min_std
        Floor on the residual standard deviation.

    >>> det = EWResidual()
    >>> for i in range(100):
    ...     det.learn_one({"p": 1.0 + 0.1 * (i % 2)})
    >>> det.score_one({"p": 1.05}) < det.score_one({"p": 3.0})
    True
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.05, min_std: float = 1e-6) -> None:
        self.alpha = alpha
        self.beta = beta
        self.min_std = min_std
        self._state: dict[str, list[float]] = {}  # sensor -> [n, level, residual variance]

    def learn_one(self, x: dict[str, float]) -> None:
        a, b = self.alpha, self.beta
        for k, v in x.items():
            st = self._state.get(k)
            if st is None:
                self._state[k] = [1.0, v, 0.0]
                continue
            r = v - st[1]
            st[2] = (1.0 - b) * st[2] + b * r * r if st[0] > 1 else r * r
            st[1] += a * r
            st[0] += 1.0

    def contributions_one(self, x: dict[str, float]) -> dict[str, float]:
        out = {}
        floor2 = self.min_std * self.min_std
        for k, v in x.items():
            st = self._state.get(k)
            if st is None or st[0] < 2.0:
                continue
            r = v - st[1]
            out[k] = r * r / (st[2] + floor2)
        return out

    def score_one(self, x: dict[str, float]) -> float:
        c = self.contributions_one(x)
        return max(c.values()) if c else 0.0
