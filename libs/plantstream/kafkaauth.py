"""Kafka principals and their least-privilege ACLs, derived from the topic catalog.

Every service runs as its own SCRAM principal, ``<topic prefix><service>``, and every gateway
as ``<topic prefix>gateway.<tenant>.<name>``. What each may do follows from the catalog's graph
(:mod:`plantstream.topics`): WRITE on the topics it produces, READ on those it consumes,
its consumer group and its transactional ids (both by the prefix ``<topic prefix><service>``),
nothing else. A gateway belongs to one tenant and may only write that tenant's
``gateway.readings.<tenant>``: it can neither read any data nor write another tenant's topic
or anything downstream of validation, and ingest refuses a batch on it that names another
tenant (``tenant_mismatch``). The broker's StandardAuthorizer
refuses anything without an ACL (``deploy/local/kafka.sh``); the operator's CLI runs as the
local broker's super user ``admin``.

Passwords are random, made once per principal, and kept in
``$PLANTSTREAM_HOME/secrets/kafka/<who>.password`` (mode 0600); the supervisor hands each
service copy its own file (:func:`service_env`).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from plantstream.errors import BrokerUnavailable, PlantstreamError
from plantstream.kafka import admin_client, check_broker, create_topics
from plantstream.settings import Settings
from plantstream.topics import CATALOG, GATEWAY, TENANT_FIELD, TENANT_GATEWAY_READINGS, TENANT_ID, services

SCRAM_ITERATIONS = 8192
GATEWAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class AuthSetupFailed(PlantstreamError):
    """The broker refused to create a principal or its ACLs; the message says which."""


@dataclass(frozen=True)
class Grant:
    """One ALLOW ACL of a principal, on one resource (or every resource with a prefix)."""

    resource: str  # "topic" | "group" | "transactional-id"
    name: str
    operation: str  # "read" | "write"
    prefixed: bool = False

    def binding(self, principal: str) -> AclBinding:
        kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
                 "transactional-id": ResourceType.TRANSACTIONAL_ID}
        return AclBinding(kinds[self.resource], self.name,
                          ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL,
                          f"User:{principal}", "*", AclOperation[self.operation.upper()],
                          AclPermissionType.ALLOW)


def principal(settings: Settings, who: str) -> str:
    """The SCRAM user name of a service, or of ``gateway.<tenant>.<name>``."""
    return settings.topic_prefix + who


def gateway_principal(tenant: str, name: str) -> str:
    """``who`` of gateway ``name`` of ``tenant`` (its principal, without the topic prefix)."""
    return f"{GATEWAY}.{tenant}.{name}"


def grants(settings: Settings, who: str, tenant: str | None = None) -> list[Grant]:
    """What ``who`` (a service, or ``gateway`` with the ``tenant`` it belongs to) may do, from
    the catalog. READ and WRITE imply DESCRIBE in Kafka's authorizer. Without a tenant a
    gateway's grants name the per-tenant topic's template (for showing, not for provisioning)."""
    out: list[Grant] = []
    for spec in CATALOG:
        if spec.per_tenant:  # written by one tenant's principals (or a service for each), read by pattern
            every_tenant = settings.topic_prefix + spec.name.split(TENANT_FIELD)[0]
            if who in spec.producers and who in services():  # the board, for each tenant's users
                out.append(Grant("topic", every_tenant, "write", prefixed=True))
            elif who in spec.producers:
                topic = (spec.for_tenant(settings, tenant) if tenant is not None
                         else settings.topic_prefix + spec.name)
                out.append(Grant("topic", topic, "write"))
            if who in spec.consumers:
                out.append(Grant("topic", every_tenant, "read", prefixed=True))
            continue
        if tenant is not None:  # a tenant's principal gets its tenant's topics only
            continue
        topic = spec.physical(settings)
        if who in spec.producers:
            out.append(Grant("topic", topic, "write"))
        if who in spec.consumers:
            out.append(Grant("topic", topic, "read"))
    if who in services():
        own = settings.topic_prefix + who
        out += [Grant("group", own, "read", prefixed=True),
                Grant("transactional-id", own, "write", prefixed=True)]
    if not out:
        raise PlantstreamError(f"{who!r} is neither a service nor {GATEWAY!r}; "
                               f"services: {', '.join(services())}")
    return out


def password_file(settings: Settings, who: str) -> Path:
    return settings.home / "secrets" / "kafka" / f"{who}.password"


def _password(settings: Settings, who: str) -> str:
    """The principal's password, made (random) the first time and kept with mode 0600."""
    path = password_file(settings, who)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    return password


