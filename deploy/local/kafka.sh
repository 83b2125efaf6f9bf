#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, loopback only), no Docker.
#
# The broker jars come from Maven Central through deploy/local/pom.xml and are copied
# into <repo>/.local/kafka/libs; `java` runs kafka.Kafka from them.
#
# Usage: deploy/local/kafka.sh COMMAND [ARGS...]   (see `kafka.sh help`)
#
# Environment:
#   PLANTSTREAM_KAFKA_PORT             broker port (default 9092), listeners on 127.0.0.1 only
#   PLANTSTREAM_KAFKA_CONTROLLER_PORT  KRaft controller port (default broker port + 1000)
#   PLANTSTREAM_KAFKA_HOME             config, data, logs, pid (default <repo>/.local/kafka)
#   PLANTSTREAM_KAFKA_LIBS             broker jars, shared by all homes (default <repo>/.local/kafka/libs)
#   PLANTSTREAM_KAFKA_HEAP             broker JVM heap (default 512m)
#   PLANTSTREAM_KAFKA_TOOLS_HEAP       heap of topics/perf tools (default 512m)
#   PLANTSTREAM_KAFKA_JVM_OPTS         extra JVM options for the broker
#   PLANTSTREAM_KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 60)
#   PLANTSTREAM_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
# A node of a local multi-broker cluster (each node its own home and ports; combined
# broker+controller; every node formatted with the same cluster id):
#   PLANTSTREAM_KAFKA_NODE_ID          this node's id (default 1)
#   PLANTSTREAM_KAFKA_VOTERS           controller.quorum.voters (default: this node alone)
#   PLANTSTREAM_KAFKA_CLUSTER_ID       cluster id to format a new data directory with (default random)
#   PLANTSTREAM_KAFKA_REPLICAS         replication of new and internal topics (default 1);
#                                      min.insync.replicas is 2 from 3 replicas on, else 1
# Security (on by default):
#   PLANTSTREAM_KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT (default): clients authenticate with
#                                      SASL/SCRAM-SHA-512 and the StandardAuthorizer enforces ACLs
#                                      (nothing is allowed without one; User:admin is the only
#                                      super user); SASL_SSL: the same over TLS (a self-signed
#                                      certificate for 127.0.0.1/localhost is made once into
#                                      $PLANTSTREAM_KAFKA_HOME/secrets/broker.p12; clients trust
#                                      secrets/ca.pem, PLANTSTREAM_KAFKA_SSL_CA_FILE); PLAINTEXT:
#                                      no authentication, no ACLs (a throw-away broker only).
#                                      Clients read the same variable.
#   PLANTSTREAM_KAFKA_ADMIN_PASSWORD   the admin principal's password (default: generated once
#                                      into $PLANTSTREAM_KAFKA_HOME/secrets/admin.password, mode 0600)
# The tools below (topics, groups, perf-*) authenticate as admin through
# $PLANTSTREAM_KAFKA_HOME/secrets/admin-client.properties. The controller listener uses
# SASL/PLAIN with the same admin password (KRaft controllers cannot use SCRAM).
# Extra broker settings: lines in $PLANTSTREAM_KAFKA_HOME/server.extra.properties are
# appended to the generated server.properties (later keys win).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

