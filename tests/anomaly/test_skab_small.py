"""Fast SKAB smoke benchmark on two files (skipped when the data set is not present)."""

from __future__ import annotations

import pytest

from anomaly.skab import default_data_dir, list_files, nab_normalised, nab_raw, run_skab

DATA = default_data_dir()
pytestmark = pytest.mark.skipif(not (DATA / "valve1").is_dir(), reason="SKAB data not present")


def test_two_files_beat_trivial_baseline() -> None:
    files = [DATA / "valve1" / "1.csv", DATA / "other" / "9.csv"]
    res = run_skab(DATA, files=files)
    p, base = res["pooled"], res["baseline_all_anomaly"]
    for key in ("f1", "far", "mar", "precision"):
        assert 0.0 <= p[key] <= 1.0
        for f in res["per_file"]:
            assert 0.0 <= f[key] <= 1.0
    assert p["f1"] > base["f1"] and p["far"] < 0.5
    assert res["speed"]["readings_per_s"] > 0
    assert res["memory"]["bytes_per_machine_max"] < 1_000_000


def test_list_files_order() -> None:
    files = list_files(DATA)
    assert files and files[0].parent.name == "valve1"
    assert all("anomaly-free" not in str(f) for f in files)


def test_nab_scoring_profile() -> None:
    wins = [(100.0, 160.0)]
    assert nab_normalised(nab_raw(wins, []), 1) == 0.0
    assert nab_normalised(nab_raw(wins, [100.0]), 1) == pytest.approx(100.0)
    late = nab_raw(wins, [150.0])
    assert 0 < late < nab_raw(wins, [110.0])
    assert nab_raw(wins, [50.0]) == pytest.approx(-1.0 - 0.11)  # FP before any window + FN
    assert -1.0 < nab_raw(wins, [100.0, 170.0]) - nab_raw(wins, [100.0]) < 0.0
