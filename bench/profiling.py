"""Where each service's CPU goes, from py-spy (a sampling profiler that attaches to a running
process and does not slow it down much): ``Profiles.start(pids, seconds)`` records every
process for the same seconds, ``finish()`` reads py-spy's collapsed stacks and returns each
process's top functions by own time ("self") and by time including callees ("total"), as
shares of its samples.

    py-spy record --pid PID --duration S --rate R --format raw --nonblocking -o FILE
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PY_SPY = Path(sys.executable).with_name("py-spy")
RATE_HZ = 50


def available() -> bool:
    return PY_SPY.exists() or shutil.which("py-spy") is not None


def top_functions(collapsed: str, n: int = 8) -> dict[str, Any]:
    """Top ``n`` frames of py-spy's raw (collapsed) output: ``frame;frame;leaf count`` lines.

    >>> out = top_functions("main (a.py:1);work (a.py:5) 3\\nmain (a.py:1);idle (a.py:9) 1\\n", 2)
    >>> out["samples"], out["self"][0], out["total"][0]
    (4, ['work (a.py:5)', 0.75], ['main (a.py:1)', 1.0])
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        samples += k
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += k
        for f in set(frames):
            total[f] += k
    share = (lambda c: round(c / samples, 3)) if samples else (lambda c: 0.0)
    return {"samples": samples,
            "self": [[f, share(c)] for f, c in own.most_common(n)],
            "total": [[f, share(c)] for f, c in total.most_common(n) if not f.startswith("<module>")]}


def _short(frame: str) -> str:
    """``func (/long/path/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")")
    parts = Path(path.split(":")[0]).parts
    line = path.rpartition(":")[2]
    return f"{name} ({'/'.join(parts[-2:])}:{line})" if parts else name


class Profiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, pids: dict[str, int], seconds: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        exe = str(PY_SPY) if PY_SPY.exists() else "py-spy"
        for name, pid in pids.items():
            out = self.folder / f"{name}.txt"
            cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(RATE_HZ),
                   "--format", "raw", "--nonblocking", "-o", str(out)]
            self.procs[name] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                 text=True), out)

    def finish(self, timeout: float = 60.0) -> dict[str, Any]:
        res: dict[str, Any] = {}
        for name, (proc, out) in self.procs.items():
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                err = "py-spy did not finish"
            if out.exists():
                res[name] = top_functions(out.read_text(errors="replace"))
            else:
                res[name] = {"error": (err or "no output").strip().splitlines()[-1:]}
        self.procs.clear()
        return res
