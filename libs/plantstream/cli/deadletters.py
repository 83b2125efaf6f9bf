"""``plantstream deadletters list|replay``: find archived dead letters and re-send them after a fix.

Dead letters are selected in the archive (the ``rejected`` table in ClickHouse, through the
same read-only path as ``plantstream sql``) by reason, stage, machine, source topic and time.
``replay`` re-sends each selected original to its source topic as it came: value, key and
headers (minus error context), plus ``ps-replay-of: <dead-letter id>``, so the services
handle it as new input and its fate can be traced back.

Per-reading dead letters of ingest (e.g. ``unknown_tag``: the original is one gateway reading
as JSON) are regrouped: the selected readings of one gateway message go out as one JSON
gateway batch with the original key and headers, ``sent_at`` = now and batch id
``replay:<source message>:<hash of the dead-letter ids>``, so replaying the same selection
again repeats the batch id and ingest drops the copy.

What replay will not send (it refuses the whole run, naming them, unless
``--skip-unreplayable``):
- a truncated original (cut to fit ``PLANTSTREAM_DEAD_LETTER_MAX_BYTES``): only its length and
  SHA-256 are left, re-sending the cut bytes would be wrong; have the sender re-send it;
- any other per-reading dead letter (validation's: the original is one normalized reading,
  not a message of the source topic).

Replaying twice does not double data. Within ``PLANTSTREAM_DEDUP_WINDOW_S`` ingest drops a
gateway batch id it accepted (the second copy becomes a ``duplicate_batch`` dead letter; a
regrouped batch gets the same id for the same dead letters). Past the window, ingest accepts
the copy again, but validation rejects every reading at or before its sensor's last accepted
time (``duplicate_timestamp`` / ``out_of_order``), and the first replay moved those clocks past
the replayed readings. Either way a second replay ends in ``rejected``, not twice in
``readings``. (Replays to other topics, e.g. a maintenance ``alert.commands`` dead letter, rely
on that stage's own checks.) Dead letters whose original is itself a replay show the
``ps-replay-of`` id (column ``replay_of`` of ``list``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from plantstream.cli.common import friendly_errors, print_table, settings
from plantstream.errors import PlantstreamError
from plantstream.settings import Settings

if TYPE_CHECKING:
    from plantstream.db.query import QueryTarget

SAMPLE_ROWS = 10
PROGRESS_OVER = 200  # show a progress bar when re-sending more dead letters than this
PAGE = 100  # originals fetched from the archive per query (each up to the dead-letter size limit)


@dataclass(frozen=True)
class Selection:
    """Which archived dead letters a command works on."""

    reasons: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    machine: str | None = None  # tenant/site/machine
    tenant: str | None = None
    source_topics: tuple[str, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    ids: tuple[str, ...] = ()
    limit: int | None = None

    def where(self, topic_prefix: str) -> str:
        """The SQL condition (literals quoted with :func:`plantstream.db.reports.lit`)."""
        from plantstream.db.reports import lit, ts_lit

        def one_of(column: str, values: tuple[str, ...]) -> str | None:
            return f"{column} IN ({', '.join(lit(v) for v in values)})" if values else None

        conditions = [one_of("reason", self.reasons), one_of("stage", self.stages), one_of("id", self.ids)]
        if self.source_topics:  # a logical name (gateway.readings) or the physical one
            names = {n for t in self.source_topics for n in (t, topic_prefix + t)}
            conditions.append(one_of("source_topic", tuple(sorted(names))))
        if self.machine is not None:
            parts = self.machine.split("/")
            if len(parts) != 3 or not all(parts):
                raise PlantstreamError(
                    f"--machine {self.machine!r}: give tenant/site/machine, e.g. acme/plant1/press-01")
            columns = ("tenant", "site", "machine")
            conditions += [f"{c} = {lit(v)}" for c, v in zip(columns, parts, strict=True)]
        if self.tenant is not None:
            conditions.append(f"tenant = {lit(self.tenant)}")
        if self.since is not None:
            conditions.append(f"rejected_at >= {ts_lit(self.since)}")
        if self.until is not None:
            conditions.append(f"rejected_at < {ts_lit(self.until)}")
        kept = [c for c in conditions if c]
        return " AND ".join(kept) if kept else "1"

    def sql(self, topic_prefix: str) -> str:
        """Everything about the selected dead letters except their originals (fetched in pages
        by :func:`originals` when replaying, so a large selection does not sit in memory)."""
        # bytes leave ClickHouse as hex: the query path hands strings back as UTF-8 text
        limit = f" LIMIT {int(self.limit)}" if self.limit else ""
        return (
            "SELECT id, tenant, site, machine, stage, reason, source_topic, truncated, "
            "toString(rejected_at) AS rejected_at, length(original) AS original_bytes, "
            "original_key IS NULL AS key_null, hex(ifNull(original_key, '')) AS key_hex, "
            "original_header_keys AS header_keys, "
            "arrayMap(v -> if(isNull(v), '', hex(assumeNotNull(v))), original_header_values) AS header_hex, "
            "arrayMap(v -> isNull(v), original_header_values) AS header_null, "
            "original_length, content_type "
            f"FROM rejected WHERE {self.where(topic_prefix)} "
            f"ORDER BY rejected_at, id LIMIT 1 BY id{limit}")


@dataclass(frozen=True)
class Letter:
    """One archived dead letter, with what replay needs but its original's bytes."""

    id: str
    tenant: str
    site: str
    machine: str
    stage: str
    reason: str
    source_topic: str
    rejected_at: str
    truncated: bool
    original_bytes: int
    key: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    original_length: int | None
    content_type: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Letter:
        headers = tuple((k, None if null else bytes.fromhex(v))
                        for k, v, null in zip(row["header_keys"], row["header_hex"], row["header_null"],
                                              strict=True))
        return cls(row["id"], row["tenant"], row["site"], row["machine"], row["stage"], row["reason"],
                   row["source_topic"], row["rejected_at"], bool(row["truncated"]),
                   int(row["original_bytes"]),
                   None if row["key_null"] else bytes.fromhex(row["key_hex"]), headers,
                   row["original_length"], row["content_type"])

    @property
    def per_reading(self) -> bool:
        """An item of a message (id ``topic:partition:offset:index``, index >= 0)."""
        parts = self.id.split(":")
        return len(parts) == 4 and parts[3] != "-1"

    @property
    def gateway_reading(self) -> bool:
        """One reading of a gateway message (ingest's per-reading dead letters): replayed
        regrouped into a gateway batch."""
        from plantstream.deadletter import CONTENT_TYPE_READING_JSON

        return self.per_reading and self.content_type == CONTENT_TYPE_READING_JSON

    @property
    def source_message(self) -> str:
        """``topic:partition:offset`` of the message the original was (part of)."""
        return self.id.rsplit(":", 1)[0] if self.per_reading else self.id

    @property
    def refusal(self) -> str | None:
        """Why this one cannot be replayed, or None."""
        if self.truncated:
            return "truncated"
        if self.per_reading and not self.gateway_reading:
            return "per-reading"
        return None

    @property
    def replay_of(self) -> str | None:
        from plantstream.deadletter import HEADER_REPLAY_OF

        for k, v in self.headers:
            if k == HEADER_REPLAY_OF and v is not None:
                return v.decode("utf-8", "replace")
        return None

    def replay_key(self) -> bytes | None:
        """The original key; for a v1 dead letter (no key kept) the machine key, as the
        pipeline topics are keyed."""
        from plantstream.topics import machine_key

        if self.key is not None or self.original_length is not None:
            return self.key
        return machine_key(self.tenant, self.site, self.machine) if self.machine != "unknown" else None

    def replay_headers(self) -> list[tuple[str, bytes | None]]:
        from plantstream.deadletter import replay_headers

        headers = list(self.headers)
        if self.original_length is None and self.content_type:  # v1: only the content type was kept
            headers = [("content-type", self.content_type.encode())]
        return replay_headers(headers, self.id)


