"""The whole platform end to end: a simulated factory with two faulty machines and bad input
mixed in goes through the five services (separate processes, real broker, embedded
ClickHouse); every reading sent ends up in ClickHouse exactly once, and the faulty machines,
not the healthy ones, raise alerts."""

from __future__ import annotations

import pytest
from e2e_support import (
    FAULTY,
    HEALTHY,
    Stack,
    alerts_by_machine,
    assert_conserved,
    duplicates,
    factory_plan,
    publish_factory,
    query,
    send_all,
    wait_archived,
)

from plantstream.settings import Settings

pytestmark = pytest.mark.slow

MOST_ALERTS_OF_A_HEALTHY_MACHINE = 1


def test_every_reading_is_archived_once_and_faulty_machines_raise_alerts(
        settings: Settings, service_env: dict[str, str]) -> None:
    plan = factory_plan(settings)
    publish_factory(settings, plan)
    stack = Stack(settings, service_env)
    stack.start()
    try:
        stack.wait_consuming()
        send_all(settings, plan)
        stack.wait_drained()
        out = wait_archived(settings, stack, plan.readings)
        dups = duplicates(settings)
        alerts = alerts_by_machine(settings)
        anomalies = {r["machine"] for r in query(settings, "SELECT DISTINCT machine FROM anomalies")}
    finally:
        stack.stop()

    assert_conserved(out, plan)
    assert sum(out.valid_ids.values()) > plan.readings * 0.9  # most of the factory's data is good
    assert dups == {table: [] for table in dups}
    assert set(FAULTY) <= anomalies, f"anomaly events by machine: {anomalies}"
    assert all(alerts[m] >= 1 for m in FAULTY), f"alerts by machine: {dict(alerts)}"
    assert all(alerts[m] <= MOST_ALERTS_OF_A_HEALTHY_MACHINE for m in HEALTHY), f"alerts: {dict(alerts)}"
    assert set(alerts) <= set(FAULTY) | set(HEALTHY), f"alerts for machines nobody has: {dict(alerts)}"

