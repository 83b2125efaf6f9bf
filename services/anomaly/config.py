"""The service's detector configuration, from settings.

Why a function: the service, its tests and the benchmark must build the same detector from
the same settings, so what is measured is what runs.
"""

from __future__ import annotations

from collections.abc import Callable

from anomaly.detectors.drift import ResidualDrift
from anomaly.detectors.health import SensorHealth
from anomaly.machine import MachineDetector
from anomaly.scorer import ScorerConfig
from anomaly.sensorwatch import SensorWatch
from plantstream.errors import ConfigError
from plantstream.settings import Settings

LEARN_POLICIES = ("never", "normal", "always")
MODEL_VERSION = "2"  # 1: machine-level only; 2: + per-sensor drift/stuck/dropout channels
# Per-sensor channels of the service (chosen on the factory simulator, see anomaly.simeval).
SERVICE_WATCH = SensorWatch(drift=ResidualDrift(), health=SensorHealth(), model_version=MODEL_VERSION)


def detector_factory(settings: Settings) -> Callable[[list[str] | None], MachineDetector]:
    """``sensors -> MachineDetector`` with the warm-up and learning policy of ``settings``."""
    if settings.anomaly_learn not in LEARN_POLICIES:
        raise ConfigError(f"PLANTSTREAM_ANOMALY_LEARN={settings.anomaly_learn!r}: use one of "
                          f"{', '.join(LEARN_POLICIES)}")
    if settings.anomaly_warmup < 20:
        raise ConfigError("PLANTSTREAM_ANOMALY_WARMUP must be at least 20 rows")
    warmup = settings.anomaly_warmup
    settle = min(50, warmup // 8)

    def make(sensors: list[str] | None) -> MachineDetector:
        return MachineDetector(sensors=sensors, warmup=warmup, settle=settle,
                               learn_after_warmup=settings.anomaly_learn, watch=SERVICE_WATCH,
                               model_version=MODEL_VERSION)

    return make


def scorer_config(settings: Settings) -> ScorerConfig:
    if settings.anomaly_update_seconds <= 0:
        raise ConfigError("PLANTSTREAM_ANOMALY_UPDATE_SECONDS must be positive")
    return ScorerConfig(update_seconds=settings.anomaly_update_seconds)
