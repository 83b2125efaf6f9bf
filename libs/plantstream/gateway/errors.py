"""Errors of the gateway tools (simulator, replayer, sender); all are PlantstreamErrors, so the
CLI prints them as one line saying what to fix."""

from plantstream.errors import PlantstreamError


class GatewayError(PlantstreamError):
    """A gateway tool was asked for something it cannot do (bad option, bad file, bad fault)."""
