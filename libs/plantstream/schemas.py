"""The Avro contract: every schema version under ``schemas/<name>/v<N>.avsc``.

Schemas live once, in the repository's ``schemas/`` folder, and are never copied into a
service. Each version is identified on the wire by its CRC-64-AVRO fingerprint (Avro
single-object encoding), so a reader resolves any older or newer writer without a registry
server.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form
from fastavro.utils import generate_many

from plantstream.errors import SchemaError
from plantstream.settings import REPO_ROOT

_EMPTY = 0xC15D213AA4D7A795
_TABLE: list[int] = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint the Avro spec calls CRC-64-AVRO."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one named schema."""

    name: str
    version: int
    raw: dict[str, Any]
    parsed: Any
    fingerprint: int

    @property
    def ref(self) -> str:
        return f"{self.name}/v{self.version}"


def _strip_logical(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical(v) for v in schema]
    return schema


def schemas_dir() -> Path:
    return Path(os.environ.get("PLANTSTREAM_SCHEMAS_DIR", REPO_ROOT / "schemas"))


def load_version(name: str, version: int, path: Path) -> SchemaVersion:
    try:
        raw = json.loads(path.read_text())
        # Timestamps stay plain integers (microseconds) in Python: faster, and no time zone
        # surprises. logicalType is still declared for other readers; the fingerprint (over
        # the canonical form) is the same either way.
        parsed = fastavro.parse_schema(_strip_logical(raw), _write_hint=False, _force=True)
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise SchemaError(f"schema {path} cannot be parsed: {exc}") from exc
    canonical = to_parsing_canonical_form(raw)
    return SchemaVersion(name, version, raw, parsed, crc64_avro(canonical.encode()))


class SchemaRegistry:
    """All schema versions found in a folder, by name and by fingerprint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_name: dict[str, list[SchemaVersion]] = {}
        self.by_fingerprint: dict[int, SchemaVersion] = {}
        if not root.is_dir():
            raise SchemaError(f"schema folder {root} not found; set PLANTSTREAM_SCHEMAS_DIR")
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for path in folder.glob("v*.avsc"):
                m = re.fullmatch(r"v(\d+)\.avsc", path.name)
                if not m:
                    continue
                sv = load_version(folder.name, int(m.group(1)), path)
                self.by_name.setdefault(sv.name, []).append(sv)
                self.by_fingerprint[sv.fingerprint] = sv
        for versions in self.by_name.values():
            versions.sort(key=lambda v: v.version)

    def latest(self, name: str) -> SchemaVersion:
        try:
            return self.by_name[name][-1]
        except KeyError:
            known = ", ".join(sorted(self.by_name))
            raise SchemaError(f"no schema named {name!r} in {self.root} (known: {known})") from None

    def versions(self, name: str) -> list[SchemaVersion]:
        self.latest(name)
        return list(self.by_name[name])


@cache
def default_registry() -> SchemaRegistry:
    return SchemaRegistry(schemas_dir())


def can_read(writer: SchemaVersion, reader: SchemaVersion, samples: int = 25) -> str | None:
    """None if ``reader`` reads data written with ``writer``, else the reason it cannot.

    Checked by resolving generated sample records (fastavro's resolution rules are the
    spec's), which catches missing defaults, type changes and dropped enum symbols that
    the samples hit; enum symbols are checked exhaustively below because samples may miss one.
    """
    problem = _enum_problem(writer.raw, reader.raw)
    if problem:
        return problem
    for record in generate_many(writer.parsed, samples):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer.parsed, record)
        buf.seek(0)
        try:
            fastavro.schemaless_reader(buf, writer.parsed, reader.parsed)
        except Exception as exc:  # fastavro raises several types for resolution failures
            return f"{reader.ref} cannot read {writer.ref}: {exc}"
    return None


def _enums(schema: Any, out: dict[str, set[str]]) -> dict[str, set[str]]:
    if isinstance(schema, dict):
        if schema.get("type") == "enum":
            out[schema["name"]] = set(schema["symbols"])
        for value in schema.values():
            _enums(value, out)
    elif isinstance(schema, list):
        for value in schema:
            _enums(value, out)
    return out


def _enum_problem(writer: dict[str, Any], reader: dict[str, Any]) -> str | None:
    w, r = _enums(writer, {}), _enums(reader, {})
    for name, symbols in w.items():
        missing = symbols - r.get(name, symbols)
        if missing:
            return f"enum {name}: reader lacks symbols {sorted(missing)}"
    return None


def compatibility_problems(registry: SchemaRegistry) -> list[str]:
    """Full transitive compatibility: every version reads every other version's data."""
    problems = []
    for versions in registry.by_name.values():
        for writer in versions:
            for reader in versions:
                if writer is not reader:
                    problem = can_read(writer, reader)
                    if problem:
                        problems.append(problem)
    return problems
