"""Replaying recorded wide-format data (CSV and Parquet) as one machine's gateway."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plantstream.gateway.contract import decode_gateway_message, encode_gateway_batch
from plantstream.gateway.errors import GatewayError
from plantstream.gateway.replay import prepare, read_table, replay_batches

CSV = """datetime;Vib RMS;Temp;Pressure;anomaly;changepoint
2020-03-09 10:00:00;0.5;60.1;1.2;0;0
2020-03-09 10:00:01;0.6;60.2;;0;0
2020-03-09 10:00:02;0.7;60.3;1.3;1;1
2020-03-09 10:00:04;0.8;60.4;1.4;1;0
2020-03-09 10:00:05;0.9;60.5;1.5;0;0
"""
T0 = 1_583_748_000_000_000  # 2020-03-09T10:00:00Z


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "recording.csv"
    path.write_text(CSV)
    return path


def test_csv_with_mapping_and_skipped_labels_keeps_recorded_times(csv_file: Path) -> None:
    rec = prepare(read_table(csv_file), mapping={"Vib RMS": "P1.VIB", "Temp": "P1.TT"},
                  skip=["anomaly", "changepoint"])
    assert rec.tags == ["P1.VIB", "P1.TT", "Pressure"]
    assert rec.readings == 14  # one empty cell is not sent
    batches = list(replay_batches(rec, tenant="demo", site="plant-1", machine="pump-9", batch_size=6,
                                  speed=0, rebase=False))
    assert [len(b["readings"]) for b, _ in batches] == [5, 6, 3]  # two rows a batch, minus the gap
    assert all(due is None for _, due in batches)
    first, _ = batches[0]
    assert first["readings"][:3] == [
        {"tag": "P1.VIB", "ts": T0, "value": 0.5, "unit": None, "quality": 192},
        {"tag": "P1.TT", "ts": T0, "value": 60.1, "unit": None, "quality": 192},
        {"tag": "Pressure", "ts": T0, "value": 1.2, "unit": None, "quality": 192},
    ]
    assert [r["tag"] for r in first["readings"][3:]] == ["P1.VIB", "P1.TT"]
    assert (first["machine"], first["gateway"]) == ("pump-9", "gw-replay-pump-9")
    assert first["sent_at"] == T0 + 1_000_000
    assert [b["sequence"] for b, _ in batches] == [0, 1, 2]
    for b, _ in batches:
        assert decode_gateway_message(*encode_gateway_batch(b, "json")) == b


def test_rebase_and_pace(csv_file: Path) -> None:
    rec = prepare(read_table(csv_file, sep=";"), skip=["anomaly", "changepoint"], mapping={"Temp": "TT"},
                  mapped_only=True)
    assert rec.tags == ["TT"]
    now = 1_800_000_000_000_000
    fast = list(replay_batches(rec, tenant="t", site="s", machine="m", batch_size=1, speed=0, now_us=now))
    assert fast[-1][0]["readings"][0]["ts"] == now  # as fast as possible: the last row is now
    assert fast[0][0]["readings"][0]["ts"] == now - 5_000_000
    paced = list(replay_batches(rec, tenant="t", site="s", machine="m", batch_size=1, speed=2.0, now_us=now))
    assert paced[0][0]["readings"][0]["ts"] == now  # paced: the first row is now
    assert [due for _, due in paced] == [0.0, 0.5, 1.0, 2.0, 2.5]  # recorded gaps, twice as fast


def test_parquet_with_numeric_time_column(tmp_path: Path) -> None:
    path = tmp_path / "rec.parquet"
    pq.write_table(pa.table({"t_ms": [1_000, 2_000, 3_000], "a": [1.0, None, 3.0], "b": [4, 5, 6]}), path)
    rec = prepare(read_table(path), time_column="t_ms", time_unit="ms", mapping={"b": "B"})
    assert rec.times_us.tolist() == [1_000_000, 2_000_000, 3_000_000]
    (batch, _), = replay_batches(rec, tenant="t", site="s", machine="m", batch_size=100, rebase=False)
    assert [(r["tag"], r["ts"], r["value"]) for r in batch["readings"]] == [
        ("a", 1_000_000, 1.0), ("B", 1_000_000, 4.0), ("B", 2_000_000, 5.0), ("a", 3_000_000, 3.0),
        ("B", 3_000_000, 6.0)]


def test_bad_files_and_options_say_what_to_do(tmp_path: Path, csv_file: Path) -> None:
    table = read_table(csv_file)
    with pytest.raises(GatewayError, match="column 'Nope' is not in the file"):
        prepare(table, mapping={"Nope": "X"})
    text = tmp_path / "text.csv"
    text.write_text("time,state\n2020-01-01T00:00:00Z,on\n")
    with pytest.raises(GatewayError, match="'state' is not numeric .*--skip"):
        prepare(read_table(text))
    with pytest.raises(GatewayError, match="not found"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(GatewayError, match="no value columns left"):
        prepare(table, skip=["Vib RMS", "Temp", "Pressure", "anomaly", "changepoint"])
    rec = prepare(table, skip=["anomaly", "changepoint"])
    with pytest.raises(GatewayError, match="speed must be >= 0"):
        list(replay_batches(rec, tenant="t", site="s", machine="m", speed=-1))
    assert np.isnan(rec.values[1, 2])
