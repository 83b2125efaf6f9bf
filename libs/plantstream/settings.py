"""Settings come only from environment variables (twelve-factor), each with a default that
runs the local pipeline on embedded ClickHouse and the project-local broker."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from plantstream.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; unset it or fix it") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; unset it or fix it") from None


def _str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else raw


METRICS_PORT_AUTO = -1


def _metrics_port() -> int:
    if os.environ.get("PLANTSTREAM_METRICS_PORT", "").strip().lower() == "auto":
        return METRICS_PORT_AUTO
    port = _int("PLANTSTREAM_METRICS_PORT", 0)
    if not 0 <= port <= 65535:
        raise ConfigError(f"PLANTSTREAM_METRICS_PORT={port} is not a port; use 0 (off), auto or 1-65535")
    return port


def _on_off(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("on", "1", "true", "yes"):
        return True
    if raw in ("off", "0", "false", "no"):
        return False
    raise ConfigError(f"{name}={raw!r} is neither on nor off; unset it or set on/off")


# name, default, meaning: the README's configuration table is generated from this list.
DOCUMENTED: list[tuple[str, str, str]] = [
    ("PLANTSTREAM_HOME", "./.local", "Folder for local state: broker data, embedded ClickHouse, logs, pid files."),
    ("PLANTSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:$PLANTSTREAM_KAFKA_PORT", "Kafka bootstrap servers (host:port,...)."),
    ("PLANTSTREAM_KAFKA_PORT", "9092", "Port of the project-local broker (`make up`)."),
    ("PLANTSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT", "How clients (and the local broker) secure Kafka: `SASL_PLAINTEXT` (SCRAM logins, ACLs enforced), `SASL_SSL` (the same over TLS, production), `PLAINTEXT` (no authentication: a throw-away broker only)."),
    ("PLANTSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", "SASL mechanism (`SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`)."),
    ("PLANTSTREAM_KAFKA_USERNAME", "admin", "Kafka principal of this process. The supervisor (`make up`) gives each service its own (`<prefix><service>`, see `plantstream kafka acls`); `admin` is the local broker's super user, for the operator's CLI."),
    ("PLANTSTREAM_KAFKA_PASSWORD_FILE", "$PLANTSTREAM_HOME/kafka/secrets/admin.password", "File holding the principal's password (mode 0600); `PLANTSTREAM_KAFKA_PASSWORD` gives it directly instead."),
    ("PLANTSTREAM_KAFKA_SSL_CA_FILE", "(unset)", "CA bundle that signs the brokers' TLS certificates (`SASL_SSL`); unset: the local broker's `$PLANTSTREAM_HOME/kafka/secrets/ca.pem` if it exists, else the system's CAs."),
    ("PLANTSTREAM_CLICKHOUSE_URL", "chdb://$PLANTSTREAM_HOME/clickhouse", "ClickHouse DSN: `chdb:///dir` (embedded) or `http://user:pass@host:8123/db` (server)."),
    ("PLANTSTREAM_TOPIC_PREFIX", "(empty)", "Prefix for every topic name, e.g. `acme.` to keep deployments apart on one cluster."),
    ("PLANTSTREAM_PARTITIONS", "4", "Partitions of the keyed pipeline topics (the most copies of a service that can share work)."),
    ("PLANTSTREAM_REPLICATION", "1", "Replication factor for created topics (3 on a production cluster)."),
    ("PLANTSTREAM_RETENTION_HOURS", "168", "Retention of the pipeline topics in hours."),
    ("PLANTSTREAM_MAX_BATCH_READINGS", "5000", "Most readings accepted in one gateway batch; larger batches are dead-lettered."),
    ("PLANTSTREAM_MAX_MESSAGE_BYTES", "1048576", "Largest gateway message accepted; larger ones are dead-lettered."),
    ("PLANTSTREAM_DEAD_LETTER_MAX_BYTES", "1000000", "Largest dead-letter Kafka record (key, value, headers); a longer original is cut to fit and flagged `truncated`. Keep it under the `readings.rejected` topic's `max.message.bytes` (broker default 1048588)."),
    ("PLANTSTREAM_CLICKHOUSE_TTL_DAYS", "730", "Retention of archived rows in ClickHouse, in days of sample/event time (applied at start-up by archival)."),
    ("PLANTSTREAM_ARCHIVAL_BATCH", "5000", "Most Kafka messages the archival service writes to ClickHouse in one batch."),
    ("PLANTSTREAM_ARCHIVAL_MAX_WAIT", "1.0", "Seconds the archival service waits to fill a batch before writing what it has."),
    ("PLANTSTREAM_QUERY_PORT", "8124", "Loopback port where the archival service answers read-only SQL in embedded mode (0: any free port)."),
    ("PLANTSTREAM_BOARD_ADDRESS", "127.0.0.1:8126", "host:port where the maintenance board (`plantstream board`) listens (port 0: any free port)."),
    ("PLANTSTREAM_BOARD_USERS", "$PLANTSTREAM_HOME/board-users.yaml", "The board's user file: name, tenant and salted scrypt hash per user (`plantstream board add-user`)."),
    ("PLANTSTREAM_ANALYST_TOKENS_FILE", "(unset)", "YAML file mapping analyst tokens to a tenant (`tokens: {TOKEN: acme, TOKEN2: \"*\"}`); set: every `plantstream sql` query needs a token and sees only its tenant's rows; unset: one-tenant setup, no tokens."),
    ("PLANTSTREAM_ANALYST_TOKEN", "(unset)", "The analyst's own token for `plantstream sql` / `plantstream report` (one of the tokens file)."),
    ("PLANTSTREAM_CLICKHOUSE_ANALYST_USER", "(unset)", "Server mode: the read-only ClickHouse user analyst queries run as (profile with readonly = 1); required, the writer's credentials are never used for them."),
    ("PLANTSTREAM_CLICKHOUSE_ANALYST_PASSWORD", "(empty)", "Password of `PLANTSTREAM_CLICKHOUSE_ANALYST_USER`."),
    ("PLANTSTREAM_DEDUP_WINDOW_S", "600", "Ingest drops a batch id seen again within this many seconds (dead letter duplicate_batch)."),
    ("PLANTSTREAM_FUTURE_TOLERANCE_S", "300", "Validation rejects readings stamped further than this ahead of ingest time (future_timestamp)."),
    ("PLANTSTREAM_STALE_AFTER_S", "604800", "Validation rejects readings older than this at ingest time (stale_timestamp)."),
    ("PLANTSTREAM_NOTIFY_CONFIG", "(unset)", "YAML file with alert notification routes, retries, SMTP server and escalation (see `plantstream.notify.config`); unset: alerts are not sent anywhere."),
    ("PLANTSTREAM_ALERT_TICK_SECONDS", "5", "How often the maintenance service checks timers: no data, auto-resolve."),
    ("PLANTSTREAM_NOTIFY_TICK_SECONDS", "1", "How often the notifier checks timers: grouping window, escalation, reminders, end of quiet hours."),
    ("PLANTSTREAM_ALERT_QUIET_SECONDS", "3600", "An alert whose condition is not seen for this long is auto-resolved; a recurrence within this long re-opens it."),
    ("PLANTSTREAM_ALERT_UPDATE_SECONDS", "60", "At most one plain update revision (more occurrences) per alert this often."),
    ("PLANTSTREAM_TREND_HORIZON_HOURS", "72", "Raise a trend alert when a critical limit is predicted within this many hours."),
    ("PLANTSTREAM_NO_DATA_SECONDS", "900", "Raise a no-data alert when a sensor that reported before is silent this long (0: off)."),
    ("PLANTSTREAM_CLOCK_SKEW_SECONDS", "300", "Raise a clock-skew alert when a gateway's clock (the batch's sent_at) and the platform clock at ingest differ by more than this (sample times when a producer sends no sent_at; 0: off)."),
    ("PLANTSTREAM_LOG_LEVEL", "INFO", "Log level."),
    ("PLANTSTREAM_LOG_FORMAT", "json", "`json` (one object a line) or `text`."),
    ("PLANTSTREAM_INSTANCE", "$HOSTNAME-$PID", "Name of this service copy in logs, metrics and transactional ids."),
    ("PLANTSTREAM_METRICS_PORT", "0", "Port of the Prometheus metrics endpoint (0: off; `auto`: a free port). Each copy writes its port to `$PLANTSTREAM_HOME/run/<instance>.metrics`; the supervisor gives copies of a numeric base port `base + 10 * service index + copy`."),
    ("PLANTSTREAM_TRACES", "on", "`off` disables tracing (no spans, no trace headers on Kafka records)."),
    ("PLANTSTREAM_ANOMALY_WARMUP", "400", "Rows (one timestamp of a machine) the anomaly detector learns from before it may alarm."),
    ("PLANTSTREAM_ANOMALY_LEARN", "normal", "Keep learning after warm-up: `never`, `normal` (rows judged normal) or `always`."),
    ("PLANTSTREAM_ANOMALY_UPDATE_SECONDS", "60", "While an anomaly lasts, re-emit its event every this many seconds of sample time."),
    ("PLANTSTREAM_GROUP_SESSION_SECONDS", "10", "Consumer-group session: a copy that dies (SIGKILL, lost host) keeps its partitions this long before the others take them over (Kafka's minimum: 6)."),
    ("PLANTSTREAM_LINGER_SECONDS", "0.1", "Ingest and validation wait this long after the first message of a batch for more before they process and commit it: fewer, fuller transactions for this much latency."),
    ("PLANTSTREAM_BATCH_WAIT_SECONDS", "0.5", "Anomaly and maintenance gather input for up to this long per transaction: each transaction writes the state of every machine its batch touched, so fewer, larger batches cost less."),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "(unset)", "Send traces and metrics over OTLP/HTTP here; unset: spans go to `$PLANTSTREAM_HOME/traces/*.jsonl`."),
]


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment, read once at start-up."""

    home: Path
    kafka_bootstrap: str
    clickhouse_url: str
    topic_prefix: str = ""
    partitions: int = 4
    replication: int = 1
    retention_hours: int = 168
    max_batch_readings: int = 5000
    max_message_bytes: int = 1_048_576
    dead_letter_max_bytes: int = 1_000_000
    clickhouse_ttl_days: int = 730
    archival_batch: int = 5000
    archival_max_wait: float = 1.0
    query_port: int = 8124
    analyst_tokens_file: str = ""
    analyst_token: str = ""
    clickhouse_analyst_user: str = ""
    clickhouse_analyst_password: str = ""
    board_address: str = "127.0.0.1:8126"
    board_users: Path | None = None  # None: $PLANTSTREAM_HOME/board-users.yaml
    dedup_window_s: float = 600.0
    future_tolerance_s: float = 300.0
    stale_after_s: float = 604_800.0
    notify_config: str = ""
    alert_tick_seconds: float = 5.0
    notify_tick_seconds: float = 1.0
    alert_quiet_seconds: float = 3600.0
    alert_update_seconds: float = 60.0
    trend_horizon_hours: float = 72.0
    no_data_seconds: float = 900.0
    clock_skew_seconds: float = 300.0
    log_level: str = "INFO"
    log_format: str = "json"
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    metrics_port: int = 0  # METRICS_PORT_AUTO (-1): any free port
    traces: bool = True
    otlp_endpoint: str | None = None
    anomaly_warmup: int = 400
    anomaly_learn: str = "normal"
    anomaly_update_seconds: float = 60.0
    batch_wait_seconds: float = 0.5
    linger_seconds: float = 0.1
    group_session_seconds: float = 10.0
    kafka_security_protocol: str = "SASL_PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: str = field(default="", repr=False)  # never in logs or reprs
    kafka_ssl_ca_file: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_str("PLANTSTREAM_HOME", str(Path.cwd() / ".local"))).resolve()
        port = _int("PLANTSTREAM_KAFKA_PORT", 9092)
        partitions = _int("PLANTSTREAM_PARTITIONS", 4)
        if partitions < 1:
            raise ConfigError("PLANTSTREAM_PARTITIONS must be at least 1")
        return cls(
            home=home,
            kafka_bootstrap=_str("PLANTSTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}"),
            clickhouse_url=_str("PLANTSTREAM_CLICKHOUSE_URL", f"chdb://{home / 'clickhouse'}"),
            topic_prefix=_str("PLANTSTREAM_TOPIC_PREFIX", ""),
            partitions=partitions,
            replication=_int("PLANTSTREAM_REPLICATION", 1),
            retention_hours=_int("PLANTSTREAM_RETENTION_HOURS", 168),
            max_batch_readings=_int("PLANTSTREAM_MAX_BATCH_READINGS", 5000),
            max_message_bytes=_int("PLANTSTREAM_MAX_MESSAGE_BYTES", 1_048_576),
            dead_letter_max_bytes=_int("PLANTSTREAM_DEAD_LETTER_MAX_BYTES", 1_000_000),
            clickhouse_ttl_days=_int("PLANTSTREAM_CLICKHOUSE_TTL_DAYS", 730),
            archival_batch=_int("PLANTSTREAM_ARCHIVAL_BATCH", 5000),
            archival_max_wait=_float("PLANTSTREAM_ARCHIVAL_MAX_WAIT", 1.0),
            query_port=_int("PLANTSTREAM_QUERY_PORT", 8124),
            analyst_tokens_file=_str("PLANTSTREAM_ANALYST_TOKENS_FILE", ""),
            analyst_token=_str("PLANTSTREAM_ANALYST_TOKEN", ""),
            clickhouse_analyst_user=_str("PLANTSTREAM_CLICKHOUSE_ANALYST_USER", ""),
            clickhouse_analyst_password=os.environ.get("PLANTSTREAM_CLICKHOUSE_ANALYST_PASSWORD", ""),
            board_address=_str("PLANTSTREAM_BOARD_ADDRESS", "127.0.0.1:8126"),
            board_users=Path(_str("PLANTSTREAM_BOARD_USERS", str(home / "board-users.yaml"))),
            dedup_window_s=_float("PLANTSTREAM_DEDUP_WINDOW_S", 600.0),
            future_tolerance_s=_float("PLANTSTREAM_FUTURE_TOLERANCE_S", 300.0),
            stale_after_s=_float("PLANTSTREAM_STALE_AFTER_S", 604_800.0),
            notify_config=_str("PLANTSTREAM_NOTIFY_CONFIG", ""),
            alert_tick_seconds=_float("PLANTSTREAM_ALERT_TICK_SECONDS", 5.0),
            notify_tick_seconds=_float("PLANTSTREAM_NOTIFY_TICK_SECONDS", 1.0),
            alert_quiet_seconds=_float("PLANTSTREAM_ALERT_QUIET_SECONDS", 3600.0),
            alert_update_seconds=_float("PLANTSTREAM_ALERT_UPDATE_SECONDS", 60.0),
            trend_horizon_hours=_float("PLANTSTREAM_TREND_HORIZON_HOURS", 72.0),
            no_data_seconds=_float("PLANTSTREAM_NO_DATA_SECONDS", 900.0),
            clock_skew_seconds=_float("PLANTSTREAM_CLOCK_SKEW_SECONDS", 300.0),
            log_level=_str("PLANTSTREAM_LOG_LEVEL", "INFO").upper(),
            log_format=_str("PLANTSTREAM_LOG_FORMAT", "json"),
            instance=_str("PLANTSTREAM_INSTANCE", f"{socket.gethostname()}-{os.getpid()}"),
            metrics_port=_metrics_port(),
            traces=_on_off("PLANTSTREAM_TRACES", True),
            otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            anomaly_warmup=_int("PLANTSTREAM_ANOMALY_WARMUP", 400),
            anomaly_learn=_str("PLANTSTREAM_ANOMALY_LEARN", "normal"),
            anomaly_update_seconds=_float("PLANTSTREAM_ANOMALY_UPDATE_SECONDS", 60.0),
            batch_wait_seconds=_float("PLANTSTREAM_BATCH_WAIT_SECONDS", 0.5),
            linger_seconds=_float("PLANTSTREAM_LINGER_SECONDS", 0.1),
            group_session_seconds=_float("PLANTSTREAM_GROUP_SESSION_SECONDS", 10.0),
            **_kafka_security(home),
        )


