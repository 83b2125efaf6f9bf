"""Alert rules: one small class per rule with the :class:`AlertRule` interface."""

from maintenance.rules.base import (
           SEVERITIES,
           AlertRule,
           Anomaly,
           Finding,
           Observation,
           Reading,
           severity_rank,
)
from maintenance.rules.clock_skew import ClockSkew
from maintenance.rules.limits import LimitRule
from maintenance.rules.no_data import NoData
from maintenance.rules.persistent_anomaly import PersistentAnomaly
from maintenance.rules.stuck import StuckSensor
from maintenance.rules.trend import TrendToLimit

__all__ = ["SEVERITIES", "AlertRule", "Anomaly", "ClockSkew", "Finding", "LimitRule", "NoData",
           "Observation", "PersistentAnomaly", "Reading", "StuckSensor", "TrendToLimit", "severity_rank"]
