"""Common base class for online detectors.

Why a base class of our own instead of ``river.anomaly.base.AnomalyDetector``: the service
needs per-sensor contributions, byte snapshots and a tiny uniform surface that wrapped River
models and hand-written detectors can both offer. The conventions follow River (hyperparameters
are constructor arguments, ``_get_params``/``clone``), so River users feel at home.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Self


class Detector:
    """Online anomaly detector: learn one reading, score one reading.

    Subclasses store every constructor argument under the same attribute name (River
    convention); that is what makes :meth:`_get_params` and :meth:`clone` work.

    >>> from anomaly.detectors import EWZScore
    >>> det = EWZScore(rel_tol=0.0)
    >>> for v in (1.0, 2.0, 3.0):
    ...     det.learn_one({"a": v})
    >>> det.clone()._get_params() == det._get_params()
    True
    >>> Detector.from_state(det.to_state()).score_one({"a": 2.0})
    0.0
    """

    def learn_one(self, x: dict[str, float]) -> None:
        """Update the model with one reading (must not mutate ``x``)."""
        raise NotImplementedError

    def score_one(self, x: dict[str, float]) -> float:
        """Anomaly score of one reading; higher means more anomalous. Must not learn."""
        raise NotImplementedError

    def contributions_one(self, x: dict[str, float]) -> dict[str, float]:
        """How much each sensor contributed to :meth:`score_one`.

        The default splits the score uniformly; detectors that can attribute do better.
        """
        if not x:
            return {}
        share = self.score_one(x) / len(x)
        return dict.fromkeys(x, share)

    # River-style parameter handling -------------------------------------------------------
    def _get_params(self) -> dict[str, Any]:
        """Constructor arguments of this instance, read back from same-named attributes."""
        params = {}
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            params[name] = getattr(self, name)
        return params

    def clone(self, new_params: dict[str, Any] | None = None) -> Self:
        """Fresh, unfitted copy with the same hyperparameters (optionally some changed)."""
        params = {}
        for name, value in {**self._get_params(), **(new_params or {})}.items():
            params[name] = value.clone() if isinstance(value, Detector) else copy.deepcopy(value)
        return type(self)(**params)

    # Snapshots ------------------------------------------------------------------------------
    def to_state(self) -> bytes:
        """Snapshot as bytes (safe state codec, see ``anomaly.snapshot``); restore with
        :meth:`from_state`."""
        from anomaly.snapshot import state_codec

        return state_codec().encode(self)

    @classmethod
    def from_state(cls, data: bytes) -> Self:
        """Rebuild a detector from :meth:`to_state` bytes (only listed classes are rebuilt)."""
        from anomaly.snapshot import state_codec

        obj = state_codec().decode(data)
        if not isinstance(obj, cls):
            raise TypeError(f"snapshot holds {type(obj).__name__}, not {cls.__name__}")
        return obj

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"{type(self).__name__}({args})"
