"""A faust table that can be written from a timer and from delivery tasks.

faust picks a changelog record's partition from the event being processed, so a plain
``table[key] = value`` outside an agent fails. Every tracked alert remembers the partition of
the alerts topic it arrives on; :meth:`PinnedTable.pinned` writes its changelog record there,
which keeps the changelog co-partitioned with ``alerts`` whoever partitioned that topic
(faust's ``use_partitioner`` would hash with aiokafka's murmur2, while maintenance produces
with librdkafka's default partitioner), so a partition's new owner recovers exactly the
alerts it will receive revisions for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from faust.tables.table import Table


class PinnedTable(Table):
    _pinned: int | None = None

    def partition_for_key(self, key: Any) -> int | None:
        if self._pinned is not None:
            return self._pinned
        return super().partition_for_key(key)

    @contextlib.contextmanager
    def pinned(self, partition: int) -> Iterator[PinnedTable]:
        """Writes (and deletes) inside the block go to changelog partition ``partition``."""
        self._pinned = partition
        try:
            yield self
        finally:
            self._pinned = None
