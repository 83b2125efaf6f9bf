"""Online anomaly detectors sharing one interface (:class:`Detector`).

Each detector learns from and scores one reading dict ``{sensor: value}`` at a time.
"""

from anomaly.detectors.base import Detector
from anomaly.detectors.drift import ResidualDrift
from anomaly.detectors.ewzscore import EWZScore
from anomaly.detectors.health import SensorHealth
from anomaly.detectors.mahalanobis import Mahalanobis
from anomaly.detectors.threshold import AdaptiveThreshold

__all__ = [
    "AdaptiveThreshold",
    "Detector",
    "EWZScore",
    "Mahalanobis",
    "ResidualDrift",
    "SensorHealth",
]
