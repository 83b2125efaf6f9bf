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


def deployments() -> list[tuple[str, dict]]:
    docs = [(p.stem, yaml.safe_load(p.read_text())) for p in sorted((REPO / "deploy" / "k8s").glob("*.yaml"))]
    return [(name, d) for name, d in docs if d.get("kind") == "Deployment"]


def test_every_pod_runs_as_the_images_non_root_user_with_nothing_to_escalate() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users  # the image's last word: not root
    uid = int(users[-1].split(":")[0])
    found = deployments()
    assert {name for name, _ in found} >= set(SERVICES)
    for name, doc in found:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            # a read-only root: PLANTSTREAM_HOME and /tmp are the only writable places
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert {"/var/lib/plantstream", "/tmp"} <= set(mounts), name
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert all("emptyDir" in volumes[mounts[p]] for p in ("/var/lib/plantstream", "/tmp")), name


def test_every_pod_logs_in_to_kafka_as_its_own_service_with_secrets_kept_out_of_the_configmap() -> None:
    cm = yaml.safe_load((REPO / "deploy" / "k8s" / "config.yaml").read_text())["data"]
    assert cm["PLANTSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "PLANTSTREAM_CLICKHOUSE_URL" not in cm and not any("@" in str(v) for v in cm.values())
    for name, doc in deployments():
        pod = doc["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = {e["name"]: e for e in c["env"]}
        assert env["PLANTSTREAM_KAFKA_USERNAME"]["value"] == name
        dsn = env["PLANTSTREAM_CLICKHOUSE_URL"]["valueFrom"]["secretKeyRef"]
        assert dsn["name"] == "plantstream-clickhouse"
        login = env["PLANTSTREAM_KAFKA_PASSWORD_FILE"]["value"]
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert login.startswith(mounts["kafka-login"]["mountPath"] + "/")
        assert mounts["kafka-login"]["readOnly"] is True
        assert volumes["kafka-login"]["secret"]["secretName"] == f"plantstream-kafka-{name}", name


def test_compose_has_no_built_in_password_and_publishes_clickhouse_on_loopback_only() -> None:
    text = (REPO / "deploy" / "compose" / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    clickhouse = compose["services"]["clickhouse"]
    required = "${CLICKHOUSE_PASSWORD:?set CLICKHOUSE_PASSWORD}"  # compose refuses to start without it
    assert clickhouse["environment"]["CLICKHOUSE_PASSWORD"] == required
    assert all(str(p).startswith("127.0.0.1:") for p in clickhouse["ports"]), clickhouse["ports"]
    assert ":plantstream@" not in text  # the old fixed password
    for service in SERVICES:
        svc = compose["services"][service]
        assert svc["user"] == "10001:10001" and svc["read_only"] is True, service
        assert svc["cap_drop"] == ["ALL"], service
        assert any(str(v).endswith(":/var/lib/plantstream") for v in svc["volumes"]), service
