"""Assemble one machine's readings into rows: every sensor's value at one sample time.

Why: the multivariate detector needs the machine's sensors side by side, but readings travel
one per sensor and a batch boundary may cut a timestamp in two. A row is released as soon
as it holds every expected sensor, or when a newer timestamp shows that the rest will not
come (then the detector treats the absent sensors as missing). Rows at or before the last
released timestamp are redeliveries (at-least-once input, a replay after restart or an
aborted upstream transaction): they are counted and skipped, so the model learns each
sample time once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

QUALITY_BAD = 64  # OPC UA style: below 64 is bad; such readings are treated as missing

Row = tuple[int, dict[str, float]]


@dataclass
class RowAssembler:
    """Per-machine row builder; plain data so it pickles with the machine's detector."""

    expected: frozenset[str] = frozenset()
    last_ts: int = -1
    pending_ts: int | None = None
    pending: dict[str, float] = field(default_factory=dict)
    late: int = 0
    bad_quality: int = 0

    def add(self, sensors: Sequence[str], ts: Sequence[int], values: Sequence[float],
            quality: Sequence[int]) -> list[Row]:
        """Add readings given as columns (one entry per reading); return completed rows."""
        out: list[Row] = []
        expected = self.expected
        n_expected = len(expected)
        pending = self.pending
        for sensor, t, value, q in zip(sensors, ts, values, quality, strict=True):
            if t <= self.last_ts:
                self.late += 1
                continue
            if q < QUALITY_BAD:
                self.bad_quality += 1
                continue
            pts = self.pending_ts
            if pts is None:
                self.pending_ts = t
            elif t > pts:
                self._release(out)
                pending = self.pending
                self.pending_ts = t
            elif t < pts:  # older than the open row but newer than the last released: too late
                self.late += 1
                continue
            pending[sensor] = value
            if n_expected and len(pending) >= n_expected and expected.issubset(pending):
                self._release(out)
                pending = self.pending
        return out

    def _release(self, out: list[Row]) -> None:
        if self.pending_ts is not None and self.pending:
            out.append((self.pending_ts, self.pending))
            self.last_ts = self.pending_ts
            if not self.expected:  # machine unknown to the registry: learn its sensor set
                self.expected = frozenset(self.pending)
        self.pending = {}
        self.pending_ts = None

    def flush(self) -> list[Row]:
        """Release the open row even if incomplete (e.g. at shutdown)."""
        out: list[Row] = []
        self._release(out)
        return out
