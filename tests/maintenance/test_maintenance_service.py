"""The maintenance service end to end against the real broker: the shipped service
(``maintenance.service.SERVICE``) in a thread of the test process, started once for the module
and restarted once at the end, the notifier as a real process (faust), real webhook and SMTP
receivers, alerts driven by the simulator's bearing-wear physics and by anomaly events."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import settings_env
from maintenance_support import MailSink, Service, WebhookReceiver, free_port, start_smtp, wait_for

from maintenance.service import SERVICE
from plantstream.assets import AssetRegistry, publish_assets
from plantstream.avro import AvroCodec
from plantstream.cli.main import cli as plantstream_cli
from plantstream.entry import InProcess
from plantstream.gateway.simulator import Factory
from plantstream.kafka import Output, create_topics
from plantstream.notify import verify
from plantstream.settings import Settings
from plantstream.topics import (
    ALERT_COMMANDS,
    ALERTS,
    ANOMALIES,
    NOTIFICATIONS,
    READINGS_REJECTED,
    READINGS_VALID,
    TENANT_ALERT_COMMANDS,
)
from plantstream.topics import machine_key as mkey

from brokers import Broker
from kafka_io import produce_all, read_topic

CODEC = AvroCodec()
SECRET = "test-secret-" + uuid.uuid4().hex[:6]
ESCALATE_AFTER_S = 3.0
CONFIG = """
group_wait: 0.5s
webhook_allow: [127.0.0.0/8]  # the test receivers listen on loopback
retry: {{attempts: 3, backoff: 0.2s, max_backoff: 1s, timeout: 2s}}
smtp: {{host: 127.0.0.1, port: {smtp}, sender: plantstream@plant.test}}
escalation:
  critical: {{after: {after}s, max_level: 1}}
routes:
  - name: shift
    tenant: demo
    levels: [0]
    webhook: {{url: "{hook}/shift", secret_env: TEST_WEBHOOK_SECRET}}
    email: [shift@plant.test]
  - name: manager
    tenant: demo
    severities: [critical]
    levels: [1]
    webhook: {{url: "{hook}/manager", secret_env: TEST_WEBHOOK_SECRET}}
  - name: broken
    tenant: beta
    webhook: {{url: "http://127.0.0.1:{dead}/down"}}
