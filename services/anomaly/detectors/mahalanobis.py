"""Online multivariate detector: Hotelling T-squared and PCA Q (squared prediction error).

Why: some faults keep every sensor inside its own normal range but break how sensors move
together (pressure up while flow stays); only a model of the joint covariance sees that.
Mean and covariance are kept incrementally (Welford, O(d^2) per reading, d = sensors);
the inverse and eigen-decomposition are recomputed lazily, only after new learning.

Why our own: River has no joint-covariance detector (its ``anomaly`` models are HST, LODA,
LOF, one-class SVM and univariate scorers); T-squared + Q is the process-monitoring standard.
"""

from __future__ import annotations

import numpy as np

from anomaly.detectors.base import Detector


class Mahalanobis(Detector):
    """T-squared (+ Q if ``n_components`` is set) on standardized features.

    Parameters
    ----------
    n_components
        ``None``: full-rank Mahalanobis distance (T-squared) divided by the number of
        sensors. An int k: mean of T-squared on the top-k principal components (over k) and
        Q, the squared residual off those components, over its expected value; both terms
        are about 1 on normal data.
    shrinkage
        Added to the diagonal of the correlation matrix (ridge), so few or collinear samples
        still give a stable inverse.
    rel_tol
        Relative tolerance floor on each sensor's standard deviation (see ``EWZScore``).
    min_std
        Absolute standard-deviation floor.
    refresh_every
        Recompute the inverse / eigen-decomposition at most once per this many learned
        readings (1 = after every one). A model that keeps learning online barely moves per
        reading, and the refresh is the costly part (an ``eigh`` per reading). The model in
        use is part of a snapshot, so a restored detector scores exactly as one never stopped.

    >>> import random
    >>> rng = random.Random(0)
    >>> det = Mahalanobis()
    >>> for _ in range(300):
    ...     a = rng.gauss(0, 1)
    ...     det.learn_one({"p": a, "q": a + rng.gauss(0, 0.1)})
    >>> det.score_one({"p": 1.0, "q": 1.0}) < det.score_one({"p": 1.0, "q": -1.0})
    True
    """

    def __init__(
        self,
        n_components: int | None = None,
        shrinkage: float = 0.05,
        rel_tol: float = 0.0,
        min_std: float = 1e-6,
        refresh_every: int = 1,
    ) -> None:
        self.n_components = n_components
        self.refresh_every = refresh_every
        self._stale = 0
        self.shrinkage = shrinkage
        self.rel_tol = rel_tol
        self.min_std = min_std
        self._keys: list[str] | None = None
        self._n = 0
        self._mean: np.ndarray | None = None
        self._comoment: np.ndarray | None = None
        self._cache: tuple | None = None

    def _vector(self, x: dict[str, float]) -> np.ndarray:
        assert self._keys is not None and self._mean is not None
        mean = self._mean
        return np.array(
            [x.get(k, mean[i]) for i, k in enumerate(self._keys)], dtype=float
        )

    def learn_one(self, x: dict[str, float]) -> None:
        if self._keys is None:
            self._keys = sorted(x)
            d = len(self._keys)
            self._mean = np.zeros(d)
            self._comoment = np.zeros((d, d))
        v = self._vector(x) if self._n else np.array([x[k] for k in self._keys], dtype=float)
        self._n += 1
        delta = v - self._mean
        self._mean += delta / self._n
        self._comoment += np.outer(delta, v - self._mean)
        self._stale = getattr(self, "_stale", 0) + 1
        if self._stale >= getattr(self, "refresh_every", 1) or self._n < 3:
            self._cache = None
            self._stale = 0

    def _model(self) -> tuple:
        if self._cache is None:
            assert self._mean is not None and self._comoment is not None
            d = len(self._mean)
            cov = self._comoment / max(self._n - 1, 1)
            var = np.diag(cov) + (self.rel_tol * self._mean) ** 2 + self.min_std**2
            std = np.sqrt(var)
            corr = cov / np.outer(std, std) + self.shrinkage * np.eye(d)
            if self.n_components is None:
                self._cache = (std, np.linalg.inv(corr), None, None)
            else:
                k = min(self.n_components, d)
                w, vecs = np.linalg.eigh(corr)
                order = np.argsort(w)[::-1]
                w, vecs = w[order], vecs[:, order]
                theta = float(max(w[k:].sum(), 1e-12)) if k < d else 1.0
                self._cache = (std, vecs[:, :k] / np.sqrt(w[:k]), vecs[:, :k], theta)
        return self._cache

    def _score_matrix(self) -> np.ndarray:
        """``M`` with ``score(z) = z @ M @ z`` on standardized ``z`` (cached with the model)."""
        std, a, pcs, theta = self._model()[:4]
        if len(self._cache) == 5:
            return self._cache[4]
        d = len(std)
        if pcs is None:
            m = a / d
        else:
            k = pcs.shape[1]
            m = (a @ a.T) / k
            if k < d:
                m = m + (np.eye(d) - pcs @ pcs.T) / theta
            m = m / 2.0
        self._cache = (std, a, pcs, theta, m)
        return m

    def score_one(self, x: dict[str, float]) -> float:
        # Same value as z @ _score_matrix() @ z, with fewer array operations (hot path).
        if self._n < 2:
            return 0.0
        std, a, pcs, theta = self._model()[:4]
        z = (self._vector(x) - self._mean) / std
        t = a.T @ z
        if pcs is None:
            return max(float(z @ t) / len(z), 0.0)
        k = pcs.shape[1]
        t2 = float(t @ t) / k
        if k >= len(z):
            return t2 / 2.0
        proj = pcs.T @ z
        q = max(float(z @ z - proj @ proj), 0.0) / theta
        return (t2 + q) / 2.0

    def contributions_one(self, x: dict[str, float]) -> dict[str, float]:
        """Reconstruction-based contributions (Alcala & Qin 2009): how much the score drops
        when one sensor is replaced by its best estimate from the others,
        ``(M z)_i^2 / M_ii``. Unlike splitting T-squared into ``z_i (M z)_i`` terms, this
        points at the faulty sensor for any single-sensor fault large enough to alarm,
        even when correlated sensors are far from their means (e.g. at peak load)."""
        if self._n < 2:
            return {}
        m = self._score_matrix()
        std = self._cache[0]
        z = (self._vector(x) - self._mean) / std
        mz = m @ z
        c = mz * mz / np.maximum(np.diag(m), 1e-12)
        return {k: float(c[i]) for i, k in enumerate(self._keys or [])}