PORT="${PLANTSTREAM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${PLANTSTREAM_KAFKA_CONTROLLER_PORT:-$((PORT + 1000))}"
# The port clients are told to connect to (a proxy in front of the broker, e.g. Toxiproxy in
# the network fault test); default: the broker's own.
ADVERTISED_PORT="${PLANTSTREAM_KAFKA_ADVERTISED_PORT:-$PORT}"
KAFKA_HOME_DIR="${PLANTSTREAM_KAFKA_HOME:-$REPO_ROOT/.local/kafka}"
LIBS_DIR="${PLANTSTREAM_KAFKA_LIBS:-$REPO_ROOT/.local/kafka/libs}"
HEAP="${PLANTSTREAM_KAFKA_HEAP:-512m}"
TOOLS_HEAP="${PLANTSTREAM_KAFKA_TOOLS_HEAP:-512m}"
START_TIMEOUT="${PLANTSTREAM_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${PLANTSTREAM_KAFKA_STOP_TIMEOUT:-30}"
NODE_ID="${PLANTSTREAM_KAFKA_NODE_ID:-1}"
VOTERS="${PLANTSTREAM_KAFKA_VOTERS:-$NODE_ID@127.0.0.1:$CONTROLLER_PORT}"
CLUSTER_ID="${PLANTSTREAM_KAFKA_CLUSTER_ID:-}"
REPLICAS="${PLANTSTREAM_KAFKA_REPLICAS:-1}"
SECURITY="${PLANTSTREAM_KAFKA_SECURITY_PROTOCOL:-SASL_PLAINTEXT}"