"""


# what the environment above says, for the maintenance service running in this process
SERVICE_SETTINGS = {"alert_tick_seconds": 0.5, "alert_update_seconds": 1.0, "alert_quiet_seconds": 600.0,
                    "trend_horizon_hours": 24.0, "no_data_seconds": 0.0}


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    service: InProcess
    notifier: Service
    hooks: WebhookReceiver
    mail: MailSink


@pytest.fixture(scope="module")
def stack(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("maintenance")
    s = replace(Settings.from_env(), home=home, kafka_bootstrap=broker.bootstrap,
                topic_prefix=f"mt-{uuid.uuid4().hex[:6]}.", partitions=4, instance=f"test-{os.getpid()}")
    create_topics(s, tenants=["demo", "beta"])  # the tenants' command topics too
    hooks = WebhookReceiver()
    smtp, mail = start_smtp()
    config = home / "notify.yaml"
    config.write_text(CONFIG.format(smtp=smtp.port, after=ESCALATE_AFTER_S, hook=hooks.url(""),
                                    dead=free_port()))
    env = settings_env(s) | {
        "PLANTSTREAM_NOTIFY_CONFIG": str(config), "TEST_WEBHOOK_SECRET": SECRET,
        "PLANTSTREAM_ALERT_TICK_SECONDS": "0.5", "PLANTSTREAM_ALERT_UPDATE_SECONDS": "1",
        "PLANTSTREAM_ALERT_QUIET_SECONDS": "600", "PLANTSTREAM_TREND_HORIZON_HOURS": "24",
        "PLANTSTREAM_NO_DATA_SECONDS": "0", "PLANTSTREAM_LOG_LEVEL": "INFO",
        "PLANTSTREAM_NOTIFY_TICK_SECONDS": "0.25"}
    s = replace(s, **SERVICE_SETTINGS)
    service = SERVICE.start(s)
    notifier = Service(env, home / "notifier.log", "notifier").start()
    stack = Stack(s, env, service, notifier, hooks, mail)
    try:
        yield stack
    finally:
        notifier.stop()
        stack.service.stop()  # the one running now (a test restarts it)
        hooks.stop()
        smtp.stop()


def alerts(s: Settings, stack: Stack, until: Any, timeout: float = 60) -> list[dict[str, Any]]:
    msgs = read_topic(s, ALERTS.physical(s), timeout=timeout, alive=stack.service.assert_running,
                      until=lambda ms: until([CODEC.decode(m.value(), "alert_event") for m in ms]))
    return [CODEC.decode(m.value(), "alert_event") for m in msgs]


def all_alerts(s: Settings) -> list[dict[str, Any]]:
    """Every revision on the alerts topic so far (read until nothing new comes for 2 s)."""
    return [CODEC.decode(m.value(), "alert_event") for m in read_topic(s, ALERTS.physical(s), idle=2.0)]


def anomaly(tenant: str, machine: str, sensor: str, i: int, score: float) -> Output:
    ts = int(time.time() * 1e6) + i * 1000
    ev = {"event_id": f"{machine}-{sensor}-{i}", "tenant": tenant, "site": "plant-1", "machine": machine,
          "ts": ts, "window_start": ts, "window_end": ts, "score": score, "threshold": 1.0,
          "kind": "multivariate", "model": "test", "model_version": "1",
          "contributions": [{"sensor": sensor, "share": 0.9, "value": 1.0}]}
    return Output("", mkey(tenant, "plant-1", machine), CODEC.encode("anomaly_event", ev))


def produce_anomalies(s: Settings, events: list[Output]) -> None:
    produce_all(s, [replace(e, topic=ANOMALIES.physical(s)) for e in events])


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli(stack: Stack, *args: str) -> CliResult:
    """``plantstream alerts ARGS`` in this process (click's runner, the stack's environment):
    the command the users type, without a Python start-up per call."""
    result = CliRunner().invoke(plantstream_cli, ["alerts", *args], env=stack.env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def test_bearing_wear_raises_trend_alert_before_the_critical_limit(stack: Stack) -> None:
    s = stack.settings
    factory = Factory.build(machines=1, machine_types=["pump"], seed=3, interval=60, horizon=388_800,
                            faults=["bearing_wear:machine=pump-01,start=43200,duration=345600"])
    publish_assets(s, factory.assets())
    registry = AssetRegistry(factory.assets())
    mid = factory.machines[0].key
    crossed: int | None = None
    batches = []
    for b in factory.batches(batch_size=600):
        readings = []
        for i, r in enumerate(b["readings"]):
            spec = registry.sensor_by_tag(mid, r["tag"])
            assert spec["gateway_unit"] is None  # pump-01 sends canonical units: no conversion needed
            readings.append({"reading_id": f"{b['batch_id']}:{i}", "sensor": spec["sensor"], "ts": r["ts"],
                             "value": r["value"], "unit": spec["unit"], "quality": 192})
            if spec["sensor"] == "bearing_temp" and r["value"] >= spec["critical_high"] and crossed is None:
                crossed = r["ts"]
        batches.append(Output(READINGS_VALID.physical(s), mkey(*mid), CODEC.encode("reading_batch", {
            "batch_id": b["batch_id"], "tenant": mid[0], "site": mid[1], "machine": mid[2],
            "gateway": b["gateway"], "ingest_time": b["sent_at"], "readings": readings})))
    assert crossed is not None, "the simulated wear must cross the critical limit"
    produce_all(s, batches)

    def first_trend(revs: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The first revision with the bearing-temperature trend among its evidence."""
        return next((a for a in revs if "bearing_temp.trend.hours_to_limit" in a["evidence"]), None)

    revs = alerts(s, stack, lambda revs: first_trend(revs) is not None
                  and any(a["rule"] == "limit" and a["severity"] == "critical" for a in revs), timeout=90)
    trend = first_trend(revs)
    assert trend is not None and trend["severity"] in ("warning", "critical")
    lead_h = (crossed - trend["last_seen"]) / 3.6e9
    ev = {k.removeprefix("bearing_temp.trend."): v for k, v in trend["evidence"].items()
          if k.startswith("bearing_temp.trend.")}
    print(f"\ntrend alert {lead_h:.1f} h before bearing_temp crossed 95 degC; predicted "
          f"{ev['hours_to_limit']:.1f} h ({ev['hours_to_limit_low']:.1f}-{ev['hours_to_limit_high']:.1f} h)")
    assert lead_h >= 8.0, f"trend alert only {lead_h:.1f} h before the critical limit"
    assert 0 < ev["hours_to_limit_low"] <= ev["hours_to_limit"] <= ev["hours_to_limit_high"] <= 48
    assert ev["hours_to_limit"] <= 24.0  # inside the configured horizon
    assert 0.5 <= ev["hours_to_limit"] / lead_h <= 2.0  # the estimate is of the right size
    assert ev["limit"] == 95.0 and ev["slope_per_hour"] > 0
    assert "Check bearing lubrication" in trend["recommended_action"]
    # one alert for the developing fault, in plain words, with the likely cause
    assert trend["title"].startswith("Likely bearing wear: ") and "bearing_temp" in trend["sensors"]
    condition = {a["alert_id"] for a in revs if a["machine"] == mid[2] and a["rule"] != "clock_skew"}
    assert condition == {trend["alert_id"]}
    # the trend came first: bearing_temp's limit joins the alert later in sample time
    limit = next(a for a in revs if "bearing_temp.limit.value" in a["evidence"])
    assert limit["revision"] > trend["revision"] and limit["last_seen"] > trend["last_seen"]


