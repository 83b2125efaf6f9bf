"""A faust table that can be written from a timer.

faust decides a changelog record's partition from the event being processed, so a plain
``table[key] = value`` outside an agent fails. Every machine's state remembers the partition
its inputs arrive on; :meth:`MachineTable.pinned` writes the changelog record there, which
keeps the changelog co-partitioned with the inputs whoever partitioned them (faust's
``use_partitioner`` would hash the key with aiokafka's murmur2, while the platform's
confluent-kafka producers use librdkafka's default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from faust.tables.table import Table


class MachineTable(Table):
    _pinned: int | None = None

    def partition_for_key(self, key: Any) -> int | None:
        if self._pinned is not None:
            return self._pinned
        return super().partition_for_key(key)

    @contextlib.contextmanager
    def pinned(self, partition: int) -> Iterator[MachineTable]:
        """Writes inside the block go to changelog partition ``partition``."""
        self._pinned = partition
        try:
            yield self
        finally:
            self._pinned = None
