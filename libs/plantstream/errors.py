"""One exception type for the whole package, so callers can catch plantstream's errors
without catching everything (the Quix Streams habit)."""


class PlantstreamError(Exception):
    """Base of every error plantstream raises on purpose. The message says what to do."""


class ConfigError(PlantstreamError):
    """A setting (environment variable) is missing or malformed."""


class SchemaError(PlantstreamError):
    """An Avro schema is missing, malformed or incompatible."""


class DecodeError(PlantstreamError):
    """A message could not be decoded. ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BrokerUnavailable(PlantstreamError):
    """The Kafka broker cannot be reached."""