def test_repeated_anomalies_make_one_alert_with_a_count(stack: Stack) -> None:
    s = stack.settings
    produce_anomalies(s, [anomaly("demo", "press-07", "vib", i, score=1.5) for i in range(8)])
    revs = alerts(s, stack, lambda revs: any(a["machine"] == "press-07" and a["occurrences"] == 8
                                             for a in revs))
    mine = [a for a in revs if a["machine"] == "press-07"]
    assert {a["alert_id"] for a in mine} == {"demo/plant-1/press-07/persistent_anomaly/vib#1"}
    assert mine[0]["occurrences"] == 3 and mine[0]["severity"] == "warning"  # raised at k=3
    assert [a["revision"] for a in mine] == list(range(1, len(mine) + 1))

    hook = wait_for(lambda: next((h for h in stack.hooks.received if h.path == "/shift"
                                  and h.json["alert"]["machine"] == "press-07"), None), 20, "the webhook")
    assert verify(hook.body, SECRET, hook.headers)
    assert not verify(hook.body + b" ", SECRET, hook.headers)
    assert hook.json["reason"] == "raised" and hook.headers["Idempotency-Key"].endswith("#1@1")
    mail = wait_for(lambda: next((m for m in stack.mail.messages if b"press-07" in m[2]), None), 20,
                    "the e-mail")
    assert mail[1] == ["shift@plant.test"] and b"[plantstream WARNING]" in mail[2]


