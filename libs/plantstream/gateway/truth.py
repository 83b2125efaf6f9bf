"""Ground truth of a simulated run: which fault was active on which machine and sensors, when.

Written next to the run (JSON or CSV, by file extension) so anomaly detection and alerting
can be scored against what really happened.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plantstream.gateway.errors import GatewayError

CSV_COLUMNS = ("tenant", "site", "machine", "kind", "sensors", "start_us", "end_us", "params")


@dataclass(frozen=True)
class FaultWindow:
    """One injected fault; ``start_us``/``end_us`` are on the true clock (end exclusive)."""

    tenant: str
    site: str
    machine: str
    kind: str
    sensors: tuple[str, ...]
    start_us: int
    end_us: int
    params: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sensors"] = list(self.sensors)
        return d


def write_ground_truth(path: Path, windows: Sequence[FaultWindow],
                       meta: dict[str, Any] | None = None) -> None:
    """JSON: ``{"meta": {...}, "windows": [...]}``; CSV: one window a row, sensors joined by ``|``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(CSV_COLUMNS)
            for w in windows:
                out.writerow([w.tenant, w.site, w.machine, w.kind, "|".join(w.sensors), w.start_us, w.end_us,
                              json.dumps(w.params, sort_keys=True)])
    else:
        path.write_text(json.dumps({"meta": meta or {}, "windows": [w.to_dict() for w in windows]}, indent=2))


def load_ground_truth(path: Path) -> list[FaultWindow]:
    """Read a file written by :func:`write_ground_truth` (either format)."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as fh:
                return [FaultWindow(r["tenant"], r["site"], r["machine"], r["kind"],
                                    tuple(filter(None, r["sensors"].split("|"))), int(r["start_us"]),
                                    int(r["end_us"]), json.loads(r["params"] or "{}"))
                        for r in csv.DictReader(fh)]
        doc = json.loads(path.read_text())
        return [FaultWindow(**{**w, "sensors": tuple(w["sensors"])}) for w in doc["windows"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GatewayError(f"cannot read ground truth {path}: {exc}") from None
