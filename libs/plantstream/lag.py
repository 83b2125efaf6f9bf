"""Consumer lag and throughput per service, read from Kafka itself (committed offsets of each
service's consumer group against the topics' end offsets), so it works for any copy count
and needs nothing from the services."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from plantstream.kafka import admin_client
from plantstream.settings import Settings
from plantstream.topics import TopicSpec, group_inputs, services


def service_inputs() -> dict[str, tuple[str, tuple[TopicSpec, ...]]]:
    """service -> (consumer group, input topics), from the topic catalog: every service that
    reads a topic in its consumer group (named after the service; the topic prefix is added
    by :func:`plantstream.kafka.consumer_config`), with the topics it reads there."""
    return {name: (name, specs) for name in services() if (specs := group_inputs(name))}


SERVICE_INPUTS = service_inputs()


@dataclass
class GroupLag:
    service: str
    group: str
    committed: int  # sum of committed offsets over the input partitions
    end: int        # sum of end offsets
    members: int

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


def _is_input(settings: Settings, topic: str, specs: Iterable[TopicSpec]) -> bool:
    return any(spec.matches(settings, topic) for spec in specs)


def end_offsets(settings: Settings, specs: Iterable[TopicSpec]) -> dict[tuple[str, int], int]:
    """The log-end offset of every partition of ``specs``' topics (every tenant's, per tenant)."""
    from confluent_kafka import Consumer

    from plantstream.kafka import consumer_config, watermarks

    specs = list(specs)
    consumer = Consumer(consumer_config(settings, "plantstream-lag-probe"))
    try:
        meta = consumer.list_topics(timeout=10)
        out = {}
        for t, tm in sorted(meta.topics.items()):
            if tm.error is not None or not _is_input(settings, t, specs):
                continue
            for p in tm.partitions:
                out[(t, p)] = watermarks(consumer, TopicPartition(t, p))[1]
        return out
    finally:
        consumer.close()


def group_lags(settings: Settings, only: Iterable[str] | None = None) -> list[GroupLag]:
    """The lag of every service's consumer group (of the services in ``only``, if given: e.g.
    the ones a supervisor runs)."""
    wanted = SERVICE_INPUTS if only is None else {s: SERVICE_INPUTS[s] for s in only if s in SERVICE_INPUTS}
    admin = admin_client(settings)
    ends = end_offsets(settings, {spec for _, specs in wanted.values() for spec in specs})
    results = []
    for service, (group, specs) in wanted.items():
        gid = settings.topic_prefix + group
        parts = [TopicPartition(t, p) for (t, p) in ends if _is_input(settings, t, specs)]
        committed = 0
        try:
            fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid, parts)])[gid]
            for tp in fut.result().topic_partitions:
                committed += max(tp.offset, 0)
        except KafkaException:
            committed = 0
        members = 0
        try:
            desc = admin.describe_consumer_groups([gid])[gid].result()
            members = len(desc.members)
        except KafkaException:
            pass
        end = sum(ends[(tp.topic, tp.partition)] for tp in parts)
        results.append(GroupLag(service, gid, committed, end, members))
    return results


@dataclass
class PartitionLag:
    """One input partition of a service's group: committed offset, log end, and the data
    messages really left to read between them (transaction markers take offsets too)."""

    topic: str
    partition: int
    committed: int
    end: int
    unread: int

    @property
    def caught_up(self) -> bool:
        return self.unread == 0


def partition_lags(settings: Settings, service: str, limit: int = 1000) -> list[PartitionLag]:
    """Per input partition of ``service``'s group: committed vs end, and unread data messages
    (read with read_committed from the committed offset to the end, up to ``limit`` each)."""
    from confluent_kafka import Consumer

    from plantstream.kafka import consumer_config

    group, specs = SERVICE_INPUTS[service]
    admin = admin_client(settings)
    gid = settings.topic_prefix + group
    ends = end_offsets(settings, specs)
    parts = [TopicPartition(t, p) for (t, p) in ends]
    committed: dict[tuple[str, int], int] = {}
    try:
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid, parts)])[gid]
        committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in fut.result().topic_partitions}
    except KafkaException:
        pass
    unread = {k: 0 for k in ends}
    behind = [TopicPartition(t, p, committed.get((t, p), 0)) for (t, p), end in ends.items()
              if end > committed.get((t, p), 0)]
    if behind:
        probe = Consumer(consumer_config(settings, "plantstream-lag-probe", **{"enable.partition.eof": True}))
        try:
            probe.assign(behind)
            waiting = {(tp.topic, tp.partition) for tp in behind}
            while waiting:
                msgs = probe.consume(500, 2.0)
                if not msgs:
                    break
                for m in msgs:
                    key = (m.topic(), m.partition())
                    err = m.error()
                    if err is None:
                        unread[key] += 1
                        if unread[key] >= limit:
                            waiting.discard(key)
                    elif err.code() == err._PARTITION_EOF:
                        waiting.discard(key)
        finally:
            probe.close()
    return [PartitionLag(t, p, committed.get((t, p), 0), end, unread[(t, p)])
            for (t, p), end in sorted(ends.items())]


def unread_messages(settings: Settings, service: str, limit: int = 1000) -> int:
    """Data messages the service's group has not committed yet, counted by reading them.

    Offsets alone over-count on topics written in transactions: each commit leaves a control
    record that takes an offset but is never delivered, so a fully caught-up group still
    shows a lag of about one per partition. This counts what is really there (up to ``limit``
    per partition): see :func:`partition_lags`.
    """
    return sum(p.unread for p in partition_lags(settings, service, limit))


@dataclass(frozen=True)
class ToolRow:
    """One line of Kafka's own ``kafka-consumer-groups --describe`` (ConsumerGroupCommand)."""

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing there ("-")
    end: int

    @property
    def at_end(self) -> bool:
        return self.committed == self.end or (self.committed is None and self.end == 0)