def test_ack_and_resolve_through_the_cli(stack: Stack) -> None:
    s = stack.settings
    aid = "demo/plant-1/press-07/persistent_anomaly/vib#1"
    listed = cli(stack, "list", "--state", "open", "--machine", "press-07")
    assert listed.returncode == 0 and aid in listed.stdout, listed.stderr
    acked = cli(stack, "ack", aid, "--by", "ana", "--reason", "checking the press")
    assert acked.returncode == 0 and "acknowledged by ana" in acked.stdout, acked.stdout + acked.stderr
    again = cli(stack, "ack", aid, "--by", "bo")
    assert again.returncode == 1
    assert "is acknowledged (by ana); only open alerts can be acknowledged" in again.stderr
    resolved = cli(stack, "resolve", aid, "--by", "ana", "--reason", "replaced the bearing")
    assert resolved.returncode == 0 and "resolved by ana" in resolved.stdout, resolved.stderr
    late = cli(stack, "ack", aid, "--by", "bo")
    assert late.returncode == 1 and "is resolved (by ana)" in late.stderr
    unknown = cli(stack, "resolve", "no/such/alert#1", "--by", "bo")
    assert unknown.returncode == 1 and "no alert no/such/alert#1" in unknown.stderr
    shown = cli(stack, "show", aid)
    assert shown.returncode == 0
    assert "replaced the bearing" in shown.stdout and "checking the press" in shown.stdout

    # the service checks too: a command sent around the CLI is dead-lettered, not applied
    bad = {"command_id": "c-bad", "alert_id": aid, "tenant": "demo", "site": "plant-1",
           "machine": "press-07", "action": "acknowledge", "actor": "script", "reason": None, "until": None,
           "issued_at": int(time.time() * 1e6)}
    produce_all(s, [Output(ALERT_COMMANDS.physical(s), mkey("demo", "plant-1", "press-07"),
                           CODEC.encode("alert_command", bad))])
    dead = read_topic(s, READINGS_REJECTED.physical(s), timeout=30, until=lambda ms: len(ms) >= 1)
    rec = CODEC.decode(dead[0].value(), "dead_letter")
    assert (rec["stage"], rec["reason"], rec["machine"]) == (
        "maintenance", "invalid_command:resolved_cannot_acknowledge", "press-07")
    assert CODEC.decode(rec["original"], "alert_command")["command_id"] == "c-bad"
    final = [a for a in all_alerts(s) if a["alert_id"] == aid]
    assert final[-1]["state"] == "resolved" and final[-1]["actor"] == "ana"


def test_a_tenant_cannot_act_on_another_tenants_alert(stack: Stack) -> None:
    """Commands are authorized per tenant: one for demo's alert on beta's command topic (what
    beta's board users or operators write) is refused and filed under beta; demo's own topic
    carries the same command through. The broker lets only the board (for its users' tenant)
    and the admin write the tenants' command topics."""
    s = stack.settings
    produce_anomalies(s, [anomaly("demo", "lathe-04", "vib", i, score=1.5) for i in range(3)])
    revs = alerts(s, stack, lambda revs: any(a["machine"] == "lathe-04" for a in revs), timeout=40)
    aid = next(a for a in revs if a["machine"] == "lathe-04")["alert_id"]
    cmd = {"command_id": "c-cross", "alert_id": aid, "tenant": "demo", "site": "plant-1",
           "machine": "lathe-04", "action": "acknowledge", "actor": "beta-op", "reason": None, "until": None,
           "issued_at": int(time.time() * 1e6)}
    produce_all(s, [Output(TENANT_ALERT_COMMANDS.for_tenant(s, "beta"), mkey("demo", "plant-1", "lathe-04"),
                           CODEC.encode("alert_command", cmd))])
    def refused(ms: list) -> list[dict[str, Any]]:
        return [d for m in ms if (d := CODEC.decode(m.value(), "dead_letter"))["reason"]
                == "invalid_command:tenant_mismatch"]

    (rec,) = refused(read_topic(s, READINGS_REJECTED.physical(s), timeout=30, until=refused))
    assert (rec["stage"], rec["tenant"], rec["machine"]) == ("maintenance", "beta", "unknown")
    assert "'demo'" in rec["detail"] and "'beta'" in rec["detail"]
    assert CODEC.decode(rec["original"], "alert_command")["command_id"] == "c-cross"
    assert [a["state"] for a in all_alerts(s) if a["alert_id"] == aid][-1] == "open"  # not applied
    ok = dict(cmd, command_id="c-own", actor="demo-op")
    produce_all(s, [Output(TENANT_ALERT_COMMANDS.for_tenant(s, "demo"), mkey("demo", "plant-1", "lathe-04"),
                           CODEC.encode("alert_command", ok))])
    acked = alerts(s, stack, lambda revs: any(a["alert_id"] == aid and a["state"] == "acknowledged"
                                              for a in revs), timeout=30)
    assert [a["actor"] for a in acked if a["alert_id"] == aid][-1] == "demo-op"


