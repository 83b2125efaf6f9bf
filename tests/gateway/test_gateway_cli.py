"""The gateway and assets commands end to end against the real broker: what `simulate` and
`replay` send is exactly what a consumer reads back, and `assets apply --prune` / `assets
list` round-trip through the compacted assets topic."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from plantstream.assets import AssetFollower
from plantstream.cli.main import cli
from plantstream.gateway.contract import decode_gateway_message
from plantstream.gateway.simulator import Factory
from plantstream.gateway.truth import load_ground_truth
from plantstream.kafka import create_topics
from plantstream.settings import Settings
from plantstream.topics import TENANT_GATEWAY_READINGS, machine_key

from kafka_io import read_topic

START = 1_777_636_800_000_000
SENT = re.compile(r"sent (\d+) batches, (\d+) readings.*, (\d+) acked")


def run_cli(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "plantstream.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def read_batches(settings: Settings, count: int) -> list[tuple[bytes, int, dict, dict]]:
    """What the CLI sent to the (default) demo tenant's gateway topic."""
    msgs = read_topic(settings, TENANT_GATEWAY_READINGS.for_tenant(settings, "demo"),
                      until=lambda m: len(m) >= count)
    assert len(msgs) == count
    return [(m.key(), m.partition(), dict(m.headers()), decode_gateway_message(m.value(), m.headers()))
            for m in msgs]


def test_simulate_sends_exactly_the_factory_batches(settings: Settings, service_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    truth, assets = tmp_path / "truth.json", tmp_path / "assets.yaml"
    fault = "bearing_wear:machine=pump-01,start=30,duration=60"
    out = run_cli(["gateway", "simulate", "--machines", "4", "--duration", "120", "--batch-size", "50",
                   "--seed", "9", "--start", str(START), "--fault", fault,
                   "--truth-out", str(truth), "--assets-out", str(assets), "--apply-assets"], service_env)
    n_batches, n_readings, acked = map(int, SENT.search(out).groups())
    expected = list(Factory.build(4, 9, start_us=START, horizon=120, faults=[fault],
                                  warm_start=True).batches(120, 50))  # the CLI's default
    assert (n_batches, n_readings, acked) == (len(expected), sum(len(b["readings"]) for b in expected),
                                              len(expected))
    got = read_batches(settings, n_batches)
    by_id = {b["batch_id"]: b for *_, b in got}
    assert len(by_id) == len(expected) and all(by_id[b["batch_id"]] == b for b in expected)
    partitions: dict[bytes, set[int]] = {}
    for key, partition, headers, b in got:
        assert key == machine_key(b["tenant"], b["site"], b["machine"])
        # the simulator starts each batch's trace (W3C traceparent: version-trace-span-flags)
        traceparent = headers.pop("traceparent").decode()
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]", traceparent)
        assert headers == {"content-type": b"application/vnd.plantstream.avro",
                           "ps-gateway": b["gateway"].encode()}
        partitions.setdefault(key, set()).add(partition)
    assert len(partitions) == 4 and all(len(p) == 1 for p in partitions.values())
    (window,) = load_ground_truth(truth)
    assert (window.machine, window.kind, window.start_us, window.end_us) == (
        "pump-01", "bearing_wear", START + 30_000_000, START + 90_000_000)
    assert json.loads(truth.read_text())["meta"]["seed"] == 9
    follower = AssetFollower(settings).start()
    try:
        published = sorted(m["machine"] for m in follower.registry.machines())
    finally:
        follower.stop()
    assert published == ["cnc-01", "compressor-01", "conveyor-01", "pump-01"]
    assert "P01.TT_BRG" in assets.read_text()


def test_simulate_json_format_and_paced_rate(settings: Settings, service_env: dict[str, str]) -> None:
    create_topics(settings, [TENANT_GATEWAY_READINGS], tenants=["demo"])
    out = run_cli(["gateway", "simulate", "--machines", "2", "--rate", "130", "--duration", "2",
                   "--format", "json", "--batch-size", "13"], service_env)
    n_batches, n_readings, acked = map(int, SENT.search(out).groups())
    seconds = float(re.search(r"in ([\d.]+)s", out).group(1))
    assert n_readings == 260 and acked == n_batches and seconds >= 1.5  # paced, not as fast as possible
    got = read_batches(settings, n_batches)
    assert {h["content-type"] for _, _, h, _ in got} == {b"application/json"}
    assert sum(len(b["readings"]) for *_, b in got) == 260


