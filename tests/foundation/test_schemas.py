"""The Avro contract: documented, carrying tenant/site/machine, and compatible across versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantstream.schemas import SchemaRegistry, compatibility_problems, default_registry

HERE = Path(__file__).parent


def _fields(schema: object):
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            for f in schema["fields"]:
                yield schema["name"], f
                yield from _fields(f["type"])
        elif schema.get("type") == "array":
            yield from _fields(schema["items"])
    elif isinstance(schema, list):
        for s in schema:
            yield from _fields(s)


@pytest.mark.parametrize("sv", [v for vs in default_registry().by_name.values() for v in vs],
                         ids=lambda v: v.ref)
def test_every_field_has_a_doc(sv) -> None:
    undocumented = [f"{rec}.{f['name']}" for rec, f in _fields(sv.raw) if not f.get("doc")]
    assert undocumented == []
    assert sv.raw.get("doc")


def _carries_ids(record: dict) -> bool:
    """True if the record has tenant/site/machine, or (for a batch of per-machine items, like a
    changelog entry) every record in its array fields does."""
    names = {f["name"] for f in record["fields"]}
    if {"tenant", "site", "machine"} <= names:
        return True
    arrays = [f["type"]["items"] for f in record["fields"]
              if isinstance(f["type"], dict) and f["type"].get("type") == "array"
              and isinstance(f["type"]["items"], dict)]
    return bool(arrays) and all(_carries_ids(items) for items in arrays)


@pytest.mark.parametrize("name", sorted(default_registry().by_name))
def test_every_record_carries_tenant_site_machine(name: str) -> None:
    assert _carries_ids(default_registry().latest(name).raw)


def test_repository_schemas_are_backward_and_forward_compatible() -> None:
    assert compatibility_problems(default_registry()) == []


def test_gateway_batch_has_two_versions_to_resolve() -> None:
    assert [v.version for v in default_registry().versions("gateway_batch")] == [1, 2]


def test_check_fails_on_an_incompatible_change() -> None:
    registry = SchemaRegistry(HERE / "incompatible_schemas")
    problems = compatibility_problems(registry)
    # v2 adds a required field: v2 cannot read v1 data (backward break) ...
    assert any("gateway_batch/v2 cannot read gateway_batch/v1" in p and "line" in p for p in problems)
    # ... while v1 can still read v2 data (the extra field is skipped).
    assert not any("gateway_batch/v1 cannot read gateway_batch/v2" in p for p in problems)


def test_check_catches_a_dropped_enum_symbol(tmp_path: Path) -> None:
    base = default_registry().latest("alert_command")
    import json

    (tmp_path / "alert_command").mkdir()
    (tmp_path / "alert_command" / "v1.avsc").write_text(json.dumps(base.raw))
    narrowed = json.loads(json.dumps(base.raw))
    for f in narrowed["fields"]:
        if f["name"] == "action":
            f["type"]["symbols"] = ["acknowledge", "resolve"]
    (tmp_path / "alert_command" / "v2.avsc").write_text(json.dumps(narrowed))
    problems = compatibility_problems(SchemaRegistry(tmp_path))
    assert any("silence" in p for p in problems)
