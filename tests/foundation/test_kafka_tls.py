"""The local broker's TLS mode (``PLANTSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL``), as a
production broker would run: SASL/SCRAM over TLS with a certificate the clients verify. A
client that does not trust the certificate, or that speaks SASL without TLS, gets nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from plantstream.errors import BrokerUnavailable
from plantstream.kafka import Output, check_broker, create_topics
from plantstream.localbroker import LocalBroker
from plantstream.settings import Settings
from plantstream.topics import READINGS_VALID

from kafka_io import produce_all, read_topic

pytestmark = pytest.mark.integration


def test_the_local_broker_serves_sasl_over_tls_and_clients_verify_its_certificate(
        settings: Settings, tmp_path: Path) -> None:
    broker = LocalBroker.new(tmp_path / "kafka-tls")
    broker.extra_env["PLANTSTREAM_KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL"
    broker.start()
    try:
        secrets = broker.home / "secrets"
        ca = secrets / "ca.pem"
        assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert (secrets / "broker.p12").stat().st_mode & 0o077 == 0  # the key: its owner only
        s = replace(settings, kafka_bootstrap=broker.bootstrap, kafka_security_protocol="SASL_SSL",
                    kafka_ssl_ca_file=str(ca))
        assert check_broker(s, timeout=20) == 1
        create_topics(s, [READINGS_VALID])
        topic = READINGS_VALID.physical(s)
        assert produce_all(s, [Output(topic, b"k", b"over tls")]) == 1
        assert [m.value() for m in read_topic(s, topic, until=lambda ms: len(ms) >= 1)] == [b"over tls"]
        # the broker's own tools log in over TLS as admin too
        listed = broker.run("topics", "--bootstrap-server", broker.bootstrap, "--list")
        assert topic in listed.stdout.split()
        with pytest.raises(BrokerUnavailable):  # the system's CAs do not vouch for this broker
            check_broker(replace(s, kafka_ssl_ca_file=""), timeout=5)
        with pytest.raises(BrokerUnavailable):  # no TLS: no answer
            check_broker(replace(s, kafka_security_protocol="SASL_PLAINTEXT"), timeout=5)
    finally:
        broker.stop()
