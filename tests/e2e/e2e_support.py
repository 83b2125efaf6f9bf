"""The whole platform as separate processes for end-to-end tests: the five services started
with the supervisor (``python -m <service>``, as ``make demo`` does), a simulated factory with
injected faults and bad input mixed in, and the accounting of every sent reading against
what ClickHouse holds (through the archival service's read-only endpoint)."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from readings_support import Outcome, account, gateway_output, sent_messages

from plantstream.assets import publish_assets
from plantstream.db.query import open_target
from plantstream.errors import PlantstreamError
from plantstream.gateway.contract import HEADER_CONTENT_TYPE
from plantstream.gateway.simulator import Factory
from plantstream.kafka import Output
from plantstream.lag import group_lags, unread_messages
from plantstream.localbroker import LocalBroker
from plantstream.settings import Settings
from plantstream.supervisor import SERVICES, start, status, stop
from plantstream.topics import GATEWAY_READINGS, machine_key

from kafka_io import produce_all

# Faults the detectors catch within a 30-minute run (after the 400-row warm-up at 1 s); the
# slow physical ones (bearing wear, overheating) need an hour or more of factory time.
HORIZON_S = 1800.0
START_UP_S = 60.0  # gateways go online once machines run: start-up transients are not sent
FAULTS = ("cavitation:machine=pump-01,start=800,duration=1000",
          "stuck_sensor:machine=cnc-01,start=800,duration=1000",
          "spikes:machine=compressor-01,start=800,duration=1000")
FAULTY = ("pump-01", "cnc-01", "compressor-01")
HEALTHY = ("conveyor-01", "pump-02", "cnc-02")
JSON_MACHINE = "conveyor-01"  # its gateway cannot write Avro: JSON batches
# The run replays 30 minutes of factory history in seconds, so sample times lag ingest times
# by up to the horizon: the clock-skew rule (meant for live gateways) is off.
SERVICE_ENV = {"PLANTSTREAM_QUERY_PORT": "0", "PLANTSTREAM_CLOCK_SKEW_SECONDS": "0"}
NAN_READINGS = 3


class Stack:
    """The five services for one test's settings, as supervised background processes."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings = settings
        self.env = {**env, **SERVICE_ENV}
        self.restarted: list[str] = []

    def start(self, *names: str, copy: int = 0, env: dict[str, str] | None = None) -> None:
        for name in names or SERVICES:
            start(self.settings, name, copy=copy, env=self.env if env is None else env)

    def pid(self, name: str, copy: int | None = None) -> int:
        pids = [p.pid for p in status(self.settings)
                if p.service == name and copy in (None, p.copy) and p.alive and p.pid]
        assert pids, f"{name} (copy {copy}) is not running\n{self.tails()}"
        return pids[0]

    def pause(self, name: str, copy: int, seconds: float) -> None:
        """SIGSTOP for ``seconds``, then SIGCONT: a copy frozen past its group session comes
        back as a zombie, mid-transaction perhaps, after its partitions moved on."""
        pid = self.pid(name, copy)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    def wait_stopped(self, name: str, copy: int, timeout: float = 60.0) -> int:
        """Until the copy has stopped itself (state ``T`` in /proc: a fault point was reached);
        returns its pid."""
        pid = self.pid(name, copy)
        deadline = time.monotonic() + timeout
        while True:
            with open(f"/proc/{pid}/stat") as f:  # "pid (comm) state ...": comm may hold spaces
                state = f.read().rpartition(")")[2].split()[0]
            if state in ("T", "t"):
                return pid
            self.assert_alive(f"waiting for {name} copy {copy} to reach its fault point")
            assert time.monotonic() < deadline, f"{name} copy {copy} never stopped\n{self.tails([name])}"
            time.sleep(0.1)

    def wait_members(self, names: tuple[str, ...], members: int, timeout: float = 60.0) -> None:
        """Until each group in ``names`` has ``members`` members."""
        deadline = time.monotonic() + timeout
        while True:
            self.assert_alive("joining")
            short = {g.service: g.members for g in group_lags(self.settings, names) if g.members < members}
            if not short:
                return
            assert time.monotonic() < deadline, f"groups short of {members} members: {short}\n{self.tails()}"
            time.sleep(0.5)

    def kill(self, name: str) -> None:
        """SIGKILL: no chance to finish a batch, commit or leave the group."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(p.pid == pid and p.alive for p in status(self.settings)):
            assert time.monotonic() < deadline, f"{name} (pid {pid}) survived SIGKILL"
            time.sleep(0.05)

    def dead(self) -> list[str]:
        return [p.service for p in status(self.settings) if not p.alive]

    def restart_dead(self) -> list[str]:
        """Start again every service that exited; returns their names."""
        names = self.dead()
        for name in names:
            start(self.settings, name, env=self.env)
        self.restarted += names
        return names

    def assert_alive(self, during: str) -> None:
        if dead := self.dead():
            raise AssertionError(f"{', '.join(dead)} exited during {during}\n{self.tails(dead)}")

    def tails(self, names: list[str] | None = None, lines: int = 12) -> str:
        out = []
        for p in status(self.settings):
            if names is None or p.service in names:
                try:
                    text = p.log.read_text(errors="replace").splitlines()[-lines:]
                except OSError:
                    text = ["(no log)"]
                out.append(f"--- {p.service} (pid {p.pid}, {'alive' if p.alive else 'DEAD'}) {p.log}\n"
                           + "\n".join(line[:400] for line in text))
        return "\n".join(out)

    def stop(self) -> None:
        stop(self.settings)

    def wait_consuming(self, timeout: float = 120.0) -> None:
        """Until every service's consumer group has a member."""
        deadline = time.monotonic() + timeout
        waiting: list[str] = []
        while time.monotonic() < deadline:
            self.assert_alive("start-up")
            waiting = [g.service for g in group_lags(self.settings, SERVICES) if g.members == 0]
            if not waiting:
                return
            time.sleep(0.5)
        raise AssertionError(f"not consuming after {timeout:.0f}s: {waiting}\n{self.tails(waiting)}")

    def wait_progress(self, name: str, timeout: float = 60.0) -> None:
        """Until ``name``'s group commits past where it is now (it is working mid-stream)."""
        def committed() -> int:
            return next(g.committed for g in group_lags(self.settings, [name]))
        before = committed()
        deadline = time.monotonic() + timeout
        while committed() <= before:
            self.assert_alive(f"waiting for {name} to make progress")
            assert time.monotonic() < deadline, f"{name} committed nothing for {timeout:.0f}s\n{self.tails()}"
            time.sleep(0.2)

    def wait_drained(self, timeout: float = 150.0) -> None:
        """Until no service group has an unread message (twice in a row, 1 s apart)."""
        deadline = time.monotonic() + timeout
        calm = 0
        while True:
            self.assert_alive("draining")
            behind = {s: n for s in SERVICES if (n := unread_messages(self.settings, s))}
            calm = calm + 1 if not behind else 0
            if calm == 2:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"unread messages after {timeout:.0f}s: {behind}\n{self.tails()}")
            time.sleep(1.0)