def test_replay_csv_with_mapping(settings: Settings, service_env: dict[str, str], tmp_path: Path) -> None:
    create_topics(settings, [TENANT_GATEWAY_READINGS], tenants=["demo"])
    path = tmp_path / "rec.csv"
    path.write_text("datetime;a;b;anomaly\n2020-03-09 10:00:00;1;2;0\n2020-03-09 10:00:01;3;;1\n"
                    "2020-03-09 10:00:02;5;6;0\n")
    out = run_cli(["gateway", "replay", str(path), "--machine", "skab-1", "--map", "a=S.A",
                   "--skip", "anomaly", "--speed", "0", "--batch-size", "2", "--original-time",
                   "--format", "json"], service_env)
    n_batches, n_readings, acked = map(int, SENT.search(out).groups())
    assert (n_batches, n_readings, acked) == (3, 5, 3)
    got = sorted((b for *_, b in read_batches(settings, 3)), key=lambda b: b["sequence"])
    assert [[(r["tag"], r["value"]) for r in b["readings"]] for b in got] == [
        [("S.A", 1.0), ("b", 2.0)], [("S.A", 3.0)], [("S.A", 5.0), ("b", 6.0)]]
    assert got[0]["readings"][0]["ts"] == 1_583_748_000_000_000


def test_sending_for_a_tenant_without_a_gateway_topic_says_what_to_do(settings: Settings,
                                                                       service_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "plantstream.cli.main", "gateway", "simulate", "--machines",
                           "1", "--duration", "1", "--tenant", "nobody"], env=service_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "gateway.readings.nobody does not exist" in proc.stderr
    assert "plantstream assets apply" in proc.stderr


ASSETS = """
tenants:
  - id: acme
    sites:
      - id: p1
        machines:
          - {id: m1, type: pump, sensors: [{id: t, tag: M1.T, unit: degC}]}
          - {id: m2, type: pump, sensors: [{id: t, tag: M2.T, unit: degC}]}
  - id: beta
    sites:
      - id: p9
        machines:
          - {id: x1, type: compressor, sensors: [{id: p, tag: X1.P, unit: bar, gateway_unit: psi}]}
"""
ASSETS_LATER = """
tenants:
  - id: acme
    sites:
      - id: p1
        machines:
          - {id: m1, type: pump, sensors: [{id: t, tag: M1.T, unit: degC, warning_high: 80}]}
"""


def table(output: str) -> list[dict[str, str]]:
    """Rows of a print_table table, cut at the header's column starts (cells may be empty)."""
    header, _, *lines = output.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines]


def test_assets_apply_list_and_prune(service_env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    first, later = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(ASSETS)
    later.write_text(ASSETS_LATER)
    res = runner.invoke(cli, ["assets", "apply", str(first)], env=service_env)
    assert res.exit_code == 0, res.output
    assert "published 3 machines (3 records acknowledged)" in res.output
    res = runner.invoke(cli, ["assets", "list"], env=service_env)
    rows = [line.split() for line in res.output.splitlines()[2:]]
    assert rows == [["acme", "p1", "m1", "pump", "1"], ["acme", "p1", "m2", "pump", "1"],
                    ["beta", "p9", "x1", "compressor", "1"]]
    res = runner.invoke(cli, ["assets", "apply", str(later), "--prune"], env=service_env)
    assert res.exit_code == 0, res.output
    assert "published 1 machines, removed 1: acme/p1/m2 (2 records acknowledged)" in res.output
    res = runner.invoke(cli, ["assets", "list", "--sensors"], env=service_env)
    assert table(res.output) == [
        {"tenant": "acme", "site": "p1", "machine": "m1", "sensor": "t", "tag": "M1.T", "unit": "degC",
         "gateway_unit": "", "warning_high": "80", "critical_high": ""},
        {"tenant": "beta", "site": "p9", "machine": "x1", "sensor": "p", "tag": "X1.P", "unit": "bar",
         "gateway_unit": "psi", "warning_high": "", "critical_high": ""}]


def test_bad_options_give_one_clear_line_without_a_broker() -> None:
    res = CliRunner().invoke(cli, ["gateway", "simulate", "--machine-types", "pump,blender"])
    assert res.exit_code == 1
    assert "error: unknown machine type 'blender'" in res.output
    res = CliRunner().invoke(cli, ["gateway", "simulate", "--fault", "melting:machine=pump-01"])
    assert res.exit_code == 1 and "unknown kind 'melting'" in res.output
