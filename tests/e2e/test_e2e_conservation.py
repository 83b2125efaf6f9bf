"""The whole platform end to end: a simulated factory with two faulty machines and bad input
mixed in goes through the five services (separate processes, real broker, embedded
ClickHouse); every reading sent ends up in ClickHouse exactly once, and the faulty machines,
not the healthy ones, raise alerts."""

from __future__ import annotations

import pytest
from e2e_support import (
    FAULTY,
    HEALTHY,
    alerts_by_machine,
    assert_archived_exactly_once,
    drain_and_read_archive,
    query,
    running_factory,
    send_all,
)

from plantstream.settings import Settings

pytestmark = pytest.mark.slow

MOST_ALERTS_OF_A_HEALTHY_MACHINE = 1


def test_every_reading_is_archived_once_and_faulty_machines_raise_alerts(
        settings: Settings, service_env: dict[str, str]) -> None:
    with running_factory(settings, service_env) as (plan, stack):
        send_all(settings, plan)
        archived = drain_and_read_archive(settings, stack, plan)
        alerts = alerts_by_machine(settings)
        anomalies = {r["machine"] for r in query(settings, "SELECT DISTINCT machine FROM anomalies")}

    assert_archived_exactly_once(archived, plan)
    assert sum(archived.outcome.valid_ids.values()) > plan.readings * 0.9  # most of the data is good
    assert set(FAULTY) <= anomalies, f"anomaly events by machine: {anomalies}"
    assert all(alerts[m] >= 1 for m in FAULTY), f"alerts by machine: {dict(alerts)}"
    assert all(alerts[m] <= MOST_ALERTS_OF_A_HEALTHY_MACHINE for m in HEALTHY), f"alerts: {dict(alerts)}"
    assert set(alerts) <= set(FAULTY) | set(HEALTHY), f"alerts for machines nobody has: {dict(alerts)}"