def select(target: QueryTarget, s: Settings, selection: Selection) -> list[Letter]:
    """The archived dead letters ``selection`` names, oldest first."""
    return [Letter.of(row) for row in target.arrow(selection.sql(s.topic_prefix)).to_pylist()]


def originals(target: QueryTarget, ids: list[str]) -> dict[str, bytes]:
    """The original bytes of these dead letters, by id."""
    from plantstream.db.reports import lit

    table = target.arrow(f"SELECT id, hex(original) AS original_hex FROM rejected "
                         f"WHERE id IN ({', '.join(lit(i) for i in ids)}) LIMIT 1 BY id")
    return {row["id"]: bytes.fromhex(row["original_hex"]) for row in table.to_pylist()}


def resends(letters: list[Letter]) -> list[list[Letter]]:
    """The messages a replay sends, as the dead letters each carries: one per whole-message
    dead letter, one per gateway message for its per-reading ones (oldest first)."""
    groups: dict[str, list[Letter]] = {}
    for letter in letters:
        groups.setdefault(letter.source_message if letter.gateway_reading else letter.id, []).append(letter)
    return list(groups.values())


def regrouped_batch(group: list[Letter], originals: dict[str, bytes], now_us: int) -> tuple[bytes, list]:
    """One JSON gateway batch (value, headers) of the readings of ``group``, all per-reading
    dead letters of one gateway message."""
    import hashlib
    import json

    from plantstream.deadletter import replay_headers
    from plantstream.gateway.contract import HEADER_CONTENT_TYPE, HEADER_GATEWAY, encode_json_batch

    first = group[0]
    try:
        readings = [json.loads(originals[x.id]) for x in group]
    except ValueError as exc:
        raise PlantstreamError(
            f"the original of {first.id} is not the JSON reading ingest writes: {exc}") from None
    ids = [x.id for x in group]
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    gateway = next((v.decode("utf-8", "replace") for k, v in first.headers if k == HEADER_GATEWAY and v),
                   "replay")
    batch = {"batch_id": f"replay:{first.source_message}:{digest}", "tenant": first.tenant,
             "site": first.site, "machine": first.machine, "gateway": gateway, "sent_at": now_us,
             "sequence": None, "readings": readings}
    kept = [(k, v) for k, v in first.headers if k != HEADER_CONTENT_TYPE]
    marks = ",".join(ids)
    headers = replay_headers([(HEADER_CONTENT_TYPE, b"application/json"), *kept],
                             marks if len(marks) <= 4096 else f"{ids[0]},...(+{len(ids) - 1})")
    return encode_json_batch(batch), headers


