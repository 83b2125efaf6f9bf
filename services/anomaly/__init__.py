"""Online anomaly detection for plantstream: River-style detectors and per-machine scoring.

The service (``service.py``, written elsewhere) and the SKAB benchmark (``skab.py``) both go
through :class:`anomaly.machine.MachineDetector`, so what the benchmark measures is what runs.
"""

from anomaly.machine import MachineDetector, Verdict

__all__ = ["MachineDetector", "Verdict"]