# Relative paths from the environment are taken relative to the caller's cwd.
case "$KAFKA_HOME_DIR" in /*) ;; *) KAFKA_HOME_DIR="$PWD/$KAFKA_HOME_DIR" ;; esac
case "$LIBS_DIR" in /*) ;; *) LIBS_DIR="$PWD/$LIBS_DIR" ;; esac

DATA_DIR="$KAFKA_HOME_DIR/data"
LOG_DIR="$KAFKA_HOME_DIR/logs"
LOG_FILE="$LOG_DIR/server.log"
PID_FILE="$KAFKA_HOME_DIR/kafka.pid"
RUN_FILE="$KAFKA_HOME_DIR/run.env"          # port/version of the running broker
SERVER_PROPS="$KAFKA_HOME_DIR/server.properties"
EXTRA_PROPS="$KAFKA_HOME_DIR/server.extra.properties"
BROKER_LOG4J="$KAFKA_HOME_DIR/log4j2.properties"
TOOLS_LOG4J="$KAFKA_HOME_DIR/tools-log4j2.properties"
STAMP_FILE="$LIBS_DIR/.plantstream-install-stamp"
SECRETS_DIR="$KAFKA_HOME_DIR/secrets"
ADMIN_PASSWORD_FILE="$SECRETS_DIR/admin.password"
ADMIN_CLIENT_PROPS="$SECRETS_DIR/admin-client.properties"
KEYSTORE="$SECRETS_DIR/broker.p12"                 # SASL_SSL: the broker's key and certificate
KEYSTORE_PASSWORD_FILE="$SECRETS_DIR/keystore.password"
CA_FILE="$SECRETS_DIR/ca.pem"                      # SASL_SSL: what clients trust (public)
SECURED_MARK="$DATA_DIR/.plantstream-sasl"   # storage formatted with the admin SCRAM user

say() { printf 'kafka: %s\n' "$*"; }
err() { printf 'kafka: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

usage() {
  cat <<EOF
usage: kafka.sh install                 fetch broker jars from Maven Central (cached)
       kafka.sh start                   start the broker; returns when it answers
       kafka.sh stop                    stop the broker (SIGTERM, then SIGKILL)
       kafka.sh restart                 stop, then start
       kafka.sh status                  one line; exit 0 running, 3 not running
       kafka.sh logs [-f] [-n N]        show (or follow) $LOG_FILE
       kafka.sh version                 print the Kafka version of the installed jars
       kafka.sh topics ARGS...          org.apache.kafka.tools.TopicCommand ARGS
       kafka.sh perf-producer ARGS...   org.apache.kafka.tools.ProducerPerformance ARGS
       kafka.sh perf-consumer ARGS...   org.apache.kafka.tools.ConsumerPerformance ARGS
       kafka.sh groups ARGS...          org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ARGS
       kafka.sh run-class CLASS ARGS... any main class from the broker jars (add
                                        --command-config $ADMIN_CLIENT_PROPS to authenticate)
env:   PLANTSTREAM_KAFKA_PORT=$PORT PLANTSTREAM_KAFKA_CONTROLLER_PORT=$CONTROLLER_PORT
       PLANTSTREAM_KAFKA_HOME=$KAFKA_HOME_DIR
       PLANTSTREAM_KAFKA_LIBS=$LIBS_DIR PLANTSTREAM_KAFKA_HEAP=$HEAP
EOF
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

check_env() {
  is_uint "$PORT" && ((PORT > 0 && PORT < 65536)) \
    || die "PLANTSTREAM_KAFKA_PORT must be a port number, got '$PORT'"
  is_uint "$CONTROLLER_PORT" && ((CONTROLLER_PORT > 0 && CONTROLLER_PORT < 65536)) \
    || die "controller port $CONTROLLER_PORT is invalid; set PLANTSTREAM_KAFKA_CONTROLLER_PORT"
  ((PORT != CONTROLLER_PORT)) || die "broker and controller port are both $PORT; set PLANTSTREAM_KAFKA_CONTROLLER_PORT"
  is_uint "$START_TIMEOUT" || die "PLANTSTREAM_KAFKA_START_TIMEOUT must be whole seconds"
  is_uint "$NODE_ID" || die "PLANTSTREAM_KAFKA_NODE_ID must be a whole number, got '$NODE_ID'"
  is_uint "$REPLICAS" && ((REPLICAS >= 1)) || die "PLANTSTREAM_KAFKA_REPLICAS must be 1 or more, got '$REPLICAS'"
  is_uint "$STOP_TIMEOUT" || die "PLANTSTREAM_KAFKA_STOP_TIMEOUT must be whole seconds"
  case "$SECURITY" in
    SASL_PLAINTEXT|SASL_SSL|PLAINTEXT) ;;
    *) die "PLANTSTREAM_KAFKA_SECURITY_PROTOCOL=$SECURITY: the local broker runs SASL_PLAINTEXT (default), SASL_SSL (TLS) or PLAINTEXT" ;;
  esac
}

secured() { [[ "$SECURITY" == SASL_* ]]; }
tls() { [[ "$SECURITY" == SASL_SSL ]]; }

# SASL_SSL: a self-signed certificate for 127.0.0.1 and localhost, made once; clients trust it
# as their CA (ca.pem). Production brokers use certificates from the site's own CA instead.
write_tls() {
  tls || return 0
  [[ -f "$KEYSTORE" && -f "$CA_FILE" && -f "$KEYSTORE_PASSWORD_FILE" ]] && return 0
  command -v keytool >/dev/null 2>&1 || die "keytool not found (it comes with the JDK); SASL_SSL needs it to make the broker's certificate"
  mkdir -p "$SECRETS_DIR"
  chmod 700 "$SECRETS_DIR"
  rm -f "$KEYSTORE" "$CA_FILE"
  local pw
  pw="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  ( umask 077
    printf '%s' "$pw" >"$KEYSTORE_PASSWORD_FILE"
    keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=localhost" \
      -ext "SAN=ip:127.0.0.1,dns:localhost" -keystore "$KEYSTORE" -storetype PKCS12 \
      -storepass "$pw" -keypass "$pw" >/dev/null 2>&1 || die "keytool could not make $KEYSTORE"
  )
  keytool -exportcert -rfc -alias broker -keystore "$KEYSTORE" -storepass "$pw" -file "$CA_FILE" \
    >/dev/null 2>&1 || die "keytool could not export $CA_FILE"
  chmod 644 "$CA_FILE"
}

# The admin password: from PLANTSTREAM_KAFKA_ADMIN_PASSWORD, else the one generated before.
admin_password() {
  if [[ -n "${PLANTSTREAM_KAFKA_ADMIN_PASSWORD:-}" ]]; then
    printf '%s' "$PLANTSTREAM_KAFKA_ADMIN_PASSWORD"
  elif [[ -f "$ADMIN_PASSWORD_FILE" ]]; then
    cat "$ADMIN_PASSWORD_FILE"
  else
    return 1
  fi
}

write_secrets() {
  secured || return 0
  local pw
  mkdir -p "$SECRETS_DIR"
  chmod 700 "$SECRETS_DIR"
  pw="$(admin_password)" || pw="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  [[ "$pw" =~ ^[A-Za-z0-9._~+-]{8,}$ ]] \
    || die "PLANTSTREAM_KAFKA_ADMIN_PASSWORD must be 8 or more of the characters A-Z a-z 0-9 . _ ~ + -"
  ( umask 077
    printf '%s' "$pw" >"$ADMIN_PASSWORD_FILE"
    printf '%s\n' "security.protocol=$SECURITY" "sasl.mechanism=SCRAM-SHA-512" \
      "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$pw\";" \
      >"$ADMIN_CLIENT_PROPS"
    if tls; then
      printf '%s\n' "ssl.truststore.type=PEM" "ssl.truststore.location=$CA_FILE" >>"$ADMIN_CLIENT_PROPS"
    fi
  )
}

# Arguments that make a tool authenticate as admin (none on an open broker). Also for a broker
# this home did not start, given PLANTSTREAM_KAFKA_ADMIN_PASSWORD.
tool_auth() {  # FLAG
  if secured && admin_password >/dev/null; then
    write_secrets
    printf '%s\n' "$1" "$ADMIN_CLIENT_PROPS"
  fi
}

need_java() {
  command -v java >/dev/null 2>&1 || die "java not found on PATH; install a JDK 17+ (e.g. apt-get install openjdk-17-jre-headless)"
}

# ---------------------------------------------------------------- install

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

installed_version() {
  local jar
  for jar in "$LIBS_DIR"/kafka_2.13-*.jar; do
    [[ -f "$jar" ]] || return 1
    jar="${jar##*/kafka_2.13-}"
    printf '%s\n' "${jar%.jar}"
    return 0
  done
  return 1
}

