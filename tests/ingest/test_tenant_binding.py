"""Tenant binding on a shared hub, on the real broker with logins and ACLs on: a gateway
belongs to one tenant and may write only that tenant's topic (``gateway.readings.<tenant>``),
so the broker refuses it any other tenant's topic; a batch on its own topic that names another
tenant is refused by ingest (``tenant_mismatch``), filed under the tenant that sent it, and
nothing of it reaches the named tenant's data. A tenant added while ingest runs is read too."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from confluent_kafka import KafkaError
from opentelemetry import trace
from readings_support import (
    ASSET_DOC,
    SITE,
    gateway_batch,
    gateway_output,
    now_us,
    publish,
    reading,
    run_archival,
    run_validation,
)

from ingest.processor import IngestProcessor
from ingest.service import SERVICE
from plantstream.assets import AssetRegistry, parse_assets
from plantstream.avro import AvroCodec
from plantstream.db import connect
from plantstream.errors import BrokerUnavailable, PlantstreamError
from plantstream.gateway.sender import send_batches
from plantstream.kafka import check_broker
from plantstream.kafkaauth import add_gateway, provision
from plantstream.runner import StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.topics import (
    GATEWAY_READINGS,
    READINGS_NORMALIZED,
    READINGS_REJECTED,
    TENANT_GATEWAY_READINGS,
    machine_key,
)

from kafka_io import produce_all, produce_error, read_error, read_topic

pytestmark = pytest.mark.integration


def tenant_doc(tenant: str) -> dict:
    """The readings_support registry (one press, tags T1/P1/V1) under another tenant id."""
    return {"tenants": [dict(ASSET_DOC["tenants"][0], id=tenant)]}


def records(*tenants: str) -> list[dict]:
    return [r for t in tenants for r in parse_assets(tenant_doc(t))]


def on_topic(settings: Settings, tenant_topic: str, batch: dict, key_tenant: str | None = None):
    out = gateway_output(settings, batch)
    out.topic = TENANT_GATEWAY_READINGS.for_tenant(settings, tenant_topic)
    out.key = machine_key(key_tenant or batch["tenant"], batch["site"], batch["machine"])
    return out


def test_a_gateway_may_write_only_its_own_tenants_topic(settings: Settings) -> None:
    publish(settings, records("acme", "beta"))
    gw = add_gateway(settings, "line-1", "acme")
    assert gw.kafka_username == f"{settings.topic_prefix}gateway.acme.line-1"
    assert produce_error(gw, TENANT_GATEWAY_READINGS.for_tenant(settings, "acme")) is None
    for topic in (TENANT_GATEWAY_READINGS.for_tenant(settings, "beta"),  # another tenant's
                  GATEWAY_READINGS.physical(settings),  # the operator's (any tenant)
                  READINGS_NORMALIZED.physical(settings)):  # past ingest
        refused = produce_error(gw, topic)
        assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic
    refused = read_error(gw, TENANT_GATEWAY_READINGS.for_tenant(settings, "beta"))
    assert refused is not None and refused.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(Exception, match="tenant id"):
        add_gateway(settings, "line-2", "../beta")
    # the simulator/replay path says so before sending anything
    batch = dict(gateway_batch("b-1", [reading("V1", now_us(), 1.0)]), tenant="beta")
    with pytest.raises(PlantstreamError, match="may not write .*gateway.readings.beta.*--tenant beta"):
        send_batches(gw, [(batch, None)])


def test_a_batch_naming_another_tenant_is_refused_and_filed_under_its_sender(settings: Settings) -> None:
    """acme's gateway, on acme's topic, sends one honest batch and one that claims beta's press
    (payload and key both say beta); a gateway with a wrong password sends nothing. Ingest runs
    as its own principal on its shipped subscription, then validation and archival. Beta's
    tables get nothing; the refusal is acme's row in ``rejected``."""
    publish(settings, records("acme", "beta"))
    gw = add_gateway(settings, "line-1", "acme")
    t0 = now_us() - 10_000_000
    honest = dict(gateway_batch("ok-1", [reading("V1", t0, 1.0)]), tenant="acme")
    claim = dict(gateway_batch("forged-1", [reading("V1", t0, 66.0)]), tenant="beta")
    forged = on_topic(settings, "acme", claim)
    assert produce_all(gw, [on_topic(settings, "acme", honest), forged]) == 2
    impostor = replace(gw, kafka_password="guessed")
    with pytest.raises(BrokerUnavailable, match="refused principal"):
        check_broker(impostor, timeout=10)

    ingest_login = provision(settings, "ingest")
    registry = AssetRegistry(records("acme", "beta"))
    proc = IngestProcessor(ingest_login, registry, trace.get_tracer("test"))
    run_processor(proc, ingest_login, [s.subscription(settings) for s in SERVICE.sources], "ingest",
                  stop=StopFlag(), metrics=proc.metrics, idle_exit_after=4.0, until_read_to_end=True)

    codec = AvroCodec()
    normalized = [codec.decode(m.value(), "reading_batch")
                  for m in read_topic(settings, READINGS_NORMALIZED.physical(settings), until=lambda m: m)]
    assert [(b["tenant"], b["batch_id"]) for b in normalized] == [("acme", "ok-1")]
    dead = [codec.decode(m.value(), "dead_letter")
            for m in read_topic(settings, READINGS_REJECTED.physical(settings), until=lambda m: m)]
    assert len(dead) == 1
    d = dead[0]
    assert d["reason"] == "tenant_mismatch" and d["stage"] == "ingest"
    assert d["tenant"] == "acme"  # the sender's, never shown to beta
    assert "'beta'" in d["detail"] and "'acme'" in d["detail"]
    assert d["source_topic"] == TENANT_GATEWAY_READINGS.for_tenant(settings, "acme")
    assert d["original"] == forged.value  # kept whole, to show acme's operator what was sent
    assert d["original_key"] == machine_key("beta", SITE, "press-01")

    run_validation(settings, registry, idle=2.0)
    run_archival(settings)
    client = connect(settings.clickhouse_url)
    try:
        readings = client.query("SELECT tenant, count() FROM readings GROUP BY tenant").result_rows
        rejected = client.query("SELECT tenant, reason FROM rejected").result_rows
    finally:
        client.close()
    assert readings == [("acme", 1)]  # beta's tables hold nothing of it
    assert rejected == [("acme", "tenant_mismatch")]