@dataclass
class Plan:
    """What a test sends: the factory's batches and the bad input mixed into them."""

    factory: Factory
    outputs: list[Output]
    readings: int                  # readings in decodable messages
    undecodable: int               # messages that are not a batch at all
    bad: dict[str, int] = field(default_factory=dict)  # dead letters expected for these reasons


def factory_plan(settings: Settings, machines: int = 6, seed: int = 11) -> Plan:
    """A 30-minute factory run (1 s interval) of six machines, three with faults, one with a
    JSON gateway, and bad input mixed in: a malformed JSON message, a batch from an unknown
    machine, NaN readings and a batch a gateway sent twice."""
    factory = Factory.build(machines=machines, seed=seed, faults=FAULTS, horizon=HORIZON_S, interval=1.0)
    for _ in factory.batches(until=START_UP_S):
        pass
    batches = list(factory.batches(batch_size=100))
    nan_batch = next(b for b in batches[len(batches) // 3:] if b["machine"] != JSON_MACHINE)
    nan_batch["readings"] = [dict(r) for r in nan_batch["readings"]]
    for r in nan_batch["readings"][:NAN_READINGS]:
        r["value"] = math.nan
    outputs = [gateway_output(settings, b, "json" if b["machine"] == JSON_MACHINE else "avro")
               for b in batches]
    ghost = dict(batches[5], batch_id="ghost-batch", machine="ghost-99", gateway="gw-ghost")
    resent = batches[len(batches) // 2]
    topic = GATEWAY_READINGS.physical(settings)
    malformed = Output(topic, machine_key("demo", "plant-1", "pump-01"), b'{"batch_id": "x", "readings": [',
                       [(HEADER_CONTENT_TYPE, b"application/json")])
    extras = [(len(outputs) // 4, gateway_output(settings, ghost)), (len(outputs) // 2, malformed),
              (len(outputs) * 3 // 4, gateway_output(settings, resent))]
    for at, out in sorted(extras, key=lambda e: -e[0]):
        outputs.insert(at, out)
    readings = sum(len(b["readings"]) for b in batches) + len(ghost["readings"]) + len(resent["readings"])
    bad = {"unknown_machine": 1, "malformed_json": 1, "duplicate_batch": 1, "non_finite": NAN_READINGS}
    return Plan(factory, outputs, readings, 1, bad)


def publish_factory(settings: Settings, plan: Plan) -> None:
    records = plan.factory.assets()
    assert publish_assets(settings, records) == len(records)


@contextmanager
def running_factory(settings: Settings, env: dict[str, str]) -> Iterator[tuple[Plan, Stack]]:
    """The factory's plan, its asset registry published, the five services started and
    consuming; the services are stopped on exit."""
    plan = factory_plan(settings)
    publish_factory(settings, plan)
    stack = Stack(settings, env)
    stack.start()
    try:
        stack.wait_consuming()
        yield plan, stack
    finally:
        stack.stop()


class PacedSender(threading.Thread):
    """Produces the plan's messages spread over ``seconds`` (a stream that services can be
    killed in the middle of); re-raises a producer failure in :meth:`finish`.

    :meth:`spread_rest_over` stretches what is left, so a fault that starts late on a loaded
    machine still has traffic for its whole length."""

    def __init__(self, settings: Settings, outputs: list[Output], seconds: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.outputs, self.seconds = settings, outputs, seconds
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._sent = 0
        self._plan = (0.0, 0, seconds)  # (started, first index of this schedule, its length in s)

    def _due(self, i: int) -> float:
        with self._lock:
            started, first, span = self._plan
        left = len(self.outputs) - first
        return started + span * (i - first) / left

    def spread_rest_over(self, seconds: float) -> None:
        """Re-plan the messages not yet sent to last at least ``seconds`` from now."""
        with self._lock:
            assert self._sent < len(self.outputs), "the stream already ended; lengthen it"
            started, first, span = self._plan
            now = time.monotonic()
            remaining = started + span - now
            self._plan = (now, self._sent, max(seconds, remaining))

    def run(self) -> None:
        from plantstream.kafka import ReliableProducer

        try:
            producer = ReliableProducer(self.settings)
            with self._lock:
                self._plan = (time.monotonic(), 0, self.seconds)
            for i, out in enumerate(self.outputs):
                while (wait := self._due(i) - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.1))
                producer.produce(out)
                with self._lock:
                    self._sent = i + 1
            producer.flush(120)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self, timeout: float = 180.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"the sender did not finish within {timeout:.0f}s"
        if self.error is not None:
            raise AssertionError(f"sending failed: {self.error!r}") from self.error


def send_all(settings: Settings, plan: Plan) -> None:
    assert produce_all(settings, plan.outputs) == len(plan.outputs)


# -- what ClickHouse holds ------------------------------------------------------------------

def query(settings: Settings, sql: str) -> list[dict[str, Any]]:
    target = open_target(settings)
    try:
        return target.arrow(sql).to_pylist()
    except PlantstreamError as exc:
        raise AssertionError(f"query failed: {exc}\n{sql}") from exc
    finally:
        target.close()


def archived_outcome(settings: Settings, sent: dict[tuple[int, int], dict[str, Any] | None]) -> Outcome:
    """The fate of every sent reading according to ClickHouse: ``readings`` rows by
    reading_id, ``rejected`` rows by dead-letter id and source."""
    dead = query(settings, "SELECT id, stage, reason, source_topic, source_partition, source_offset, "
                           "hex(original) AS original_hex FROM rejected")
    for d in dead:
        d["original"] = bytes.fromhex(d.pop("original_hex"))
    poison = [d for d in dead if d["stage"] == "archival"]
    assert not poison, f"archival could not store records: {poison[:3]}"
    valid = [r["reading_id"] for r in query(settings, "SELECT reading_id FROM readings")]
    return account(sent, GATEWAY_READINGS.physical(settings), dead, valid)


def wait_archived(settings: Settings, stack: Stack, readings: int, timeout: float = 120.0) -> Outcome:
    """Read gateway.readings back, then wait until ClickHouse accounts for ``readings``
    readings (one fate each) and return the outcome."""
    sent = sent_messages(settings)
    deadline = time.monotonic() + timeout
    while True:
        stack.assert_alive("archiving")
        out = archived_outcome(settings, sent)
        covered = sum(1 for v in out.fates.values() if v)
        if covered >= readings + 1 or time.monotonic() > deadline:  # + the undecodable message
            return out
        time.sleep(1.0)


@dataclass
class Archived:
    """What ClickHouse holds once the pipeline has drained."""

    outcome: Outcome
    duplicates: dict[str, list[dict[str, Any]]]
    events: dict[str, int]


def drain_and_read_archive(settings: Settings, stack: Stack, plan: Plan) -> Archived:
    """Wait until every service has read everything and ClickHouse accounts for the plan."""
    stack.wait_drained()
    out = wait_archived(settings, stack, plan.readings)
    return Archived(out, duplicates(settings), event_counts(settings))


def assert_archived_exactly_once(archived: Archived, plan: Plan) -> None:
    """Every sent reading has one fate, and no row is stored twice."""
    assert_conserved(archived.outcome, plan)
    assert archived.duplicates == {table: [] for table in archived.duplicates}


def duplicates(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Rows ClickHouse holds more than once, by their natural keys."""
    sql = {
        "readings": "SELECT reading_id, count() AS n FROM readings GROUP BY reading_id HAVING n > 1",
        "rejected": "SELECT id, count() AS n FROM rejected GROUP BY id HAVING n > 1",
        "anomalies": "SELECT event_id, ts, count() AS n FROM anomalies GROUP BY event_id, ts HAVING n > 1",
        "alerts": "SELECT alert_id, revision, count() AS n FROM alerts GROUP BY alert_id, revision "
                  "HAVING n > 1",
    }
    return {table: query(settings, q + " LIMIT 5") for table, q in sql.items()}


def event_counts(settings: Settings) -> dict[str, int]:
    """Anomaly events and alert revisions archived (so duplicate checks have something to check)."""
    row = query(settings, "SELECT (SELECT count() FROM anomalies) AS anomalies, "
                          "(SELECT count() FROM alerts) AS alerts")[0]
    return {k: int(v) for k, v in row.items()}


def alerts_by_machine(settings: Settings) -> Counter[str]:
    rows = query(settings, "SELECT machine, uniqExact(alert_id) AS n FROM alerts GROUP BY machine")
    return Counter({r["machine"]: r["n"] for r in rows})


def assert_conserved(out: Outcome, plan: Plan) -> None:
    """Every sent reading (and the undecodable message) has exactly one fate."""
    assert len(out.fates) == plan.readings + plan.undecodable
    missing = [k for k, v in out.fates.items() if not v]
    doubled = {k: v for k, v in out.fates.items() if len(v) > 1}
    assert not missing, f"{len(missing)} sent readings are not in ClickHouse, e.g. {missing[:5]}"
    assert not doubled, \
        f"{len(doubled)} readings are in ClickHouse more than once, e.g. {list(doubled.items())[:5]}"
    got = {reason: out.reasons[reason] for reason in plan.bad}
    assert got == plan.bad, f"dead letters by reason: {out.reasons}"


# -- the stronger checks of the crash tests ----------------------------------------------------

def rollup_shortfall(settings: Settings) -> dict[str, int]:
    """Readings the 1-minute and 1-hour rollups count minus the raw rows (0: neither a block
    lost nor one inserted twice)."""
    raw = int(query(settings, "SELECT count() AS n FROM readings")[0]["n"])
    out = {}
    for table in ("readings_1m", "readings_1h"):
        out[table] = int(query(settings, f"SELECT sum(readings) AS n FROM {table}")[0]["n"] or 0) - raw
    return out


def notification_duplicates(settings: Settings) -> list[dict[str, Any]]:
    return query(settings, "SELECT attempt_id, count() AS n FROM notifications GROUP BY attempt_id "
                           "HAVING n > 1 LIMIT 5")


def reference_anomaly_events(settings: Settings, plan: Plan) -> dict[str, list[tuple[str, int]]]:
    """What a never-killed anomaly service emits for the valid readings ClickHouse holds: the
    service's own detector (anomaly.config) fed each machine's readings in sample order."""
    from anomaly.config import detector_factory
    from anomaly.state import MachineState

    make = detector_factory(settings)
    out: dict[str, list[tuple[str, int]]] = {}
    for asset in plan.factory.assets():
        mid = (asset["tenant"], asset["site"], asset["machine"])
        sensors = sorted(s["sensor"] for s in asset["sensors"])
        state = MachineState(mid, make(sensors))
        state.rows.expected = frozenset(sensors)
        rows = query(settings, f"SELECT sensor, toUnixTimestamp64Micro(ts) AS ts, value, quality, reading_id "
                               f"FROM readings WHERE machine = '{mid[2]}'")
        rows.sort(key=lambda r: (r["ts"], int(r["reading_id"].rpartition(":")[2])))
        events = state.feed([r["sensor"] for r in rows], [r["ts"] for r in rows], [r["value"] for r in rows],
                            [r["quality"] for r in rows], int(settings.anomaly_update_seconds * 1e6))
        out[mid[2]] = sorted((e["event_id"], e["ts"]) for e in events)
    return out


def archived_anomaly_events(settings: Settings) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for r in query(settings, "SELECT machine, event_id, toUnixTimestamp64Micro(ts) AS ts FROM anomalies"):
        out.setdefault(r["machine"], []).append((r["event_id"], r["ts"]))
    return {m: sorted(v) for m, v in out.items()}


def groups_not_at_log_end(settings: Settings, run_tool: Any) -> dict[str, list[Any]]:
    """Services whose group's committed offset differs from the log end on some input
    partition, as Kafka's own ConsumerGroupCommand reports it (``run_tool(args)`` runs
    ``kafka.sh groups``); see :func:`plantstream.lag.off_log_end`."""
    from plantstream.lag import off_log_end

    return {s: rows for s, rows in off_log_end(settings, SERVICES, run_tool).items() if rows}


def fault_figures(s: Settings, broker: LocalBroker, archived: Archived, plan: Plan) -> dict[str, Any]:
    """What a fault trial lost, doubled or left behind, counted before anything is asserted."""
    fates = archived.outcome.fates
    reference = reference_anomaly_events(s, plan)
    expected = {m: ev for m, ev in reference.items() if ev}
    got = archived_anomaly_events(s)
    return {
        "readings_sent": plan.readings, "readings_lost": sum(1 for v in fates.values() if not v),
        "readings_doubled": sum(len(v) - 1 for v in fates.values() if len(v) > 1),
        "rows_doubled": {table: len(rows) for table, rows in archived.duplicates.items()},
        "rollup_shortfall": rollup_shortfall(s),
        "notifications_doubled": len(notification_duplicates(s)),
        "anomaly_events": sum(len(v) for v in got.values()),
        "anomaly_events_reference": sum(len(v) for v in expected.values()),
        "anomaly_machines_differing": sorted(m for m in set(got) | set(expected)
                                             if got.get(m) != expected.get(m)),
        "groups_off_log_end": groups_not_at_log_end(s, lambda args: broker.tool("groups", args, 120)),
    }


def record_trial(trial: str, faults: list[str], figures: dict[str, Any]) -> None:
    """Add a trial to the fault report ``make faults`` prints (PLANTSTREAM_FAULT_REPORT, a
    JSON-lines file; unset: not recorded)."""
    path = os.environ.get("PLANTSTREAM_FAULT_REPORT")
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"trial": trial, "faults": faults, **figures}, default=str) + "\n")


def assert_nothing_lost_doubled_or_stalled(s: Settings, broker: LocalBroker, archived: Archived, plan: Plan,
                                          trial: str = "", faults: list[str] | None = None) -> None:
    """The crash and fault tests' verdict (see test_e2e_crash's docstring); the figures go to
    the fault report first, whatever the verdict."""
    figures = fault_figures(s, broker, archived, plan)
    record_trial(trial, faults or [], figures)
    assert_archived_exactly_once(archived, plan)
    assert archived.events["anomalies"] > 0 and archived.events["alerts"] > 0, archived.events
    assert figures["rollup_shortfall"] == {"readings_1m": 0, "readings_1h": 0}
    assert figures["notifications_doubled"] == 0
    assert archived_anomaly_events(s) == {m: ev for m, ev in reference_anomaly_events(s, plan).items() if ev}
    assert figures["groups_off_log_end"] == {}
