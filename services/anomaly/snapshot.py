"""How the anomaly service's state is written down: the one list of classes a snapshot may
contain, and the safe codec (:mod:`plantstream.statecodec`) built from it.

A snapshot read back from the ``anomaly-models-changelog`` topic can only rebuild instances
of these classes, with plain attribute values; nothing in it is executed. A detector class
whose state the service ships must be listed here (the check suite in
``tests/anomaly/test_detectors.py`` round-trips every detector through this codec).
"""

from __future__ import annotations

from functools import cache

from plantstream.statecodec import StateCodec


@cache
def state_codec() -> StateCodec:
    from anomaly.detectors.drift import ResidualDrift
    from anomaly.detectors.ewzscore import EWZScore
    from anomaly.detectors.health import SensorHealth
    from anomaly.detectors.mahalanobis import Mahalanobis
    from anomaly.detectors.threshold import AdaptiveThreshold
    from anomaly.events import Episode
    from anomaly.machine import MachineDetector
    from anomaly.regime import RegimeCheck
    from anomaly.rows import RowAssembler
    from anomaly.sensorwatch import SensorAlarm, SensorWatch
    from anomaly.state import MachineState

    return StateCodec([MachineState, MachineDetector, RowAssembler, Episode, SensorWatch, SensorAlarm,
                       RegimeCheck, EWZScore, Mahalanobis, ResidualDrift, SensorHealth, AdaptiveThreshold])
