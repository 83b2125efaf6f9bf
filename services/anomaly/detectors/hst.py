"""River's Half-Space Trees with running min-max scaling.

Why: HST is River's stock streaming detector, robust to multi-modal normal behaviour and
memory-bounded, but it assumes features in [0, 1]. Sensors are in engineering units, so we
map the running min/max seen while learning onto [margin, 1 - margin] and clip to [0, 1]:
an unseen extreme then lands in the empty border cells, which is what makes it anomalous
(plain min-max scaling would put it in the same edge cell as the training extremes).
"""

from __future__ import annotations

from river import anomaly

from anomaly.detectors.base import Detector


class HSTDetector(Detector):
    """Min-max scaled :class:`river.anomaly.HalfSpaceTrees`.

    >>> det = HSTDetector(n_trees=5, height=6, window_size=50, seed=1)
    >>> for i in range(200):
    ...     det.learn_one({"a": 0.5 + 0.01 * (i % 5), "b": 1.0 + 0.01 * (i % 3)})
    >>> det.score_one({"a": 0.52, "b": 1.01}) <= det.score_one({"a": 5.0, "b": -3.0})
    True
    """

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        margin: float = 0.25,
        seed: int = 42,
    ) -> None:
        if not 0.0 <= margin < 0.5:
            raise ValueError("margin must be in [0, 0.5)")
        self.n_trees = n_trees
        self.margin = margin
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self._hst = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self._lo: dict[str, float] = {}
        self._hi: dict[str, float] = {}

    def _scale(self, x: dict[str, float]) -> dict[str, float]:
        out = {}
        for k, v in x.items():
            lo = self._lo.get(k)
            if lo is None:
                continue
            span = self._hi[k] - lo
            if span <= 0.0:
                out[k] = 0.5 if v == lo else (1.0 if v > lo else 0.0)
            else:
                m = self.margin
                out[k] = min(1.0, max(0.0, m + (1.0 - 2.0 * m) * (v - lo) / span))
        return out

    def learn_one(self, x: dict[str, float]) -> None:
        for k, v in x.items():
            if k not in self._lo:
                self._lo[k] = self._hi[k] = v
            elif v < self._lo[k]:
                self._lo[k] = v
            elif v > self._hi[k]:
                self._hi[k] = v
        self._hst.learn_one(self._scale(x))

    def score_one(self, x: dict[str, float]) -> float:
        return float(self._hst.score_one(self._scale(x)))
