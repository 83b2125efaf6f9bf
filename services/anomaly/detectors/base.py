"""Common base class for online detectors: River's ``AnomalyDetector`` plus what the service needs.

Every detector here *is* a :class:`river.base.AnomalyDetector` (``learn_one``/``score_one``,
hyperparameters as same-named attributes, River's ``clone``/``_get_params``, composable with
River's preprocessing: ``preprocessing.StandardScaler() | EWZScore()``), and passes
``river.checks.check_estimator`` (``tests/anomaly/test_river_checks.py``). On top of River's
contract the service needs two things River's base class does not have, added here:

- ``contributions_one``: how much each sensor contributed, so an alert can name the sensors;
- byte snapshots through the safe state codec (``to_state``/``from_state``), because state is
  read back from a Kafka changelog and must never be unpickled.
"""

from __future__ import annotations

from typing import Self

from river.base import AnomalyDetector


class Detector(AnomalyDetector):
    """Online anomaly detector: learn one reading, score one reading.

    Subclasses store every constructor argument under the same attribute name (River
    convention); that is what makes River's ``_get_params`` and ``clone`` work.

    >>> from anomaly.detectors import EWZScore
    >>> det = EWZScore(rel_tol=0.0)
    >>> for v in (1.0, 2.0, 3.0):
    ...     det.learn_one({"a": v})
    >>> det.clone()._get_params() == det._get_params()
    True
    >>> Detector.from_state(det.to_state()).score_one({"a": 2.0})
    0.0
    >>> from river import preprocessing
    >>> model = preprocessing.StandardScaler() | EWZScore(rel_tol=0.0)
    >>> for v in (1.0, 2.0, 3.0, 2.0):
    ...     model.learn_one({"a": v})
    >>> model.score_one({"a": 9.0}) > model.score_one({"a": 2.0})
    True
    """

    # learn_one(x) and score_one(x) are River's abstract methods: learn_one must not mutate
    # x, score_one must not learn.

    def contributions_one(self, x: dict[str, float]) -> dict[str, float]:
        """How much each sensor contributed to :meth:`score_one`.

        The default splits the score uniformly; detectors that can attribute do better.
        """
        if not x:
            return {}
        share = self.score_one(x) / len(x)
        return dict.fromkeys(x, share)

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

    def __repr__(self) -> str:  # one line (River's is one line per parameter): benchmarks print it
        args = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"{type(self).__name__}({args})"