is_installed() {
  [[ -f "$STAMP_FILE" ]] && [[ "$(cat "$STAMP_FILE")" == "$(pom_hash)" ]] && installed_version >/dev/null
}

do_install() {  # $1 = "quiet" to print nothing when already installed
  if is_installed; then
    [[ "${1:-}" == quiet ]] || say "already installed (Kafka $(installed_version), $LIBS_DIR)"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH; install Maven 3.8+ (apt-get install maven)"
  need_java
  local parent lock tmp rc started
  parent="$(dirname "$LIBS_DIR")"
  mkdir -p "$parent"
  lock="$LIBS_DIR.lock"
  exec 8>"$lock"
  flock 8  # one installer at a time per libs folder
  if is_installed; then  # another process finished it while we waited
    exec 8>&-
    [[ "${1:-}" == quiet ]] || say "already installed (Kafka $(installed_version), $LIBS_DIR)"
    return 0
  fi
  say "installing Kafka jars from Maven Central into $LIBS_DIR"
  started=$SECONDS
  tmp="$LIBS_DIR.tmp.$$"
  rm -rf "$tmp"
  rc=0
  mvn -q -B -Dstyle.color=never -f "$POM" package -Dkafka.libs.dir="$tmp" \
    >"$parent/install.log" 2>&1 || rc=$?
  if ((rc != 0)) || ! ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1; then
    rm -rf "$tmp"
    exec 8>&-
    err "install failed (mvn exit $rc); see $parent/install.log; last lines:"
    tail -n 15 "$parent/install.log" >&2 || true
    exit 1
  fi
  pom_hash >"$tmp/.plantstream-install-stamp"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  exec 8>&-
  say "installed Kafka $(installed_version) ($(ls "$LIBS_DIR"/*.jar | wc -l) jars) in $((SECONDS - started))s"
}

ensure_installed() {
  is_installed || do_install
}

# ---------------------------------------------------------------- process helpers

# Our broker's command line always ends with "kafka.Kafka <home>/server.properties".
is_our_broker() {
  local pid="$1" cmd
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *" kafka.Kafka $SERVER_PROPS"* ]]
}

