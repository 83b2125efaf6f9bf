"""The pipeline benchmark's harness: its verdict and latency logic on known inputs, and one
tiny real run (Kafka's perf tools, the five services as processes, one short step) whose
result JSON must hold every figure `make bench` reports, with sane values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_alerts  # noqa: E402
import bench_kafka  # noqa: E402
import bench_pipeline  # noqa: E402
import bench_recovery  # noqa: E402
from common import BenchError, percentiles  # noqa: E402
from pipeline_analysis import LagSample, judge_step, latency_figures  # noqa: E402
from pipeline_stack import Stack  # noqa: E402

from plantstream import supervisor  # noqa: E402

SERVICES = ("ingest", "anomaly")


def series(lags: dict[str, list[int]], msgs_per_s: float = 100.0, every: float = 2.0) -> list[LagSample]:
    n = len(next(iter(lags.values())))
    return [LagSample(i * every, {s: v[i] for s, v in lags.items()},
                      {s: round(i * every * msgs_per_s) for s in lags}) for i in range(n)]


def test_flat_small_lag_is_sustained() -> None:
    samples = series({"ingest": [0, 12, 30, 8, 25, 10, 16, 9, 20, 11],
                      "anomaly": [0, 80, 150, 60, 190, 90, 120, 70, 160, 100]})
    v = judge_step(samples, SERVICES, 10_000, 9_900)
    assert v["sustained"], v
    assert v["lag"]["ingest"]["input_msgs_per_s"] == 100.0
    assert v["lag"]["anomaly"]["final_lag_s"] == pytest.approx((70 + 160 + 100) / 3 / 100, abs=0.01)


def test_growing_lag_names_the_service_that_falls_behind() -> None:
    samples = series({"ingest": [10] * 10, "anomaly": [i * 40 for i in range(10)]})  # +20 msgs/s of 100
    v = judge_step(samples, SERVICES, 10_000, 10_000)
    assert not v["sustained"]
    assert v["reason"] == "lag grows: anomaly" and not v["lag_steady"]
    assert v["lag"]["anomaly"]["growth_share"] == pytest.approx(0.2, abs=0.01)
    assert v["lag"]["ingest"]["keeps_up"]


def test_a_saw_tooth_that_starts_its_settled_part_in_a_trough_is_sustained() -> None:
    # anomaly's lag at 5,000 readings/s in a bench run (samples every 2.1 s, 57 msgs/s): its
    # Theil-Sen slope over the settled part is +0.10 of input, but no peak is above the first one
    lag = [0, 96, 136, 108, 0, 28, 68, 56, 80, 80, 80, 96]
    v = judge_step(series({"ingest": [0] * 12, "anomaly": lag}, msgs_per_s=57.0, every=2.1), SERVICES,
                   5_000, 5_004)
    assert v["lag"]["anomaly"]["growth_share"] > 0.05  # what the slope alone would call growth
    assert v["sustained"], v
    assert v["lag"]["anomaly"]["peak_rise_s"] < 1.0


def test_a_few_messages_of_saw_tooth_at_the_lowest_step_are_not_growth() -> None:
    # ingest at 1,000 readings/s in a bench run (13.3 msgs/s, samples every 2.1 s): the settled
    # part goes 0, 0, 0 then peaks at 44: 3.3 s of input, but 44 messages
    lag = [52, 16, 0, 44, 0, 0, 0, 44, 16, 0, 28]
    v = judge_step(series({"ingest": lag, "anomaly": [0] * 11}, msgs_per_s=13.3, every=2.1), SERVICES,
                   1_000, 1_008)
    assert v["lag"]["ingest"]["peak_rise_s"] > 1.0  # what the peak rule alone would call growth
    assert v["sustained"], v
    # the same shape with ten times the messages is growth
    big = judge_step(series({"ingest": [0, 0, 0, 0, 0, 0, 0, 440, 160, 300, 500], "anomaly": [0] * 11},
                            msgs_per_s=133.0, every=2.1), SERVICES, 10_000, 10_008)
    assert not big["sustained"] and "lag grows: ingest" in big["reason"]


def test_a_large_but_steady_backlog_is_not_sustained() -> None:
    samples = series({"ingest": [900] * 10, "anomaly": [5] * 10})  # 9 s of input behind, not growing
    v = judge_step(samples, SERVICES, 10_000, 10_000)
    assert not v["sustained"] and v["reason"] == "steady lag over 3 s of input: ingest"
    assert v["lag_steady"] and v["lag"]["ingest"]["final_lag_s"] == 9.0


def test_a_gateway_fleet_below_target_is_not_sustained() -> None:
    v = judge_step(series({"ingest": [0] * 6, "anomaly": [0] * 6}), SERVICES, 10_000, 8_000)
    assert not v["sustained"]
    assert "8,000 of 10,000" in v["reason"]


def test_latency_joins_send_and_arrival_by_machine_and_last_timestamp() -> None:
    sent = [("pump-01", 1_000, 5_000_000), ("pump-01", 2_000, 6_000_000), ("pump-02", 1_000, 5_000_000),
            ("pump-03", 9, 1)]  # pump-03's batch never arrived: counted as sampled, not as a latency
    arrived = {("pump-01", 1_000): 5_250_000.0, ("pump-01", 2_000): 6_100_000.0,
               ("pump-02", 1_000): 5_900_000.0}
    fig = latency_figures(sent, arrived)
    assert fig == {"p50": 250.0, "p99": 900.0, "n": 3, "sampled_batches": 4, "max": 900.0}
    assert percentiles([]) == {"p50": None, "p99": None, "n": 0}


def test_perf_tool_output_without_a_result_is_an_error() -> None:
    with pytest.raises(BenchError, match="no summary line"):
        bench_kafka.parse_producer("10 records sent, 5.0 records/sec (0.01 MB/sec), 3.0 ms avg latency")
    with pytest.raises(BenchError, match="no result"):
        bench_kafka.parse_consumer("start.time, end.time, data.consumed.in.MB\n")


def test_tiny_pipeline_run_writes_every_figure(broker, tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    res = bench_pipeline.main([
        "--bootstrap", broker.bootstrap, "--rates", "1500", "--moderate-rate", "1500", "--step-seconds", "6",
        "--warmup-rate", "1000", "--warmup-seconds", "3", "--machines", "8", "--sample-every", "2",
        "--sample-interval", "1", "--kafka-records", "2000", "--drain-seconds", "8", "--budget", "150",
        "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["sustained_readings_per_s"] == res["sustained_readings_per_s"]
    assert saved["lag_steady_readings_per_s"] >= saved["sustained_readings_per_s"]

    kafka = saved["kafka"]
    for tool in ("producer", "consumer"):
        assert kafka[tool]["records"] >= 2000 and kafka[tool]["records_per_s"] > 0
        assert kafka[tool]["readings_per_s"] == round(kafka[tool]["records_per_s"]
                                                      * kafka["message"]["readings_per_record"])
    assert 0 < kafka["producer"]["latency_p50_ms"] <= kafka["producer"]["latency_p99_ms"]
    assert 1000 < kafka["message"]["record_bytes"] < 10_000  # an Avro batch of up to 100 readings

    [step] = saved["steps"]
    assert step["target_readings_per_s"] == 1500
    assert 1300 < step["achieved_readings_per_s"] < 1700
    assert set(step["lag"]) == {"ingest", "validation", "anomaly", "maintenance", "archival", "notifier"}
    data_path = {"ingest", "validation", "anomaly", "maintenance", "archival"}  # notifier: alerts only
    assert all(f["input_msgs_per_s"] > 0 for svc, f in step["lag"].items() if svc in data_path)
    assert saved["groups_at_log_end"] == {"checked": True, "all_at_end": True, "behind": {}}
    # CPU per reading and memory of every service (the broker is not ours here: not counted)
    assert set(step["cpu_us_per_reading"]) == set(step["lag"]) == set(step["rss_mb"])
    cpu = step["cpu_us_per_reading"]
    assert all(v > 0 for k, v in cpu.items() if k in data_path), cpu
    assert all(20 < mb < 4096 for mb in step["rss_mb"].values()), step["rss_mb"]
    assert step["sustained"] is True or step["reason"]
    for figure in ("to_clickhouse", "to_valid_visible", "to_valid_message_ts"):
        lat = step["latency_ms"][figure]
        assert lat["n"] > 0.5 * lat["sampled_batches"] > 0, (figure, lat)
        assert 0 < lat["p50"] <= lat["p99"] < 120_000, (figure, lat)
    # visible to a consumer only after validation's transaction committed, i.e. after its timestamp
    assert step["latency_ms"]["to_valid_visible"]["p50"] >= step["latency_ms"]["to_valid_message_ts"]["p50"]
    assert saved["latency_at_moderate_ms"] == step["latency_ms"]
    if step["sustained"]:
        assert saved["sustained_readings_per_s"] == step["achieved_readings_per_s"]
        assert saved["ratio"]["to_kafka_producer"] == pytest.approx(
            step["achieved_readings_per_s"] / kafka["producer"]["readings_per_s"], rel=1e-3)
    else:
        assert saved["sustained_readings_per_s"] == 0
        assert saved["first_not_sustained"]["reason"] == step["reason"]


def test_a_small_alert_quality_run_judges_its_alerts_against_the_ground_truth(tmp_path: Path) -> None:
    """The shipped anomaly and maintenance logic over 2 h of a 4-machine factory with 2 faults:
    every figure `make bench` reports is there and they agree with each other."""
    out = tmp_path / "alerts.json"
    bench_alerts.main(["--seeds", "5", "--machines", "4", "--faulty", "2", "--hours", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    total = result["total"]
    assert run["faults"] == total["faults"] == 2
    assert 0 <= total["faults_alerted"] <= total["faults"]
    assert run["alerts"] >= total["faults_alerted"]  # every alerted fault has at least one alert
    assert run["alerts"] == run["false_alerts"] + round(
        (run["alerts_per_alerted_fault"] or 0) * run["faults_alerted"])
    assert total["faults_alerted"] >= 1, run  # a fault the shipped rules miss on 2 h would be news
    assert run["peak_alerts_per_10min"] >= 1 and run["alerts_per_10min_per_site"] > 0


def test_an_alert_on_a_skewed_gateway_is_judged_on_the_true_clock() -> None:
    """A gateway 15 min behind stamps its readings 15 min early: its clock alert, seen 15 min
    before the fault's true start, belongs to the fault, not to the false alerts."""
    from alert_quality import S, _window_of

    from plantstream.gateway.truth import FaultWindow

    t0 = 1_790_000_000 * S
    skew = FaultWindow("demo", "plant-1", "pump-01", "clock_skew", ("speed",), t0 + 3600 * S, t0 + 7200 * S,
                       {"offset": -900.0})
    seen_on_gateway_clock = {"machine": "pump-01", "first_seen": t0 + 3600 * S - 900 * S + 60 * S}
    assert _window_of(seen_on_gateway_clock, [skew]) is skew
    heat = FaultWindow("demo", "plant-1", "pump-01", "overheating", ("motor_temp",), t0 + 3600 * S,
                       t0 + 7200 * S)
    assert _window_of(seen_on_gateway_clock, [heat]) is None  # 14 min early on a true clock: false


def test_the_recovery_bench_stops_the_services_when_a_trial_fails(broker, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A service that dies mid-run ends the recovery bench with an error, and the platform it
    started is stopped too (it was left running against a broker being stopped)."""
    started: list[Stack] = []

    def a_service_died(_args: object, _broker: object, stack: Stack, _deadline: object) -> None:
        started.append(stack)
        assert any(p.alive for p in supervisor.status(stack.settings)), "the services never started"
        raise BenchError("service(s) died: anomaly")

    monkeypatch.setattr(bench_recovery, "trials_then_drain", a_service_died)
    args = bench_recovery.parse_args(["--machines", "4", "--prefix", "recovery-teardown."])
    with pytest.raises(BenchError, match="died"):
        bench_recovery.run(args, broker, tmp_path, bench_recovery.Deadline(60))
    [stack] = started
    assert [p.service for p in supervisor.status(stack.settings) if p.alive] == []
