"""`plantstream sql` and `plantstream report` as an analyst runs them: while the archival
service holds the embedded data directory, and unchanged after it stopped."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from analyst_attacks import ATTACKS

from plantstream.avro import AvroCodec
from plantstream.db.query import ANALYST_TOKEN_HEADER, TOKEN_HEADER, EndpointTarget, find_endpoint, port_file
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import ALERTS, READINGS_VALID, machine_key

from kafka_io import produce_all

CLI = str(Path(sys.executable).with_name("plantstream"))
NOW = time.time_ns() // 1000
ALL_TOKEN = "operator-token-0123456789abcdef"
ACME_TOKEN = "acme-analyst-token-0123456789"
BETA_TOKEN = "beta-analyst-token-0123456789"


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
    tokens = tmp_path / "analysts.yaml"
    tokens.write_text(f"tokens:\n  {ALL_TOKEN}: '*'\n  {ACME_TOKEN}: acme\n  {BETA_TOKEN}: beta\n")
    env = {**service_env, "PLANTSTREAM_QUERY_PORT": "0", "PLANTSTREAM_ANALYST_TOKENS_FILE": str(tokens),
           "PLANTSTREAM_ANALYST_TOKEN": ALL_TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "archival"], env=env, stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "archival.log").open("w"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        endpoint = find_endpoint(settings, timeout=1)
        if endpoint:
            endpoint.analyst_token = ALL_TOKEN
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


def post(url: str, sql: str, token: str, analyst_token: str | None = ALL_TOKEN) -> tuple[int, dict]:
    headers = {TOKEN_HEADER: token}
    if analyst_token is not None:
        headers[ANALYST_TOKEN_HEADER] = analyst_token
    req = urllib.request.Request(f"{url}/query", data=sql.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_endpoint_refuses_writes_and_strangers(archive, settings: Settings, tmp_path: Path) -> None:
    """One archival process for all of it (its start-up is most of the time)."""
    endpoint = find_endpoint(settings)
    assert endpoint is not None
    endpoint.analyst_token = ALL_TOKEN

    code, body = post(endpoint.url, "INSERT INTO readings (tenant) VALUES ('x')", endpoint.token)
    assert code == 400 and body["kind"] == "refused" and body["error"].startswith("INSERT is refused")
    code, body = post(endpoint.url, "DROP TABLE readings", endpoint.token)
    assert code == 400 and body["error"].startswith("DROP is refused")
    code, body = post(endpoint.url, "SELECT 1; DROP TABLE readings", endpoint.token)
    assert code == 400 and "one statement at a time" in body["error"]
    code, body = post(endpoint.url, "SELECT count() FROM readings", "wrong-token")
    assert code == 403 and TOKEN_HEADER in body["error"]
    code, body = post(endpoint.url, "SELECT nonsense FROM nowhere", endpoint.token)
    assert code == 400 and body["kind"] == "failed" and "nowhere" in body["error"]
    # The engine itself refuses writes on the endpoint's session too (second line of defence).
    proc, _ = archive
    server_state_check = endpoint.arrow("SELECT value FROM system.settings WHERE name = 'readonly'")
    assert server_state_check.column(0)[0].as_py() == "1"
    assert endpoint.arrow("SELECT count() FROM readings").column(0)[0].as_py() == 100
    check_attack_table(endpoint, tmp_path)
    check_analyst_tokens(endpoint)
    assert proc.poll() is None


def check_attack_table(endpoint: EndpointTarget, tmp_path: Path) -> None:
    """Every case of the attack table, over HTTP: refused, with its message; nothing written."""
    out = tmp_path / "written.out"
    for case, sql, message in ATTACKS:
        code, body = post(endpoint.url, sql.format(out=out), endpoint.token)
        assert code == 400 and body["kind"] == "refused" and re.search(message, body["error"]), (case, body)
    assert not out.exists()
    assert endpoint.arrow("SELECT count() FROM readings").column(0)[0].as_py() == 100
    assert endpoint.arrow("SELECT count() FROM alerts").column(0)[0].as_py() == 2


def check_analyst_tokens(endpoint: EndpointTarget) -> None:
    """A token sees its tenant's rows only (the archive holds acme's); no token or a wrong one
    is refused."""
    count = "SELECT count() FROM readings"
    for token, n in ((ALL_TOKEN, 100), (ACME_TOKEN, 100), (BETA_TOKEN, 0)):
        endpoint.analyst_token = token
        assert endpoint.arrow(count).column(0)[0].as_py() == n, token
        assert endpoint.arrow("WITH a AS (SELECT * FROM alerts) SELECT count() FROM a").column(0)[0].as_py() \
            == (0 if token == BETA_TOKEN else 2)
    code, body = post(endpoint.url, "SELECT * FROM system.parts", endpoint.token, BETA_TOKEN)
    assert code == 400 and body["kind"] == "refused" and "system.parts is not readable" in body["error"]
    code, body = post(endpoint.url, count, endpoint.token, None)
    assert code == 400 and "needs an analyst token" in body["error"]
    code, body = post(endpoint.url, count, endpoint.token, "not-a-token-of-this-archive")
    assert code == 400 and "unknown analyst token" in body["error"]