KAFKA_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL", "SSL", "PLAINTEXT")


def _kafka_security(home: Path) -> dict[str, str]:
    protocol = _str("PLANTSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT").upper()
    if protocol not in KAFKA_PROTOCOLS:
        raise ConfigError(f"PLANTSTREAM_KAFKA_SECURITY_PROTOCOL={protocol!r}; use one of {', '.join(KAFKA_PROTOCOLS)}")
    password = os.environ.get("PLANTSTREAM_KAFKA_PASSWORD", "")
    if not password and protocol.startswith("SASL"):
        path = Path(_str("PLANTSTREAM_KAFKA_PASSWORD_FILE", str(home / "kafka" / "secrets" / "admin.password")))
        try:
            password = path.read_text().strip()
        except FileNotFoundError:
            if "PLANTSTREAM_KAFKA_PASSWORD_FILE" in os.environ:
                raise ConfigError(f"PLANTSTREAM_KAFKA_PASSWORD_FILE={path} does not exist") from None
            # the local broker makes it at its first start; check_broker says what to do
        except OSError as exc:
            raise ConfigError(f"cannot read the Kafka password file {path}: {exc.strerror}") from None
    return {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": _str("PLANTSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").upper(),
        "kafka_username": _str("PLANTSTREAM_KAFKA_USERNAME", "admin"),
        "kafka_password": password,
        "kafka_ssl_ca_file": _str("PLANTSTREAM_KAFKA_SSL_CA_FILE", _local_ca(home, protocol)),
    }


def _local_ca(home: Path, protocol: str) -> str:
    """Over TLS, the local broker's own certificate (kafka.sh makes it for SASL_SSL) when there is
    one; otherwise the system's CAs."""
    local = home / "kafka" / "secrets" / "ca.pem"
    return str(local) if protocol.endswith("SSL") and local.exists() else ""


def markdown_table() -> str:
    """The README's configuration table, generated from DOCUMENTED
    (`python -m plantstream.settings` prints it)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | `{default}` | {meaning} |" for name, default, meaning in DOCUMENTED]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
