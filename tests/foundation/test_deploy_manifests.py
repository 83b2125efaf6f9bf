"""Production manifests cannot be started here, so they are checked: one manifest per service
with the service's own name, and only documented settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from plantstream.settings import DOCUMENTED
from plantstream.supervisor import SERVICES

REPO = Path(__file__).resolve().parents[2]
KNOWN = {name for name, _, _ in DOCUMENTED}


@pytest.mark.parametrize("service", SERVICES)
def test_one_folder_one_manifest_one_name(service: str) -> None:
    assert (REPO / "services" / service / "__main__.py").is_file()
    doc = yaml.safe_load((REPO / "deploy" / "k8s" / f"{service}.yaml").read_text())
    assert doc["metadata"]["name"] == service
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == service and container["args"] == [service]


def test_compose_runs_every_service_with_documented_settings() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "compose.yaml").read_text())
    for service in SERVICES:
        assert compose["services"][service]["command"] == [service]
        env = compose["services"][service]["environment"]
        assert set(env) <= KNOWN, set(env) - KNOWN


def test_configmap_holds_only_documented_settings() -> None:
    cm = yaml.safe_load((REPO / "deploy" / "k8s" / "config.yaml").read_text())
    assert set(cm["data"]) <= KNOWN, set(cm["data"]) - KNOWN
