"""Pure logic of the pipeline benchmark: whether a step's rate was sustained (consumer lag
bounded and not growing, per service) and end-to-end latencies from matched send/arrival
times. No Kafka here, so it is unit-tested on its own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common import percentiles

# A service keeps up when its final lag is at most FINAL_LAG_S seconds of input (the faust
# services commit every 1-2 s and archival writes every second, so a healthy service shows
# up to about 2 s of committed-offset lag) and its lag does not grow over the settled part of
# the step: growth (robust slope) under MAX_GROWTH of the input rate, or adding up to less
# than MAX_RISE_S seconds of input (batching makes lag a saw-tooth; its noise is not growth),
# or with the saw-tooth's peak in the last third of the step at most MAX_RISE_S seconds of input
# over its peak in the middle third (a slope over a few samples that start in a trough rises
# although the lag is bounded: measured, 0 -> 96 messages over a settled part whose earlier
# peak was 136; a service that falls behind raises every later peak).
MAX_GROWTH = 0.05
MAX_RISE_S = 1.0
FINAL_LAG_S = 3.0
MIN_LAG_MSGS = 20  # below this many messages a lag is noise whatever the rate
# A rise of the lag (trend or peak) by fewer messages than this is the batching saw-tooth, not
# growth: at the lowest steps one peak is a large share of a second of input (measured at
# 1,000 readings/s, 13 msgs/s: troughs of 0 and peaks of 44 through the settled part, which
# stopped the ladder at its first step). A service that really falls behind at such a rate
# is caught by the next step, whose rise is larger.
MIN_RISE_MSGS = 64
SETTLE_SHARE = 1 / 3  # the first third of a step is its transient; the slope ignores it
DRIVER_SHORTFALL = 0.95  # the gateway fleet must reach 95% of the target rate


@dataclass(frozen=True)
class LagSample:
    t: float                 # seconds since the step started
    lag: Mapping[str, int]   # service -> messages not yet committed
    end: Mapping[str, int]   # service -> sum of end offsets of its inputs


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Theil-Sen slope of ys over xs (median of pairwise slopes: one saw-tooth peak does not
    tilt it); 0 with fewer than two distinct xs."""
    pairs = sorted((ys[j] - ys[i]) / (xs[j] - xs[i])
                   for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i])
    if not pairs:
        return 0.0
    mid = len(pairs) // 2
    return pairs[mid] if len(pairs) % 2 else (pairs[mid - 1] + pairs[mid]) / 2


def service_lag(samples: Sequence[LagSample], service: str) -> dict[str, Any]:
    """Lag figures of one service over a step: input rate, final/max lag, growth."""
    first, last = samples[0], samples[-1]
    span = last.t - first.t
    in_rate = (last.end[service] - first.end[service]) / span if span > 0 else 0.0
    settled = [s for s in samples if s.t >= first.t + span * SETTLE_SHARE] or list(samples)
    grow = slope([s.t for s in settled], [float(s.lag[service]) for s in settled])
    tail = [s.lag[service] for s in samples[-3:]]
    final = sum(tail) / len(tail)
    per_s = in_rate if in_rate > 0 else None
    growth = grow / in_rate if in_rate > 0 else 0.0
    rise_msgs = grow * (settled[-1].t - settled[0].t)  # how much the lag grew over the settled part
    rise_s = rise_msgs / in_rate if in_rate > 0 else 0.0  # ... in seconds of input
    bounded = final <= MIN_LAG_MSGS or (per_s is not None and final / per_s <= FINAL_LAG_S)
    middle = [s.lag[service] for s in settled if s.t < first.t + span * 2 * SETTLE_SHARE]
    last_third = [s.lag[service] for s in settled if s.t >= first.t + span * 2 * SETTLE_SHARE]
    peak_rise = (max(last_third) - max(middle)) if middle and last_third else 0
    peak_rise_s = peak_rise / in_rate if in_rate > 0 else 0.0
    steady = (growth < MAX_GROWTH or rise_s < MAX_RISE_S or rise_msgs <= MIN_RISE_MSGS
              or peak_rise_s < MAX_RISE_S or peak_rise <= MIN_RISE_MSGS)
    return {"input_msgs_per_s": round(in_rate, 1), "final_lag_msgs": round(final, 1),
            "final_lag_s": round(final / per_s, 2) if per_s else None,
            "max_lag_s": round(max(s.lag[service] for s in samples) / per_s, 2) if per_s else None,
            "lag_growth_msgs_per_s": round(grow, 2), "growth_share": round(growth, 4),
            "lag_rise_s": round(rise_s, 2), "peak_rise_s": round(peak_rise_s, 2), "steady": steady,
            "keeps_up": steady and bounded}


def judge_step(samples: Sequence[LagSample], services: Iterable[str], target: float,
               achieved: float | None) -> dict[str, Any]:
    """Per-service lag figures and the verdict: sustained, or why not."""
    if len(samples) < 3:
        return {"sustained": False, "reason": "too few lag samples", "lag": {}, "lag_steady": False}
    lag = {svc: service_lag(samples, svc) for svc in services}
    growing = [svc for svc, f in lag.items() if not f["steady"]]
    behind = [svc for svc, f in lag.items() if f["steady"] and not f["keeps_up"]]
    driver_ok = achieved is not None and achieved >= DRIVER_SHORTFALL * target
    reasons = [] if driver_ok else [
        f"gateway fleet reached only {achieved or 0:,.0f} of {target:,.0f} readings/s"]
    if growing:
        reasons.append("lag grows: " + ", ".join(growing))
    if behind:
        reasons.append(f"steady lag over {FINAL_LAG_S:g} s of input: " + ", ".join(behind))
    # lag_steady: throughput kept up (lag not growing) even where the lag itself is too large
    return {"sustained": not reasons, "reason": "; ".join(reasons), "lag": lag,
            "lag_steady": driver_ok and not growing}


def latencies_ms(sent: Iterable[Sequence[Any]], arrived: Mapping[tuple[str, int], float]) -> list[float]:
    """Milliseconds from each sampled batch's send (machine, last reading ts, send µs) to its
    arrival (µs) looked up by (machine, last reading ts); batches not found are skipped."""
    out = []
    for machine, last_ts, send_us in sent:
        at = arrived.get((machine, int(last_ts)))
        if at is not None:
            out.append((at - send_us) / 1000.0)
    return out


def latency_figures(sent: Sequence[Sequence[Any]],
                    arrived: Mapping[tuple[str, int], float]) -> dict[str, Any]:
    """p50/p99 (ms) and how many of the sampled batches were found."""
    lat = latencies_ms(sent, arrived)
    return {**percentiles(lat), "sampled_batches": len(sent), "max": round(max(lat), 1) if lat else None}
