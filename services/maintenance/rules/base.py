"""The uniform rule interface (River style): one small class per rule, hyperparameters as
constructor arguments, ``update(observation) -> list[Finding]``.

Why our own base class: rules see two kinds of input (readings and anomaly events) plus the
clock (``check(now)`` for conditions that are the *absence* of data), and the service keeps
one instance per (machine, sensor) in a faust table, so instances must pickle and clone.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

SEVERITIES = ("info", "warning", "critical")


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for critical (so severities compare with max())."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Reading:
    """One valid reading as a rule sees it, with the sensor's registry entry (limits, action)."""

    sensor: str
    ts: int  # sample time, microseconds
    value: float
    ingest_time: int  # platform clock at ingest, microseconds
    spec: dict[str, Any] | None = None
    arrived: int = 0  # wall clock when the maintenance service saw it, microseconds
    sent_at: int | None = None  # gateway clock when it sent the batch (reading_batch v2), microseconds
    gateway: str = ""  # the gateway device that sent it (per-gateway rules: clock skew)


@dataclass(frozen=True)
class Anomaly:
    """One anomaly event attributed to one sensor (its largest contributor)."""

    event_id: str
    sensor: str
    ts: int
    score: float
    threshold: float
    share: float = 1.0
    value: float | None = None
    model: str = ""  # the detector: dropout and stuck are sensor faults, the others machine behaviour
    window_start: int = 0  # first sample time of the anomaly episode, microseconds


Observation = Reading | Anomaly


@dataclass(frozen=True)
class Finding:
    """A rule's statement that a condition holds now; the alert book turns findings into alerts."""

    rule: str
    sensor: str
    severity: str
    title: str
    ts: int  # event time the condition was seen at, microseconds
    evidence: dict[str, float] = field(default_factory=dict)
    count: int = 1  # occurrences this finding stands for
    action: str | None = None
    sensors: tuple[str, ...] = ()  # every sensor the finding covers when more than ``sensor`` (no data)
    detector: str = ""  # the anomaly detector behind a persistent_anomaly finding
    subject: str = ""  # what a per-gateway finding is about: the gateway id


class AlertRule:
    """Base class: subclasses set ``name``, store every constructor argument under the same
    attribute name, and override :meth:`update` (and :meth:`check` if the clock matters).

    >>> from maintenance.rules import LimitRule
    >>> rule = LimitRule()
    >>> rule.clone()._get_params() == rule._get_params()
    True
    """

    name: ClassVar[str] = "rule"
    scope: ClassVar[str] = "sensor"  # one instance per sensor, or "gateway": one per gateway

    def update(self, obs: Observation) -> list[Finding]:
        """Learn from one observation; return the findings it triggers (usually none)."""
        raise NotImplementedError

    def check(self, now: int, since: int = 0) -> list[Finding]:
        """Findings due to the passage of time alone (wall clock ``now``, microseconds);
        ``since``: the service has been listening since then (what happened while it was not
        running, e.g. a silence, is not held against the machine)."""
        return []

    def _get_params(self) -> dict[str, Any]:
        params = {}
        for pname, p in inspect.signature(type(self).__init__).parameters.items():
            if pname == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            params[pname] = getattr(self, pname)
        return params

    def clone(self) -> Self:
        """A fresh instance with the same hyperparameters and no learned state."""
        return type(self)(**copy.deepcopy(self._get_params()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"{type(self).__name__}({args})"