def test_undecodable_bytes_on_a_tenant_topic_are_that_tenants_dead_letter(settings: Settings) -> None:
    publish(settings, records("acme"))
    gw = add_gateway(settings, "line-1", "acme")
    junk = on_topic(settings, "acme", gateway_batch("x", []))
    junk.value, junk.headers = b'{"readings": [', [("content-type", b"application/json")]
    assert produce_all(gw, [junk]) == 1
    from readings_support import run_ingest

    run_ingest(settings, AssetRegistry(records("acme")))
    dead = [AvroCodec().decode(m.value(), "dead_letter")
            for m in read_topic(settings, READINGS_REJECTED.physical(settings), until=lambda m: m)]
    assert [(d["reason"], d["tenant"]) for d in dead] == [("malformed_json", "acme")]


def test_a_tenant_added_while_ingest_runs_is_read_without_a_restart(settings: Settings) -> None:
    publish(settings, records("acme"))
    registry = AssetRegistry(records("acme", "gamma"))
    proc = IngestProcessor(settings, registry, trace.get_tracer("test"))
    stop = StopFlag()
    runner = threading.Thread(target=run_processor, daemon=True, kwargs=dict(
        processor=proc, settings=settings, topics=[s.subscription(settings) for s in SERVICE.sources],
        group="ingest", stop=stop, metrics=proc.metrics))
    runner.start()
    codec = AvroCodec()

    def tenants_out(n: int) -> list[str]:
        got = read_topic(settings, READINGS_NORMALIZED.physical(settings), until=lambda m: len(m) >= n,
                         timeout=60)
        return [codec.decode(m.value(), "reading_batch")["tenant"] for m in got]

    try:
        first = dict(gateway_batch("a-1", [reading("V1", now_us() - 2_000_000, 1.0)]), tenant="acme")
        assert produce_all(settings, [on_topic(settings, "acme", first)]) == 1
        assert tenants_out(1) == ["acme"]  # running and assigned before gamma's topic exists
        publish(settings, records("gamma"))  # creates gateway.readings.gamma now
        gw = add_gateway(settings, "line-9", "gamma")
        batch = dict(gateway_batch("g-1", [reading("V1", now_us() - 1_000_000, 2.0)]), tenant="gamma")
        assert produce_all(gw, [on_topic(settings, "gamma", batch)]) == 1
        assert tenants_out(2) == ["acme", "gamma"]
    finally:
        stop.stopping = True
        runner.join(30)
    assert not runner.is_alive()
