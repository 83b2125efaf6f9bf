"""The SKAB benchmark measures the shipped detector: same factory, same settings, honest protocol.

The CLI test runs ``plantstream bench anomaly`` on a tiny SKAB-format folder written here (so
it runs without the data set); the smoke test on two real files is skipped when SKAB is absent.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from anomaly.config import DetectorConfig, describe_detector, detector_config, detector_factory
from anomaly.skab import (
    GRID,
    SENSORS,
    candidates,
    default_data_dir,
    list_files,
    load_files,
    recommend,
    score_files,
)
from plantstream.cli.bench import bench
from plantstream.settings import Settings

DATA = default_data_dir()
needs_skab = pytest.mark.skipif(not (DATA / "valve1").is_dir(), reason="SKAB data not present")


def write_experiment(path: Path, seed: int, rows: int = 520, onset: int = 460) -> None:
    """A SKAB-format file: noisy normal rows, then Pressure jumps (labelled) from ``onset``."""
    rnd = random.Random(seed)
    lines = ["datetime;" + ";".join(SENSORS) + ";anomaly;changepoint"]
    for i in range(rows):
        bad = i >= onset
        vals = [1.0 + rnd.gauss(0, 0.02) + (3.0 if bad and s == "Pressure" else 0.0) for s in SENSORS]
        ts = f"2020-03-09 10:{i // 60:02d}:{i % 60:02d}"
        lines.append(f"{ts};" + ";".join(f"{v:.5f}" for v in vals) + f";{float(bad)};{float(i == onset)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_bench_measures_the_service_factory_from_the_same_settings(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for group, seed in (("valve1", 1), ("other", 2)):
        write_experiment(tmp_path / "skab" / group / "1.csv", seed)
    monkeypatch.setenv("PLANTSTREAM_ANOMALY_LEARN", "never")
    monkeypatch.setenv("PLANTSTREAM_ANOMALY_WARMUP", "300")
    out = tmp_path / "skab.json"
    result = CliRunner().invoke(bench, ["anomaly", "--data-dir", str(tmp_path / "skab"), "--out", str(out),
                                        "--no-sim"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    service = detector_factory(Settings.from_env())(list(SENSORS))  # what the service builds
    assert res["detector"] == describe_detector(service)
    assert res["detector"]["learn_after_warmup"] == "never" and res["detector"]["warmup"] == 300
    assert res["detector"]["sensor_watch"] is not None
    assert res["configuration"] == detector_config(Settings.from_env()).as_dict()
    assert "learn_after_warmup=never" in result.output and "warmup=300" in result.output
    # both held-out directions, each tuned on one group and reported on the other
    directions = [(s["tuned_on"], s["tested_on"]) for s in res["splits"]]
    assert directions == [("valve1", "other"), ("other", "valve1")]
    assert "HELD-OUT other (tuned valve1)" in result.output
    for s in res["splits"]:
        assert len(s["grid"]) == len(candidates(DetectorConfig(), GRID))
        assert s["held_out"]["events"]["episodes"] == 1
    # the 3-sigma-scale jump in Pressure is found in the held-out group by the shipped detector
    assert res["shipped"]["all"]["events"]["detected"] == 2


def test_the_service_factory_is_the_config_build() -> None:
    s = Settings.from_env()
    assert describe_detector(detector_factory(s)(["a", "b"])) == describe_detector(
        detector_config(s).build(["a", "b"]))


def test_grid_contains_the_shipped_values() -> None:
    shipped = detector_config(Settings.from_env())
    assert shipped in candidates(shipped, GRID)
    assert len(candidates(shipped, GRID)) == 12


def test_default_changes_only_when_both_directions_agree_and_win_held_out() -> None:
    ship = {"factor": 2.5}
    agree_win = [{"chosen": {"factor": 4.0}, "beats_shipped_held_out": True}] * 2
    assert recommend(agree_win, ship)["change_default"]
    one_loses = [agree_win[0], {"chosen": {"factor": 4.0}, "beats_shipped_held_out": False}]
    assert not recommend(one_loses, ship)["change_default"]
    differ = [agree_win[0], {"chosen": {"factor": 1.5}, "beats_shipped_held_out": True}]
    assert "different" in recommend(differ, ship)["why"]
    assert not recommend([{"chosen": ship, "beats_shipped_held_out": False}] * 2, ship)["change_default"]


@needs_skab
def test_two_files_beat_trivial_baseline() -> None:
    files = load_files([DATA / "valve1" / "1.csv", DATA / "other" / "9.csv"], DATA)
    never_no_watch = DetectorConfig(learn_after_warmup="never", sensor_watch=False)
    res = score_files(files, never_no_watch.build, measure=True)
    p, base = res["rows"], res["baseline_all_anomaly"]
    for key in ("f1", "far", "mar", "precision"):
        assert 0.0 <= p[key] <= 1.0
        for f in res["per_file"]:
            assert 0.0 <= f[key] <= 1.0
    assert p["f1"] > base["f1"] and p["far"] < 0.5
    assert res["events"]["episodes"] == 2
    assert res["speed"]["readings_per_s"] > 0
    assert res["memory"]["bytes_per_machine_max"] < 1_000_000


@needs_skab
def test_list_files_order() -> None:
    files = list_files(DATA)
    assert files and files[0].parent.name == "valve1"
    assert all("anomaly-free" not in str(f) for f in files)
