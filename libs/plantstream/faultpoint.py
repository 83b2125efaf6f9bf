"""Test-only pause points inside a transaction, for the fault-injection suite.

Why: a copy frozen from outside (SIGSTOP) lands wherever it happens to be, mostly between
transactions. To freeze it at an exact step (offsets not yet sent, sent but not committed,
committed), ``PLANTSTREAM_FAULT_POINT=<step>@<n>`` makes the process stop itself
(SIGSTOP) the ``n``-th time it reaches ``step``; whoever runs it sends SIGCONT. Steps:
``before_offsets`` (outputs produced), ``before_commit`` (offsets sent to the transaction),
``after_commit``. Unset, as in production, :func:`reached` only compares a name. A value
that names no step raises at start-up, so a typo cannot make a fault trial pass vacuously.
"""

from __future__ import annotations

import logging
import os
import signal

from plantstream.errors import ConfigError

log = logging.getLogger(__name__)
STEPS = ("before_offsets", "before_commit", "after_commit")
ENV = "PLANTSTREAM_FAULT_POINT"


def parse(text: str | None) -> tuple[str, int] | None:
    """``"before_commit@3"`` -> ``("before_commit", 3)``; empty or unset -> None.

    >>> parse("before_commit@3"), parse(None)
    (('before_commit', 3), None)
    """
    if not text:
        return None
    step, _, n = text.partition("@")
    if step not in STEPS or not n.isdigit() or int(n) < 1:
        raise ConfigError(f"{ENV}={text!r}: use <step>@<n> with step one of {', '.join(STEPS)} and n >= 1")
    return step, int(n)


_POINT = parse(os.environ.get(ENV))
_seen = 0


def reached(step: str) -> None:
    """This process reached ``step`` of a transaction: stop here if the fault point says so."""
    global _seen
    if _POINT is None or step != _POINT[0]:
        return
    _seen += 1
    if _seen == _POINT[1]:
        log.warning("fault point reached: this process stops itself (SIGSTOP) until SIGCONT",
                    extra={"step": step, "occurrence": _seen})
        os.kill(os.getpid(), signal.SIGSTOP)
