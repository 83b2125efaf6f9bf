"""Kafka security as shipped: the local broker requires SASL/SCRAM logins and enforces ACLs
generated from the topic catalog. Each service's principal can do what its catalog entries
say and nothing else; a gateway can only write gateway batches; a wrong or missing login, or
an unauthenticated client, gets a clear refusal."""

from __future__ import annotations

from dataclasses import replace

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException

from plantstream.assets import parse_assets, publish_assets
from plantstream.errors import BrokerUnavailable
from plantstream.kafka import check_broker, consumer_config
from plantstream.kafkaauth import add_gateway, grants, password_file, principal, provision
from plantstream.settings import Settings
from plantstream.topics import (
    ALERT_COMMANDS,
    ALERTS,
    ANOMALIES,
    ANOMALY_MODELS,
    ASSETS,
    GATEWAY_READINGS,
    READINGS_REJECTED,
    READINGS_VALID,
    TENANT_GATEWAY_READINGS,
    services,
)

from kafka_io import produce_error, read_error

pytestmark = pytest.mark.integration


def test_each_service_may_do_exactly_what_the_catalog_says(settings: Settings) -> None:
    anomaly = grants(settings, "anomaly")
    as_rows = {(g.resource, g.name, g.operation, g.prefixed) for g in anomaly}
    p = settings.topic_prefix
    assert as_rows == {
        ("topic", READINGS_VALID.physical(settings), "read", False),
        ("topic", ASSETS.physical(settings), "read", False),
        ("topic", ANOMALIES.physical(settings), "write", False),
        ("topic", READINGS_REJECTED.physical(settings), "write", False),
        ("topic", ANOMALY_MODELS.physical(settings), "write", False),
        ("topic", ANOMALY_MODELS.physical(settings), "read", False),
        ("group", f"{p}anomaly", "read", True),
        ("transactional-id", f"{p}anomaly", "write", True),
    }
    gateway = {(g.resource, g.name, g.operation) for g in grants(settings, "gateway", "acme")}
    acme = TENANT_GATEWAY_READINGS.for_tenant(settings, "acme")
    assert gateway == {("topic", acme, "write")}  # its tenant's topic, nothing else
    ingest = {(g.resource, g.name, g.operation, g.prefixed) for g in grants(settings, "ingest")}
    assert ("topic", f"{p}gateway.readings.", "read", True) in ingest  # every tenant's, by prefix
    board = {(g.resource, g.name, g.operation, g.prefixed) for g in grants(settings, "board")}
    assert ("topic", f"{p}alert.commands.", "write", True) in board  # for each tenant's users
    assert not {n for r, n, op, _ in board if op == "write" and r == "topic"} - {f"{p}alert.commands."}
    for service in services():  # no service may write the gateways' topics or read another's state
        rows = grants(settings, service)
        assert not {("topic", GATEWAY_READINGS.physical(settings), "write"), ("topic", acme, "write")} & {
            (g.resource, g.name, g.operation) for g in rows}
    with pytest.raises(Exception, match="neither a service"):
        grants(settings, "intruder")


def test_a_service_principal_is_refused_what_its_acls_do_not_allow(settings: Settings) -> None:
    anomaly = provision(settings, "anomaly")
    assert anomaly.kafka_username == principal(settings, "anomaly") != settings.kafka_username
    assert password_file(settings, "anomaly").stat().st_mode & 0o077 == 0  # only its owner reads it
    assert produce_error(anomaly, ANOMALIES.physical(settings)) is None
    assert read_error(anomaly, READINGS_VALID.physical(settings), "anomaly") is None
    refused = produce_error(anomaly, GATEWAY_READINGS.physical(settings))
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    refused = produce_error(anomaly, ALERTS.physical(settings))
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    refused = read_error(anomaly, ALERT_COMMANDS.physical(settings), "anomaly")
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # another service's consumer group is not its own
    refused = read_error(anomaly, READINGS_VALID.physical(settings), "archival")
    assert refused is not None and refused.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    again = provision(settings, "anomaly")  # idempotent: same password, still works
    assert again.kafka_password == anomaly.kafka_password
    assert produce_error(again, ANOMALIES.physical(settings)) is None


def test_a_gateway_may_write_batches_and_nothing_else(settings: Settings) -> None:
    gw = add_gateway(settings, "press-01", "acme")
    own = TENANT_GATEWAY_READINGS.for_tenant(settings, "acme")
    assert gw.kafka_username == f"{settings.topic_prefix}gateway.acme.press-01"
    assert produce_error(gw, own) is None
    # cannot inject past validation, act for people, or write the operator's any-tenant feed
    for topic in (READINGS_VALID, ALERT_COMMANDS, ASSETS, GATEWAY_READINGS):
        refused = produce_error(gw, topic.physical(settings))
        assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic.name
    # it reads nothing, not even its own topic
    for topic in (own, READINGS_VALID.physical(settings), ALERTS.physical(settings)):
        refused = read_error(gw, topic)
        assert refused is not None and refused.code() in (
            KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED), topic
    with pytest.raises(Exception, match="gateway name"):
        add_gateway(settings, "../admin", "acme")


