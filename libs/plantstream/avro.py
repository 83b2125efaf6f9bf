"""Avro single-object encoding: ``C3 01`` + 8-byte little-endian schema fingerprint + body.

The fingerprint tags each message with its writer schema, so a reader resolves old and new
versions to the schema it was built for without asking a registry server.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro

from plantstream.errors import DecodeError
from plantstream.schemas import SchemaRegistry, SchemaVersion, default_registry

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
CONTENT_TYPE_AVRO = "application/vnd.plantstream.avro"
CONTENT_TYPE_JSON = "application/json"


class AvroCodec:
    """Encode with the newest version of a named schema; decode any known version into the
    newest (or a chosen) reader version."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or default_registry()

    def header(self, sv: SchemaVersion) -> bytes:
        return MAGIC + struct.pack("<Q", sv.fingerprint)

    def encode(self, name: str, record: dict[str, Any], version: int | None = None) -> bytes:
        sv = self.registry.latest(name) if version is None else self._version(name, version)
        buf = io.BytesIO()
        buf.write(self.header(sv))
        fastavro.schemaless_writer(buf, sv.parsed, record)
        return buf.getvalue()

    def writer_of(self, data: bytes) -> SchemaVersion:
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError("not_avro", "message does not start with the Avro single-object marker C3 01")
        (fp,) = struct.unpack_from("<Q", data, 2)
        sv = self.registry.by_fingerprint.get(fp)
        if sv is None:
            raise DecodeError(
                "unknown_schema",
                f"schema fingerprint {fp:016x} is not in schemas/; is the writer newer than this service?",
            )
        return sv

    def decode(self, data: bytes, name: str, version: int | None = None) -> dict[str, Any]:
        writer = self.writer_of(data)
        reader = self.registry.latest(name) if version is None else self._version(name, version)
        if writer.name != name:
            raise DecodeError("wrong_schema", f"expected a {name} message, got {writer.ref}")
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            record = fastavro.schemaless_reader(
                buf, writer.parsed, None if writer is reader else reader.parsed
            )
        except Exception as exc:  # EOFError, struct/UnicodeDecodeError, resolution errors
            raise DecodeError("malformed_avro", f"{writer.ref} body cannot be decoded: {exc!r}") from exc
        if buf.tell() != len(data):
            extra = len(data) - buf.tell()
            raise DecodeError("malformed_avro", f"{extra} trailing bytes after {writer.ref} record")
        return record  # type: ignore[return-value]

    def _version(self, name: str, version: int) -> SchemaVersion:
        for sv in self.registry.versions(name):
            if sv.version == version:
                return sv
        raise DecodeError("unknown_schema", f"no version {version} of {name}")
