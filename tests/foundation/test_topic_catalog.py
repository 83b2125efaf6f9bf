"""The topic catalog is the pipeline's graph: every topic a service's code names is in the
catalog with that service as a producer or consumer, and the graph hangs together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from plantstream import topics
from plantstream.lag import SERVICE_INPUTS
from plantstream.topics import CATALOG, OUTSIDE, TopicSpec

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
SPECS = {name: value for name, value in vars(topics).items() if isinstance(value, TopicSpec)}


def topics_named(source: str) -> set[str]:
    """The catalog constants a module takes from plantstream.topics: imported by name, or
    read as attributes of the imported module (``topics.ALERTS``, ``plantstream.topics.ALERTS``)."""
    tree = ast.parse(source)
    names: set[str] = set()
    aliases = {"plantstream.topics"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "plantstream.topics":
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "plantstream":
            aliases |= {a.asname or a.name for a in node.names if a.name == "topics"}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == "plantstream.topics" and a.asname}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) in aliases:
            names.add(node.attr)
    return {n for n in names if n in SPECS}


def test_the_finder_sees_imports_and_attribute_reads() -> None:
    src = ("from plantstream.topics import ALERTS, machine_key\n"
           "from plantstream import topics as t\n"
           "import plantstream.topics\n"
           "x = t.ANOMALIES, plantstream.topics.ASSETS\n")
    assert topics_named(src) == {"ALERTS", "ANOMALIES", "ASSETS"}


def service_dirs() -> list[Path]:
    return sorted(p for p in SERVICES_DIR.iterdir() if (p / "__init__.py").exists())


@pytest.mark.parametrize("folder", service_dirs(), ids=lambda p: p.name)
def test_every_topic_a_service_uses_lists_the_service(folder: Path) -> None:
    service = folder.name
    wrong = {}
    for path in sorted(folder.rglob("*.py")):
        for name in topics_named(path.read_text()):
            spec = SPECS[name]
            if service not in spec.producers + spec.consumers:
                wrong[f"{path.relative_to(SERVICES_DIR)}: {name}"] = (spec.producers, spec.consumers)
    assert wrong == {}, (f"{service} uses topics whose catalog entry does not list it as producer or "
                         f"consumer (producers, consumers): {wrong}")


def test_every_topic_is_in_the_catalog_once_and_has_both_ends() -> None:
    assert set(SPECS.values()) == set(CATALOG)
    assert len({spec.name for spec in CATALOG}) == len(CATALOG)
    for spec in CATALOG:
        assert spec.producers and spec.consumers, spec.name


def test_every_service_named_in_the_catalog_has_a_folder() -> None:
    folders = {p.name for p in service_dirs()}
    named = {n for spec in CATALOG for n in spec.producers + spec.consumers} - set(OUTSIDE)
    assert named <= folders, f"catalog names services without a folder: {named - folders}"


def test_every_service_input_comes_from_upstream() -> None:
    """A topic a service reads in its group is written by someone else (state changelogs,
    read and written by their owner, are compacted and read outside the group)."""
    for service, (group, specs) in SERVICE_INPUTS.items():
        assert group == service
        for spec in specs:
            assert set(spec.producers) - {service}, f"{service} reads {spec.name} that only it writes"