def test_unacknowledged_critical_alert_escalates_to_the_second_level(stack: Stack) -> None:
    """Maintenance decides *that* something is wrong (one critical alert, never escalated by
    maintenance); the notifier decides who hears it when: the level-1 route after the delay."""
    s = stack.settings
    produce_anomalies(s, [anomaly("demo", "mixer-02", "temp", i, score=5.0) for i in range(3)])
    revs = alerts(s, stack, lambda revs: any(a["machine"] == "mixer-02" for a in revs), timeout=40)
    raised = next(a for a in revs if a["machine"] == "mixer-02")
    assert raised["severity"] == "critical" and raised["escalation_level"] == 0
    hook = wait_for(lambda: next((h for h in stack.hooks.received if h.path == "/manager"
                                  and h.json["alert"]["machine"] == "mixer-02"), None), 30,
                    "the level-1 webhook", alive=stack.notifier.assert_running)
    assert hook.json["reason"] == "escalated" and hook.json["alert"]["alert_id"] == raised["alert_id"]
    assert verify(hook.body, SECRET, hook.headers)
    shift = next(h for h in stack.hooks.received if h.path == "/shift"
                 and h.json["alert"]["alert_id"] == raised["alert_id"])
    assert shift.json["reason"] == "raised"
    assert all(a["escalation_level"] == 0 for a in all_alerts(s))  # no escalation revisions


def test_webhook_down_retries_then_dead_letter(stack: Stack) -> None:
    s = stack.settings
    produce_anomalies(s, [anomaly("beta", "saw-01", "vib", i, score=1.5) for i in range(3)])
    msgs = read_topic(s, NOTIFICATIONS.physical(s), timeout=40, alive=stack.service.assert_running,
                      until=lambda ms: any(
                          CODEC.decode(m.value(), "notification_attempt")["outcome"] == "dead" for m in ms))
    decoded = (CODEC.decode(m.value(), "notification_attempt") for m in msgs)
    attempts = [a for a in decoded if a["tenant"] == "beta"]
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "dead")]
    assert all("Connection refused" in a["detail"] or "URLError" in a["detail"] for a in attempts), attempts
    gaps = [(b["attempted_at"] - a["attempted_at"]) / 1e6
            for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # exponential backoff: 0.2 s, then 0.4 s
    assert attempts[-1]["attempt_id"].endswith("/webhook/" + attempts[-1]["target"] + "/3")


def test_restart_keeps_open_alerts_without_duplicates(stack: Stack) -> None:
    s = stack.settings
    before = all_alerts(s)
    stack.service.stop()  # finishes its batch, commits, leaves the group; raises if it failed
    stack.service = SERVICE.start(s)
    produce_anomalies(s, [anomaly("demo", "mixer-02", "temp", i, score=5.0) for i in range(10, 12)])
    opened = {a["alert_id"] for a in before if a["machine"] == "mixer-02"}
    last_occ = max(a["occurrences"] for a in before if a["machine"] == "mixer-02")
    after = alerts(s, stack, lambda revs: any(a["machine"] == "mixer-02" and a["occurrences"] == last_occ + 2
                                              for a in revs), timeout=40)
    assert {a["alert_id"] for a in after if a["machine"] == "mixer-02"} == opened  # the same alert, updated
    firsts = [a["alert_id"] for a in after if a["revision"] == 1]
    assert len(firsts) == len(set(firsts)), "an alert was raised twice"
    pairs = [(a["alert_id"], a["revision"]) for a in after]
    assert len(pairs) == len(set(pairs)), "a revision was emitted twice"
    assert all(a["escalation_level"] == 0 for a in after)  # escalation is the notifier's
