"""The start-up every registry-following processor service shares (ingest, validation,
anomaly, maintenance), written once so a service's ``service.py`` only says what is its own.

A :class:`ProcessorService` names a service's inputs, its processor factory and its batch
shape. :meth:`~ProcessorService.main` is the process entry (settings from the environment,
logging, tracing, the metrics endpoint, SIGTERM); :meth:`~ProcessorService.run` is the same
loop without the process set-up, so a test can run the very service it ships in its own
process (``idle_exit_after``) or in a thread (:meth:`~ProcessorService.start`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import Tracer

from plantstream.assets import AssetFollower, AssetRegistry
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.runner import Processor, StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
from plantstream.topics import TopicSpec

ProcessorFactory = Callable[[Settings, AssetRegistry, Tracer, ServiceMetrics], Processor]


@dataclass(frozen=True)
class ProcessorService:
    """One service on the transactional loop: consumer group ``name`` reads ``sources``.

    ``batched`` services (anomaly, maintenance) gather up to ``batch_size`` messages for up
    to ``PLANTSTREAM_BATCH_WAIT_SECONDS``, because each transaction also writes the state of
    every machine the batch touched; the others for ``PLANTSTREAM_LINGER_SECONDS``."""

    name: str
    sources: list[TopicSpec]
    make: ProcessorFactory
    batch_size: int = 500
    batched: bool = False

    def run(self, settings: Settings, *, stop: StopFlag, tracer: Tracer | None = None,
            metrics: ServiceMetrics | None = None, idle_exit_after: float | None = None,
            until_read_to_end: bool = False) -> None:
        """Follow the asset registry and run the processor until ``stop`` (or idle, or read to
        the end: see :func:`~plantstream.runner.run_processor`)."""
        metrics = metrics or ServiceMetrics(self.name)
        follower = AssetFollower(settings).start()
        try:
            processor = self.make(settings, follower.registry, tracer or trace.get_tracer(self.name), metrics)
            topics = [spec.subscription(settings) for spec in self.sources]
            run_processor(processor, settings, topics, self.name,
                          batch_size=self.batch_size,
                          max_wait=settings.batch_wait_seconds if self.batched else settings.linger_seconds,
                          stop=stop, metrics=metrics, idle_exit_after=idle_exit_after,
                          until_read_to_end=until_read_to_end)
        finally:
            follower.stop()

    def start(self, settings: Settings) -> InProcess:
        """Run the service in a daemon thread of this process (tests): stop with ``.stop()``."""
        return InProcess(self, settings).start()

    def main(self) -> None:
        """The process entry: environment settings, logs, traces, metrics, SIGTERM."""
        settings = Settings.from_env()
        log = setup_logging(self.name, settings.log_level, settings.log_format)
        tracer = setup_tracing(self.name, settings)
        serve(settings, self.name)
        metrics = ServiceMetrics(self.name)
        log.info("starting")
        try:
            self.run(settings, stop=StopFlag().install(), tracer=tracer, metrics=metrics)
        finally:
            flush_tracing()
            log.info("stopped", extra={"records_in": metrics.records_in,
                                       "dead_letters": dict(metrics.dead_letters)})


@dataclass
class InProcess:
    """A service running in a thread; an exception in it is kept and re-raised by the checks."""

    service: ProcessorService
    settings: Settings
    stop_flag: StopFlag = field(default_factory=StopFlag)
    metrics: ServiceMetrics | None = None
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> InProcess:
        self.metrics = ServiceMetrics(self.service.name)
        self._thread = threading.Thread(target=self._run, name=f"service-{self.service.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.service.run(self.settings, stop=self.stop_flag, metrics=self.metrics)
        except BaseException as exc:  # noqa: BLE001 - kept for the test thread to raise
            self.error = exc

    def assert_running(self) -> None:
        """Raise if the service thread died (with its exception as the cause)."""
        if self.error is not None:
            raise AssertionError(f"{self.service.name} failed: {self.error!r}") from self.error
        assert self._thread is not None and self._thread.is_alive(), f"{self.service.name} stopped"

    def stop(self, timeout: float = 60) -> None:
        """Finish the batch, commit, leave the group; re-raise what the service raised."""
        self.stop_flag.stopping = True
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), f"{self.service.name} did not stop within {timeout}s"
        if self.error is not None:
            raise AssertionError(f"{self.service.name} failed: {self.error!r}") from self.error