def test_wrong_missing_or_no_login_is_refused_with_what_to_do(settings: Settings) -> None:
    with pytest.raises(BrokerUnavailable, match="refused principal 'admin'.*PLANTSTREAM_KAFKA_USERNAME"):
        check_broker(replace(settings, kafka_password="not-the-password"), timeout=10)
    with pytest.raises(BrokerUnavailable, match="no Kafka password.*PLANTSTREAM_KAFKA_PASSWORD"):
        check_broker(replace(settings, kafka_password=""), timeout=10)
    with pytest.raises(BrokerUnavailable, match="refused principal 'nobody'"):
        check_broker(replace(settings, kafka_username="nobody"), timeout=10)
    # a client that does not authenticate at all gets nothing (the broker drops it)
    with pytest.raises(BrokerUnavailable):
        check_broker(replace(settings, kafka_security_protocol="PLAINTEXT"), timeout=5)
    with pytest.raises(KafkaException):
        Consumer(consumer_config(replace(settings, kafka_security_protocol="PLAINTEXT"), "x")).list_topics(
            timeout=5)


def test_the_password_is_never_in_the_settings_repr(settings: Settings) -> None:
    assert settings.kafka_password and settings.kafka_password not in repr(settings)


def test_the_cli_prints_the_acls_and_gives_a_gateway_a_login_that_works(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from plantstream.cli.main import cli

    monkeypatch.setenv("PLANTSTREAM_HOME", str(settings.home))
    monkeypatch.setenv("PLANTSTREAM_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("PLANTSTREAM_TOPIC_PREFIX", settings.topic_prefix)
    acls = CliRunner().invoke(cli, ["kafka", "acls", "--who", "gateway"])
    assert acls.exit_code == 0, acls.output
    assert f"{settings.topic_prefix}gateway.<tenant>.<name>" in acls.output
    rows = [line for line in acls.output.splitlines() if "gateway.readings" in line]
    assert len(rows) == 1 and "write" in rows[0].split(), acls.output  # one grant: write its tenant's topic
    assert f"{settings.topic_prefix}gateway.readings.{{tenant}}" in rows[0]
    unknown = CliRunner().invoke(cli, ["kafka", "add-gateway", "line-7", "--tenant", "acme"])
    assert unknown.exit_code == 1 and "no machines in the asset registry" in unknown.output, unknown.output
    publish_assets(settings, parse_assets({"tenants": [{"id": "acme", "sites": [{"id": "p1", "machines": [
        {"id": "m1", "sensors": [{"id": "t", "unit": "degC"}]}]}]}]}))
    added = CliRunner().invoke(cli, ["kafka", "add-gateway", "line-7", "--tenant", "acme"])
    assert added.exit_code == 0, added.output
    login = password_file(settings, "gateway.acme.line-7")
    assert str(login) in added.output and login.read_text() not in added.output  # the password is not shown
    gw = replace(settings, kafka_username=f"{settings.topic_prefix}gateway.acme.line-7",
                 kafka_password=login.read_text())
    assert produce_error(gw, TENANT_GATEWAY_READINGS.for_tenant(settings, "acme")) is None
    bad = CliRunner().invoke(cli, ["kafka", "add-gateway", "no/slashes", "--tenant", "acme"])
    assert bad.exit_code == 1 and "gateway name" in bad.output and "Traceback" not in bad.output


def test_a_service_started_by_the_supervisor_gets_its_own_login_and_never_the_admins(
        settings: Settings) -> None:
    import os
    import time

    from plantstream import supervisor

    assert os.environ["PLANTSTREAM_KAFKA_ADMIN_PASSWORD"]  # this process has it (conftest)
    pid = supervisor.start(settings, "validation",
                           env={**os.environ, "PLANTSTREAM_TOPIC_PREFIX": settings.topic_prefix,
                                "PLANTSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap})
    try:
        # Popen returns once the child's close-on-exec pipe closed, which the kernel does a
        # moment before it sets up the new program's environment: read until it is there.
        env: dict[str, str] = {}
        deadline = time.monotonic() + 10
        while "PLANTSTREAM_HOME" not in env and time.monotonic() < deadline:
            raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
            time.sleep(0.05)
    finally:
        supervisor.stop(settings, "validation")
    assert env["PLANTSTREAM_KAFKA_USERNAME"] == principal(settings, "validation")
    assert env["PLANTSTREAM_KAFKA_PASSWORD_FILE"] == str(password_file(settings, "validation"))
    assert "PLANTSTREAM_KAFKA_ADMIN_PASSWORD" not in env and "PLANTSTREAM_KAFKA_PASSWORD" not in env
    assert settings.kafka_password not in "\0".join(env.values())