# Prints the pid of this home's broker, if one runs.
broker_pid() {
  local pid=""
  if [[ -f "$PID_FILE" ]]; then
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    if [[ -n "$pid" ]] && is_our_broker "$pid"; then
      printf '%s\n' "$pid"
      return 0
    fi
  fi
  # pid file lost or stale: look for a java process started with this home's config
  local p
  for p in $(pgrep -x java 2>/dev/null || true); do
    if is_our_broker "$p"; then
      printf '%s\n' "$p"
      return 0
    fi
  done
  return 1
}

# Port of the running broker (as started), else the configured one.
running_port() {
  local p=""
  [[ -f "$RUN_FILE" ]] && p="$(sed -n 's/^PORT=//p' "$RUN_FILE")"
  printf '%s\n' "${p:-$PORT}"
}
running_version() {
  local v=""
  [[ -f "$RUN_FILE" ]] && v="$(sed -n 's/^VERSION=//p' "$RUN_FILE")"
  [[ -n "$v" ]] || v="$(installed_version 2>/dev/null || echo unknown)"
  printf '%s\n' "$v"
}

port_open() {  # something accepts TCP connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_owner() {  # best effort "pid N (name)" of the listener on $1
  local line
  line="$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1)" || true
  if [[ "$line" =~ \"([^\"]+)\",pid=([0-9]+) ]]; then
    printf 'pid %s (%s)' "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}"
  fi
}

# Real Kafka request: Metadata v4 (all topics). Succeeds when the broker answers and
# lists at least one live broker, i.e. it has registered with the controller.
metadata_ok() {
  local port="$1" bytes b count
  bytes="$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    # size=20 | api_key=3 (Metadata) | version=4 | correlation_id=7 | client_id="probe"
    # | topics=null (-1 = all) | allow_auto_topic_creation=false
    printf '\x00\x00\x00\x14\x00\x03\x00\x04\x00\x00\x00\x07\x00\x05probe\xff\xff\xff\xff\x00' >&3
    # response: size(4) correlation_id(4) throttle_time_ms(4) brokers_count(4) ...
    timeout 3 head -c 16 <&3 | od -An -v -tu1
  )" 2>/dev/null || return 1
  read -r -a b <<<"$bytes"
  ((${#b[@]} == 16)) || return 1
  # correlation id must echo 7; broker count (big-endian int32) must be >= 1
  ((b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 7)) || return 1
  count=$(((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]))
  ((count >= 1 && count < 100000))
}

# Real Kafka request: ApiVersions v0, which a SASL listener answers before authentication
# (over TLS through openssl, verified against the broker's CA file).
api_versions_ok() {
  local port="$1" bytes b
  # size=15 | api_key=18 (ApiVersions) | version=0 | correlation_id=7 | client_id="probe"
  local request='\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x07\x00\x05probe'
  if tls; then
    bytes="$( { printf "$request"; sleep 1; } | timeout 5 openssl s_client -quiet -no_ign_eof -verify_return_error \
      -CAfile "$CA_FILE" -connect "127.0.0.1:$port" 2>/dev/null | head -c 10 | od -An -v -tu1 )" || return 1
  else
    bytes="$(
      exec 2>/dev/null
      exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
      printf "$request" >&3
      # response: size(4) correlation_id(4) error_code(2) ...
      timeout 3 head -c 10 <&3 | od -An -v -tu1
    )" 2>/dev/null || return 1
  fi
  read -r -a b <<<"$bytes"
  ((${#b[@]} == 10)) || return 1
  ((b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 7 && b[8] == 0 && b[9] == 0))
}

# The broker answers: an open one lists a live broker (it registered with the controller); a
# secured one answers ApiVersions and has logged, since line $2 of its log, that it started
# (after it was unfenced by the controller).
broker_ready() {  # PORT [LOG_LINE_BEFORE_START]
  if ! secured; then
    metadata_ok "$1"
    return
  fi
  api_versions_ok "$1" || return 1
  [[ -z "${2:-}" ]] && return 0
  tail -n "+$(($2 + 1))" "$LOG_FILE" 2>/dev/null | grep -q "Kafka Server started"
}

tail_log() {
  [[ -f "$LOG_FILE" ]] || return 0
  err "last lines of $LOG_FILE:"
  tail -n "${1:-20}" "$LOG_FILE" | sed 's/^/  /' >&2
}

# ---------------------------------------------------------------- config

# The client listener is named PLAINTEXT in both modes; its protocol is what the mode says.
security_props() {
  if ! secured; then
    echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    return 0
  fi
  local pw
  pw="$(cat "$ADMIN_PASSWORD_FILE")"
  cat <<EOF
# Security: SASL/SCRAM for clients and brokers, SASL/PLAIN between controllers, ACLs enforced.
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,PLAINTEXT:$SECURITY
listener.name.plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$pw";
$(tls_props)
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$pw" user_admin="$pw";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
EOF
}

# SASL_SSL: the client (and inter-broker) listener's key and what the broker trusts.
tls_props() {
  tls || return 0
  local pw
  pw="$(cat "$KEYSTORE_PASSWORD_FILE")"
  printf '%s\n' "listener.name.plaintext.ssl.keystore.type=PKCS12" \
    "listener.name.plaintext.ssl.keystore.location=$KEYSTORE" \
    "listener.name.plaintext.ssl.keystore.password=$pw" "listener.name.plaintext.ssl.key.password=$pw" \
    "listener.name.plaintext.ssl.truststore.type=PEM" "listener.name.plaintext.ssl.truststore.location=$CA_FILE"
}

write_configs() {
  mkdir -p "$DATA_DIR/logs" "$LOG_DIR"
  local MIN_ISR=1
  if ((REPLICAS >= 3)); then MIN_ISR=2; fi
  cat >"$SERVER_PROPS" <<EOF
# Generated by deploy/local/kafka.sh on each start; put overrides in $EXTRA_PROPS
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$VOTERS
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$ADVERTISED_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR/logs
$(security_props)

# Topics are created explicitly from the catalog; a typo must not create a topic.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$REPLICAS
min.insync.replicas=$MIN_ISR
delete.topic.enable=true
message.max.bytes=2097152
replica.fetch.max.bytes=2097152

# Internal topics: few partitions, replicated as PLANTSTREAM_KAFKA_REPLICAS says (1: one node).
offsets.topic.replication.factor=$REPLICAS
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$REPLICAS
transaction.state.log.min.isr=$MIN_ISR
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=$REPLICAS
share.coordinator.state.topic.min.isr=$MIN_ISR
group.initial.rebalance.delay.ms=0
# After a crash (SIGKILL) the restarted broker waits for its old session to expire;
# a short session keeps that wait to a few seconds (defaults: 2000 / 9000 ms).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000

num.network.threads=2
num.io.threads=4
log.retention.hours=168
log.segment.bytes=268435456
EOF
  if [[ -f "$EXTRA_PROPS" ]]; then
    { echo; echo "# from $EXTRA_PROPS"; cat "$EXTRA_PROPS"; } >>"$SERVER_PROPS"
  fi
  cat >"$BROKER_LOG4J" <<'EOF'
# Broker logging: everything to stdout, which kafka.sh redirects to logs/server.log.
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
EOF
}

write_tools_log4j() {
  mkdir -p "$KAFKA_HOME_DIR"
  [[ -f "$TOOLS_LOG4J" ]] && return 0
  cat >"$TOOLS_LOG4J" <<'EOF'
# Command-line tools: warnings and errors only, on stderr (stdout stays machine-readable).
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
}

format_storage_if_needed() {
  if [[ -f "$DATA_DIR/logs/meta.properties" ]]; then
    if secured && [[ ! -f "$SECURED_MARK" ]]; then
      die "$DATA_DIR was formatted without security (it has no admin SCRAM user): remove it (make clean) or set PLANTSTREAM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"
    fi
    return 0
  fi
  local cid="$CLUSTER_ID" out scram=()
  if secured; then
    scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$ADMIN_PASSWORD_FILE")]")
  fi
  if [[ -z "$cid" ]]; then
    cid="$(java -cp "$LIBS_DIR/*" -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
      kafka.tools.StorageTool random-uuid 2>>"$LOG_FILE" | tail -n 1)" \
      || die "could not generate a cluster id (kafka.tools.StorageTool random-uuid); see $LOG_FILE"
  fi
  [[ "$cid" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "unexpected cluster id '$cid' from kafka.tools.StorageTool"
  if ! out="$(java -cp "$LIBS_DIR/*" -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    kafka.tools.StorageTool format -t "$cid" -c "$SERVER_PROPS" "${scram[@]}" 2>&1)"; then
    printf '%s\n' "$out" >>"$LOG_FILE"
    err "formatting KRaft storage in $DATA_DIR failed"
    tail_log 10
    exit 1
  fi
  printf '%s\n' "$cid" >"$KAFKA_HOME_DIR/cluster.id"
  if secured; then touch "$SECURED_MARK"; fi
  printf '[%s] kafka.sh: formatted %s with cluster id %s\n' "$(date '+%F %T')" "$DATA_DIR/logs" "$cid" >>"$LOG_FILE"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  check_env
  need_java
  local pid
  if pid="$(broker_pid)"; then
    say "already running (pid $pid, port $(running_port))"
    return 0
  fi
  ensure_installed
  mkdir -p "$KAFKA_HOME_DIR" "$LOG_DIR"
  exec 9>"$KAFKA_HOME_DIR/.start.lock"
  if ! flock -n 9; then
    die "another 'kafka.sh start' is running for $KAFKA_HOME_DIR"
  fi
  if pid="$(broker_pid)"; then
    say "already running (pid $pid, port $(running_port))"
    return 0
  fi
  rm -f "$PID_FILE" "$RUN_FILE"

  local owner
  if port_open "$PORT"; then
    owner="$(port_owner "$PORT")"
    die "port $PORT is already in use${owner:+ by $owner}; choose another with PLANTSTREAM_KAFKA_PORT=<port>"
  fi
  if port_open "$CONTROLLER_PORT"; then
    owner="$(port_owner "$CONTROLLER_PORT")"
    die "controller port $CONTROLLER_PORT is already in use${owner:+ by $owner}; choose another with PLANTSTREAM_KAFKA_CONTROLLER_PORT=<port>"
  fi

  write_secrets
  write_tls
  write_configs
  write_tools_log4j
  format_storage_if_needed

  local version started
  version="$(installed_version)"
  started=$SECONDS
  local log_before
  log_before="$(wc -l <"$LOG_FILE" 2>/dev/null || echo 0)"
  printf '[%s] kafka.sh: starting Kafka %s on 127.0.0.1:%s (controller %s)\n' \
    "$(date '+%F %T')" "$version" "$PORT" "$CONTROLLER_PORT" >>"$LOG_FILE"
  # shellcheck disable=SC2086
  nohup setsid java \
    -Xms"$HEAP" -Xmx"$HEAP" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$BROKER_LOG4J" \
    -Dkafka.logs.dir="$LOG_DIR" \
    ${PLANTSTREAM_KAFKA_JVM_OPTS:-} \
    -cp "$LIBS_DIR/*" kafka.Kafka "$SERVER_PROPS" \
    >>"$LOG_FILE" 2>&1 </dev/null 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  printf 'PORT=%s\nCONTROLLER_PORT=%s\nVERSION=%s\n' "$PORT" "$CONTROLLER_PORT" "$version" >"$RUN_FILE"

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0
      wait "$pid" 2>/dev/null || rc=$?
      rm -f "$PID_FILE" "$RUN_FILE"
      err "broker exited during startup (exit code $rc)"
      tail_log 25
      exit 1
    fi
    if port_open "$PORT" && broker_ready "$PORT" "$log_before"; then
      break
    fi
    if ((SECONDS >= deadline)); then
      err "broker (pid $pid) did not answer on 127.0.0.1:$PORT within ${START_TIMEOUT}s; it is still running, stop it with: $0 stop"
      tail_log 25
      exit 1
    fi
    sleep 0.3
  done
  say "started Kafka $version (pid $pid, port $PORT, controller $CONTROLLER_PORT) in $((SECONDS - started))s; log $LOG_FILE"
}

cmd_stop() {
  local pid port
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE" "$RUN_FILE"
    say "not running"
    return 0
  fi
  port="$(running_port)"
  local started=$SECONDS
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT)) how="stopped"
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      how="killed (no exit within ${STOP_TIMEOUT}s of SIGTERM)"
      local i
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      break
    fi
    sleep 0.2
  done
  # the listener goes away with the process; make sure the port is really free
  local i
  for i in $(seq 1 50); do port_open "$port" || break; sleep 0.1; done
  rm -f "$PID_FILE" "$RUN_FILE"
  if port_open "$port"; then
    say "$how (pid $pid), but port $port still answers (another process?)"
    return 1
  fi
  say "$how (pid $pid, port $port) in $((SECONDS - started))s"
}

cmd_status() {
  local pid port
  if pid="$(broker_pid)"; then
    port="$(running_port)"
    if broker_ready "$port"; then
      say "running (pid $pid, port $port, version $(running_version), home $KAFKA_HOME_DIR)"
    else
      say "running but not answering yet (pid $pid, port $port, version $(running_version), home $KAFKA_HOME_DIR)"
    fi
    return 0
  fi
  say "not running (port $PORT, home $KAFKA_HOME_DIR)"
  return 3
}

cmd_logs() {
  local follow=0 n=100
  while (($#)); do
    case "$1" in
      -f|--follow) follow=1 ;;
      -n) shift; n="${1:-100}" ;;
      -n*) n="${1#-n}" ;;
      *) die "logs: unknown option '$1' (use -f, -n N)" ;;
    esac
    shift
  done
  is_uint "$n" || die "logs: -n needs a number"
  if ((follow)); then
    mkdir -p "$LOG_DIR"
    touch "$LOG_FILE"
    exec tail -n "$n" -F "$LOG_FILE"
  fi
  [[ -f "$LOG_FILE" ]] || die "no log yet at $LOG_FILE"
  tail -n "$n" "$LOG_FILE"
}

cmd_version() {
  local v
  v="$(installed_version)" || die "not installed; run: $0 install"
  printf '%s\n' "$v"
}

run_tool() {  # CLASS ARGS...
  need_java
  ensure_installed >&2  # keep the tool's stdout clean for parsers
  write_tools_log4j
  local cls="$1"
  shift
  exec java -Xmx"$TOOLS_HEAP" -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    -cp "$LIBS_DIR/*" "$cls" "$@"
}

main() {
  local cmd="${1:-help}"
  (($#)) && shift
  case "$cmd" in
    install) do_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    logs|log) cmd_logs "$@" ;;
    version|--version) cmd_version ;;
    topics) run_tool org.apache.kafka.tools.TopicCommand "$@" $(tool_auth --command-config) ;;
    perf-producer) run_tool org.apache.kafka.tools.ProducerPerformance "$@" $(tool_auth --command-config) ;;
    perf-consumer) run_tool org.apache.kafka.tools.ConsumerPerformance "$@" $(tool_auth --command-config) ;;
    groups) run_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@" $(tool_auth --command-config) ;;
    run-class)
      (($#)) || die "run-class needs a main class name"
      run_tool "$@" ;;
    help|-h|--help) usage ;;
    *) err "unknown command '$cmd'"; usage >&2; exit 2 ;;
  esac
}

main "$@"