def parse_group_describe(text: str) -> list[ToolRow]:
    """The partition rows of ConsumerGroupCommand's ``--describe`` output (headers, blank and
    notice lines skipped)."""
    rows = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 6 or cols[0] == "GROUP" or not cols[2].isdigit():
            continue
        committed = None if cols[3] == "-" else int(cols[3])
        rows.append(ToolRow(cols[0], cols[1], int(cols[2]), committed, int(cols[4])))
    return rows


def describe_groups_with_kafka_tool(run_tool: Callable[[list[str]], str], bootstrap: str,
                                    groups: Iterable[str]) -> list[ToolRow]:
    """Committed offset vs log end per partition, as Kafka's ConsumerGroupCommand (from the
    broker's own jars, ``kafka.sh groups``) reports them: an independent check of what the
    services committed. ``run_tool(args)`` runs ``kafka.sh groups ARGS`` and returns stdout."""
    args = ["--bootstrap-server", bootstrap, "--describe"]
    for g in groups:
        args += ["--group", g]
    return parse_group_describe(run_tool(args))


def off_log_end(settings: Settings, services: Iterable[str], run_tool: Callable[[list[str]], str],
                wait_s: float = 20.0) -> dict[str, list[ToolRow]]:
    """Per service: the input partitions where its group's committed offset is not the log end
    according to Kafka's ConsumerGroupCommand (empty lists: every partition at the end),
    asking again for up to ``wait_s`` (the notifier commits trailing markers on a timer).
    Raises if the tool did not report a group at all."""
    wanted = {s: SERVICE_INPUTS[s] for s in services if s in SERVICE_INPUTS}
    groups = {settings.topic_prefix + group: s for s, (group, _) in wanted.items()}
    deadline = time.monotonic() + wait_s
    while True:
        rows = describe_groups_with_kafka_tool(run_tool, settings.kafka_bootstrap, groups)
        missing = set(groups) - {r.group for r in rows}
        if missing:
            raise RuntimeError(f"ConsumerGroupCommand reported nothing for {sorted(missing)}")
        out: dict[str, list[ToolRow]] = {s: [] for s in wanted}
        for r in rows:
            service = groups[r.group]
            if _is_input(settings, r.topic, wanted[service][1]) and not r.at_end:
                out[service].append(r)
        if not any(out.values()) or time.monotonic() > deadline:
            return out
        time.sleep(2.0)


def data_messages_between(settings: Settings, topic: str, partition: int, start: int, end: int,
                          timeout: float = 10.0) -> int:
    """Data messages a read_committed reader finds in ``[start, end)`` of one partition (0:
    only transaction markers or aborted records are there). Unknown (the read did not reach
    ``end`` in time) counts as 1."""
    from confluent_kafka import Consumer

    from plantstream.kafka import consumer_config

    probe = Consumer(consumer_config(settings, "plantstream-marker-probe", **{"enable.partition.eof": True}))
    try:
        probe.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        count = 0
        while time.monotonic() < deadline:
            for m in probe.consume(100, 0.5):
                if m.error() is None and m.offset() < end:
                    count += 1
            if count:
                return count
            [pos] = probe.position([TopicPartition(topic, partition)])
            if pos.offset >= end:
                return 0
        return 1
    finally:
        probe.close()