def provision(admin_settings: Settings, who: str, grant_as: str | None = None,
              tenant: str | None = None) -> Settings:
    """Create (or refresh) ``who``'s SCRAM user and its ACLs with the operator's (admin)
    credentials; return settings that authenticate as ``who``. ``grant_as`` and ``tenant``
    name whose grants apply (``gateway`` of a tenant for a gateway). Idempotent."""
    user = principal(admin_settings, who)
    had_password = password_file(admin_settings, who).exists()
    password = _password(admin_settings, who)
    own = replace(admin_settings, kafka_username=user, kafka_password=password)
    admin = admin_client(admin_settings)
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS), password.encode())
    try:
        if not (had_password and _user_exists(admin, user)):
            for future in admin.alter_user_scram_credentials([upsert]).values():
                future.result()
            _wait_until_it_logs_in(own)
        bindings = [g.binding(user) for g in grants(admin_settings, grant_as or who, tenant)]
        for future in admin.create_acls(bindings, request_timeout=30).values():
            future.result()
    except KafkaException as exc:
        raise AuthSetupFailed(f"the broker refused to set up principal {user!r}: {exc.args[0].str()} "
                              "(provisioning needs the admin principal: PLANTSTREAM_KAFKA_USERNAME=admin)"
                              ) from None
    return own


def _user_exists(admin: AdminClient, user: str) -> bool:
    try:
        for future in admin.describe_user_scram_credentials([user]).values():
            future.result()
        return True
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.RESOURCE_NOT_FOUND:
            return False
        raise


def _wait_until_it_logs_in(own: Settings, timeout: float = 15.0) -> None:
    """A new SCRAM user reaches each broker with the metadata log, a moment after the controller
    accepts it; the service it is for must not start before it can log in."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check_broker(own, timeout=3)
            return
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def add_gateway(admin_settings: Settings, name: str, tenant: str) -> Settings:
    """Gateway ``name`` of ``tenant``: its own principal ``<prefix>gateway.<tenant>.<name>``,
    which may write its tenant's gateway batches only. Creates the tenant's gateway topic."""
    if not GATEWAY_NAME.match(name):
        raise PlantstreamError(f"gateway name {name!r}: use 1-64 of A-Z a-z 0-9 _ - "
                               "(starting with a letter or digit)")
    if not TENANT_ID.match(tenant):
        raise PlantstreamError(f"tenant id {tenant!r}: use 1-64 of A-Z a-z 0-9 _ - "
                               "(starting with a letter or digit)")
    create_topics(admin_settings, [TENANT_GATEWAY_READINGS], tenants=[tenant])
    return provision(admin_settings, gateway_principal(tenant, name), grant_as=GATEWAY, tenant=tenant)


def secured(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL")


def login_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make a child process log in to Kafka as ``settings`` does."""
    env = {"PLANTSTREAM_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
           "PLANTSTREAM_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
           "PLANTSTREAM_KAFKA_USERNAME": settings.kafka_username,
           "PLANTSTREAM_KAFKA_PASSWORD": settings.kafka_password}
    if settings.kafka_ssl_ca_file:
        env["PLANTSTREAM_KAFKA_SSL_CA_FILE"] = settings.kafka_ssl_ca_file
    return env


def service_env(admin_settings: Settings, service: str) -> dict[str, str]:
    """Environment for a service copy started by the supervisor: its own principal, with its
    password by file (nothing when Kafka security is off)."""
    if not secured(admin_settings):
        return {}
    own = provision(admin_settings, service)
    return {"PLANTSTREAM_KAFKA_USERNAME": own.kafka_username,
            "PLANTSTREAM_KAFKA_PASSWORD_FILE": str(password_file(admin_settings, service))}


# The operator's logins: the supervisor removes them from a service's environment.
ADMIN_ONLY = ("PLANTSTREAM_KAFKA_PASSWORD", "PLANTSTREAM_KAFKA_ADMIN_PASSWORD")