def replay(target: QueryTarget, s: Settings, letters: list[Letter], progress: bool = False) -> int:
    """Re-send the letters' originals to their source topics (see :func:`resends`), fetching
    originals about ``PAGE`` at a time; return how many messages Kafka acknowledged."""
    import time

    from plantstream.kafka import Output, ReliableProducer

    producer = ReliableProducer(s)
    groups = resends(letters)
    with click.progressbar(length=len(letters), label="re-sending", file=click.get_text_stream("stderr"),
                           hidden=not progress) as bar:
        start = 0
        while start < len(groups):
            page, n = [], 0
            while start < len(groups) and (not page or n + len(groups[start]) <= PAGE):
                page.append(groups[start])
                n += len(groups[start])
                start += 1
            values = originals(target, [x.id for group in page for x in group])
            for group in page:
                first = group[0]
                if first.gateway_reading:
                    value, headers = regrouped_batch(group, values, time.time_ns() // 1000)
                else:
                    value, headers = values[first.id], first.replay_headers()
                producer.produce(Output(first.source_topic, first.replay_key(), value, headers))
            producer.poll(0)
            bar.update(n)
    return producer.flush(60)


def summary(letters: list[Letter]) -> list[dict[str, Any]]:
    """Counts by reason and source topic, with how many cannot be replayed."""
    counts: Counter[tuple[str, str]] = Counter((x.reason, x.source_topic) for x in letters)
    refused: Counter[tuple[str, str]] = Counter((x.reason, x.source_topic) for x in letters if x.refusal)
    return [{"reason": r, "source_topic": t, "dead_letters": n, "unreplayable": refused[(r, t)]}
            for (r, t), n in sorted(counts.items())]


def sample(letters: list[Letter], n: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    return [{"id": x.id, "machine": f"{x.tenant}/{x.site}/{x.machine}", "stage": x.stage, "reason": x.reason,
             "rejected_at": x.rejected_at, "bytes": x.original_bytes, "refused": x.refusal or "",
             "replay_of": x.replay_of or ""} for x in letters[:n]]


def _messages(n: int) -> str:
    return f"{n} message" if n == 1 else f"{n} messages"


def _selection_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--reason", "reasons", multiple=True,
                     help="Reason code (repeatable), e.g. unknown_machine."),
        click.option("--stage", "stages", multiple=True,
                     help="Stage that rejected it (repeatable): ingest, validation, ..."),
        click.option("--machine", default=None, metavar="TENANT/SITE/MACHINE", help="Only this machine."),
        click.option("--tenant", default=None, help="Only this tenant."),
        click.option("--source-topic", "source_topics", multiple=True,
                     help="Topic the original was read from (repeatable), e.g. gateway.readings."),
        click.option("--since", default=None,
                     help="Rejected at or after this time (ISO 8601, UTC if no offset)."),
        click.option("--until", default=None, help="Rejected before this time (ISO 8601)."),
        click.option("--id", "ids", multiple=True, help="This dead-letter id (repeatable)."),
        click.option("--limit", type=int, default=None, help="At most this many (oldest first)."),
    ]):
        fn = option(fn)
    return fn


