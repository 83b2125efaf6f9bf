"""The service's detector configuration, from settings: the one way to build a detector.

Why one function: the service, its tests, ``plantstream bench anomaly``, the simulator
evaluation and any library user must build the same detector from the same settings, so what
is measured is what runs. :class:`DetectorConfig` holds every setting that shapes the
detector; :func:`detector_config` reads it from :class:`~plantstream.settings.Settings`
(warm-up and learning policy come from ``PLANTSTREAM_ANOMALY_*``; the rest are the shipped
values); :func:`detector_factory` is ``sensors -> MachineDetector`` built from it. The
benchmark's hyperparameter grid varies a ``DetectorConfig`` (``dataclasses.replace``) and
builds through the same :meth:`DetectorConfig.build`, so a tuned candidate differs from the
shipped detector only in the fields it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from anomaly.detectors.drift import ResidualDrift
from anomaly.detectors.health import SensorHealth
from anomaly.detectors.threshold import AdaptiveThreshold
from anomaly.machine import DEFAULT_THRESHOLD, MachineDetector
from anomaly.regime import RegimeCheck
from anomaly.scorer import ScorerConfig
from anomaly.sensorwatch import SensorWatch
from plantstream.errors import ConfigError
from plantstream.settings import Settings

LEARN_POLICIES = ("never", "normal", "always")
MODEL_VERSION = "3"  # 1: machine-level only; 2: + per-sensor drift/stuck/dropout channels; 3: + re-baseline
# Per-sensor channels of the service (chosen on the factory simulator, see anomaly.simeval).
SERVICE_WATCH = SensorWatch(drift=ResidualDrift(), health=SensorHealth(), model_version=MODEL_VERSION)
SERVICE_REGIME = RegimeCheck()  # re-baseline a settled episode (2 h, flat for the last hour at 5 s)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Every setting that shapes the service's :class:`MachineDetector`.

    Defaults are the shipped values (``threshold_*``/``k_on``/``n_on``/``m_off`` are those of
    :data:`anomaly.machine.DEFAULT_THRESHOLD`; ``warmup`` and ``learn_after_warmup`` those of
    :class:`Settings`). ``settle`` ``None`` means ``min(50, warmup // 8)``.
    """

    warmup: int = 400
    learn_after_warmup: str = "normal"
    settle: int | None = None
    smoothing: float = 0.2
    multivariate_weight: float = 0.5
    calibration_q: float = 0.99
    threshold_q: float = DEFAULT_THRESHOLD.q
    threshold_factor: float = DEFAULT_THRESHOLD.factor
    k_on: int = DEFAULT_THRESHOLD.k_on
    n_on: int = DEFAULT_THRESHOLD.n_on
    m_off: int = DEFAULT_THRESHOLD.m_off
    sensor_watch: bool = True
    rebaseline: bool = True

    def __post_init__(self) -> None:
        if self.learn_after_warmup not in LEARN_POLICIES:
            raise ConfigError(f"PLANTSTREAM_ANOMALY_LEARN={self.learn_after_warmup!r}: use one of "
                              f"{', '.join(LEARN_POLICIES)}")
        if self.warmup < 20:
            raise ConfigError("PLANTSTREAM_ANOMALY_WARMUP must be at least 20 rows")

    @property
    def settle_rows(self) -> int:
        """Warm-up rows that only prime the smoother."""
        return min(50, self.warmup // 8) if self.settle is None else self.settle

    def build(self, sensors: list[str] | None = None) -> MachineDetector:
        """A fresh detector of this configuration for ``sensors`` (None: from the first row)."""
        threshold = AdaptiveThreshold(
            q=self.threshold_q, factor=self.threshold_factor, window=DEFAULT_THRESHOLD.window,
            min_samples=DEFAULT_THRESHOLD.min_samples, k_on=self.k_on, n_on=self.n_on, m_off=self.m_off)
        return MachineDetector(
            sensors=sensors, warmup=self.warmup, settle=self.settle_rows, smoothing=self.smoothing,
            multivariate_weight=self.multivariate_weight, threshold=threshold,
            calibration_q=self.calibration_q, learn_after_warmup=self.learn_after_warmup,
            watch=SERVICE_WATCH if self.sensor_watch else None, model_version=MODEL_VERSION,
            regime=SERVICE_REGIME if self.rebaseline else None,
        )

    def factory(self) -> Callable[[list[str] | None], MachineDetector]:
        """``sensors -> MachineDetector`` (what the scorer and the evaluations take)."""
        return self.build

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "settle": self.settle_rows}


def detector_config(settings: Settings) -> DetectorConfig:
    """The shipped detector configuration under ``settings``."""
    return DetectorConfig(warmup=settings.anomaly_warmup, learn_after_warmup=settings.anomaly_learn)


def detector_factory(settings: Settings) -> Callable[[list[str] | None], MachineDetector]:
    """``sensors -> MachineDetector`` with the warm-up and learning policy of ``settings``."""
    return detector_config(settings).factory()


def describe_detector(det: MachineDetector) -> dict[str, Any]:
    """Every setting of a built detector that shapes its verdicts (what a benchmark prints)."""
    th = det.threshold
    watch = det.watch
    return {
        "model": det.model_name, "version": det.model_version, "warmup": det.warmup,
        "settle": det.settle, "smoothing": det.smoothing, "univariate": repr(det.univariate),
        "multivariate": repr(det.multivariate), "multivariate_weight": det.multivariate_weight,
        "threshold": {k: getattr(th, k) for k in ("q", "factor", "window", "min_samples",
                                                  "k_on", "n_on", "m_off")},
        "calibration_q": det.calibration_q, "learn_after_warmup": det.learn_after_warmup,
        "rebaseline": None if det.regime is None else {
            k: getattr(det.regime, k) for k in ("block", "blocks", "max_step", "max_spread", "min_rows")},
        "sensor_watch": None if watch is None else {
            "drift": repr(watch.drift),
            "health": None if watch.health is None else {"min_run": watch.health.min_run,
                                                         "factor": watch.health.factor},
            **{k: getattr(watch, k) for k in ("drift_threshold", "drift_off", "learn_below", "lead",
                                               "holdoff", "arm_after")},
        },
    }


def scorer_config(settings: Settings) -> ScorerConfig:
    if settings.anomaly_update_seconds <= 0:
        raise ConfigError("PLANTSTREAM_ANOMALY_UPDATE_SECONDS must be positive")
    return ScorerConfig(update_seconds=settings.anomaly_update_seconds)
