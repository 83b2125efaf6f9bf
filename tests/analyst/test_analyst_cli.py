"""`plantstream sql` and `plantstream report` as an analyst runs them: while the archival
service holds the embedded data directory, and unchanged after it stopped."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from plantstream.avro import AvroCodec
from plantstream.db.query import TOKEN_HEADER, find_endpoint, port_file
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import ALERTS, READINGS_VALID, machine_key

from kafka_io import produce_all

CLI = str(Path(sys.executable).with_name("plantstream"))
NOW = time.time_ns() // 1000


def batch(machine: str, i: int) -> dict:
    return {"batch_id": f"{machine}-{i}", "tenant": "acme", "site": "s1", "machine": machine, "gateway": "gw",
            "ingest_time": NOW, "readings": [
                {"reading_id": f"{machine}-{i}:{k}", "sensor": "temp", "ts": NOW - 600_000_000 + i * 1000 + k,
                 "value": float(k), "unit": "degC", "quality": 192} for k in range(10)]}


def alert_rev(revision: int, state: str) -> dict:
    return {"alert_id": "a1", "revision": revision, "tenant": "acme", "site": "s1", "machine": "press1",
            "sensors": ["temp"], "rule": "limit", "severity": "critical", "state": state, "title": "hot",
            "first_seen": NOW, "last_seen": NOW, "occurrences": 1, "escalation_level": 0, "evidence": {},
            "recommended_action": None, "actor": None, "note": None, "silenced_until": None,
            "updated_at": NOW - 1_200_000_000 + revision * 120_000_000}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def archive(settings: Settings, service_env: dict[str, str], tmp_path: Path):
    codec = AvroCodec()
    outs = [Output(READINGS_VALID.physical(settings), machine_key("acme", "s1", m),
                   codec.encode("reading_batch", batch(m, i)))
            for m in ("press1", "press2") for i in range(5)]
    outs += [Output(ALERTS.physical(settings), machine_key("acme", "s1", "press1"),
                    codec.encode("alert_event", alert_rev(r, s)))
             for r, s in ((1, "open"), (2, "acknowledged"))]
    produce_all(settings, outs)
    env = {**service_env, "PLANTSTREAM_QUERY_PORT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "archival"], env=env, stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "archival.log").open("w"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        endpoint = find_endpoint(settings, timeout=1)
        if endpoint and endpoint.arrow("SELECT count() FROM readings").column(0)[0].as_py() == 100 and \
                endpoint.arrow("SELECT count() FROM alerts").column(0)[0].as_py() == 2:
            break
        assert proc.poll() is None, (tmp_path / "archival.log").read_text()[-2000:]
        time.sleep(0.2)
    else:
        raise AssertionError("archival did not archive the test records in 60 s")
    yield proc, env
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def check_queries(env: dict[str, str], tmp_path: Path) -> None:
    r = cli(env, "sql", "SELECT machine, count() AS n FROM readings GROUP BY machine ORDER BY machine",
            "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"machine": "press1", "n": 50}, {"machine": "press2", "n": 50}]

    r = cli(env, "report", "health", "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = {row["machine"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    assert rows["press1"]["readings_24h"] == "50" and rows["press1"]["open_alerts"] == "1"
    assert rows["press2"]["open_alerts"] == "0"

    r = cli(env, "report", "alerts", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0] == {"severity": "critical", "alerts": 1, "open": 0, "acknowledged": 1,
                                           "resolved": 0, "mtta_minutes": 2.0, "mttr_minutes": None}

    out = tmp_path / "trend.parquet"
    start = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(NOW / 1e6 - 3600))
    end = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(NOW / 1e6 + 3600))
    r = cli(env, "report", "trend", "--machine", "press2", "--sensor", "temp", "--from", start, "--to", end,
            "--every", "raw", "--format", "parquet", "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert pq.read_table(out).num_rows == 50
    for name in ("anomalous-sensors", "data-quality"):
        r = cli(env, "report", name)
        assert r.returncode == 0 and "(no rows)" in r.stdout, r.stderr

    r = cli(env, "sql", "DROP TABLE readings")
    assert r.returncode == 1 and "DROP is refused: analyst access is read-only" in r.stderr


def test_cli_queries_while_archival_runs_and_after_it_stopped(
        archive, settings: Settings, tmp_path: Path) -> None:
    proc, env = archive
    assert find_endpoint(settings) is not None
    check_queries(env, tmp_path)  # through the service's endpoint

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not port_file(settings).exists()
    check_queries(env, tmp_path)  # the embedded directory opened by the CLI itself


def test_endpoint_refuses_writes_and_strangers(archive, settings: Settings) -> None:
    endpoint = find_endpoint(settings)
    assert endpoint is not None

    def post(sql: str, token: str) -> tuple[int, dict]:
        req = urllib.request.Request(f"{endpoint.url}/query", data=sql.encode(), method="POST",
                                     headers={TOKEN_HEADER: token})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {}
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    code, body = post("INSERT INTO readings (tenant) VALUES ('x')", endpoint.token)
    assert code == 400 and body["kind"] == "refused" and body["error"].startswith("INSERT is refused")
    code, body = post("DROP TABLE readings", endpoint.token)
    assert code == 400 and body["error"].startswith("DROP is refused")
    code, body = post("SELECT 1; DROP TABLE readings", endpoint.token)
    assert code == 400 and "one statement at a time" in body["error"]
    code, body = post("SELECT count() FROM readings", "wrong-token")
    assert code == 403 and TOKEN_HEADER in body["error"]
    code, body = post("SELECT nonsense FROM nowhere", endpoint.token)
    assert code == 400 and body["kind"] == "failed" and "nowhere" in body["error"]
    # The engine itself refuses writes on the endpoint's session too (second line of defence).
    proc, _ = archive
    server_state_check = endpoint.arrow("SELECT value FROM system.settings WHERE name = 'readonly'")
    assert server_state_check.column(0)[0].as_py() == "2"
    assert endpoint.arrow("SELECT count() FROM readings").column(0)[0].as_py() == 100
    assert proc.poll() is None