def _selection(reasons: tuple[str, ...], stages: tuple[str, ...], machine: str | None, tenant: str | None,
               source_topics: tuple[str, ...], since: str | None, until: str | None, ids: tuple[str, ...],
               limit: int | None) -> Selection:
    from plantstream.db.reports import parse_time

    if limit is not None and limit < 1:
        raise PlantstreamError("--limit must be at least 1")
    return Selection(reasons, stages, machine, tenant, source_topics,
                     parse_time(since) if since else None, parse_time(until) if until else None, ids, limit)


@click.group()
def deadletters() -> None:
    """Archived dead letters: list them, and replay them to their source topic after a fix."""


@deadletters.command("list")
@_selection_options
@click.option("--rows", type=int, default=SAMPLE_ROWS, show_default=True,
              help="Rows to show after the counts.")
@friendly_errors
def list_letters(rows: int, **options: Any) -> None:
    """Count the selected dead letters by reason and source topic, and show the first ROWS."""
    from plantstream.db.query import open_target

    s = settings()
    target = open_target(s)
    try:
        letters = select(target, s, _selection(**options))
    finally:
        target.close()
    print_table(summary(letters))
    if letters:
        click.echo()
        print_table(sample(letters, rows))
    click.echo(f"({len(letters)} dead letters)", err=True)


@deadletters.command("replay")
@_selection_options
@click.option("--dry-run", is_flag=True, help="Show what would be re-sent; send nothing.")
@click.option("--skip-unreplayable", is_flag=True,
              help="Re-send the rest when some selected dead letters cannot be replayed "
                   "(truncated or per-reading).")
@friendly_errors
def replay_letters(dry_run: bool, skip_unreplayable: bool, **options: Any) -> None:
    """Re-send the selected dead letters' originals to their source topics (after a fix, e.g.
    `plantstream assets apply`). Start with --dry-run."""
    from plantstream.db.query import open_target

    s = settings()
    target = open_target(s)
    try:
        _replay_selected(target, s, _selection(**options), dry_run, skip_unreplayable)
    finally:
        target.close()


def _replay_selected(target: QueryTarget, s: Settings, selection: Selection, dry_run: bool,
                     skip_unreplayable: bool) -> None:
    letters = select(target, s, selection)
    refused = [x for x in letters if x.refusal]
    sendable = [x for x in letters if not x.refusal]
    if dry_run:
        print_table(summary(letters))
        if letters:
            click.echo()
            print_table(sample(letters))
        click.echo(f"dry run: would re-send {len(sendable)} of {len(letters)} dead letters as "
                   f"{_messages(len(resends(sendable)))} ({len(refused)} cannot be replayed); nothing sent")
        return
    if not letters:
        click.echo("no dead letters match; nothing sent")
        return
    if refused and not skip_unreplayable:
        kinds = Counter(x.refusal for x in refused)
        raise PlantstreamError(
            f"{len(refused)} of the {len(letters)} selected dead letters cannot be replayed "
            f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; e.g. {refused[0].id}): a truncated "
            "original was cut to fit PLANTSTREAM_DEAD_LETTER_MAX_BYTES (only its length and SHA-256 are "
            "kept; have the sender re-send it), a per-reading one of validation holds one normalized "
            "reading, not a message of its topic. Narrow the selection or pass --skip-unreplayable; "
            "nothing was sent")
    from plantstream.kafka import check_broker

    check_broker(s)
    acked = replay(target, s, sendable, progress=len(sendable) > PROGRESS_OVER)
    topics = Counter(group[0].source_topic for group in resends(sendable))
    click.echo(f"re-sent {len(sendable)} dead letters as {_messages(acked)} ("
               + ", ".join(f"{n} to {t}" for t, n in sorted(topics.items()))
               + ")" + (f"; skipped {len(refused)} that cannot be replayed" if refused else ""))


commands = [deadletters]
