#!/usr/bin/env bash
# Development/test Apache Kafka broker from Maven Central jars: KRaft, one node, loopback only.
#
#   scripts/kafka.sh start    fetch jars once, format, start, wait until it answers; idempotent
#   scripts/kafka.sh stop     controlled shutdown (SIGTERM, SIGKILL after 30 s), drop its data
#   scripts/kafka.sh status   exit 0 if running and answering, 1 if running but not answering,
#                             3 if not running
#
# After `start`:  .cache/kafka/bootstrap   127.0.0.1:PORT (the port is picked free at start)
#                 .cache/kafka/broker.pid  the broker JVM's pid
#                 .cache/kafka/logs/broker.out  the broker's log
# Tests read the address from CERTIFY_KAFKA_BOOTSTRAP (the Makefile sets it from the file).
#
# Needs: java >= 17, mvn (first start only, to fill .cache/kafka-libs), python3 (port picking and
# readiness; .venv/bin/python is preferred when present so the probe uses aiokafka).
# Knobs (environment): KAFKA_READY_TIMEOUT (s, default 90), KAFKA_STOP_TIMEOUT (s, default 30),
# KAFKA_HEAP_OPTS (default "-Xms256m -Xmx512m"). See docs/kafka.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
LIBS="$CACHE/kafka-libs"
WORK="$CACHE/kafka"
POM="$ROOT/kafka/pom.xml"
PIDFILE="$WORK/broker.pid"
BOOTFILE="$WORK/bootstrap"
LOG="$WORK/logs/broker.out"
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

say() { echo "kafka.sh: $*"; }
die() { echo "kafka.sh: error: $*" >&2; exit 1; }

python_bin() {
  if [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then command -v python3
  else die "need python3 (or .venv/bin/python) for port picking and the readiness probe"
  fi
}

# The pid in broker.pid, if that process is alive and is the broker of THIS checkout.
running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "kafka.Kafka $WORK/server.properties" || return 1
  echo "$pid"
}

answering() {  # answering TIMEOUT
  [ -f "$BOOTFILE" ] || return 1
  "$(python_bin)" "$ROOT/kafka/ready.py" "$(cat "$BOOTFILE")" --timeout "$1" --quiet
}

fetch_jars() {
  local stamp want
  want="$(sha256sum "$POM" | cut -d' ' -f1)"
  stamp="$LIBS/.complete"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: needed once to fetch the Kafka jars into $LIBS"
  say "fetching Kafka jars from Maven Central into $LIBS (once) ..."
  local t0=$SECONDS tmp="$LIBS.partial.$$"
  rm -rf "$tmp"
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$CACHE/kafka-mvn.log" 2>&1; then
    tail -n 40 "$CACHE/kafka-mvn.log" >&2
    rm -rf "$tmp"
    die "mvn could not fetch the Kafka jars (full log: $CACHE/kafka-mvn.log)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "mvn ran but no kafka_2.13 jar arrived"; }
  echo "$want" > "$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  say "jars fetched in $((SECONDS - t0))s ($(ls "$LIBS" | wc -l) jars)"
}

check_java() {
  command -v java >/dev/null 2>&1 || die "java not found (Kafka 4.x needs Java 17+)"
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ -n "$v" ] && [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "Kafka 4.x needs Java 17+, found '${v:-unknown}'"
}

free_ports() {  # prints two distinct free loopback ports
  "$(python_bin)" - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
}

cluster_id() {  # what Kafka's Uuid.randomUuid() gives: url-safe base64, no padding, no leading '-'
  "$(python_bin)" -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break'
}

java_opts() {
  # shellcheck disable=SC2086
  echo $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$WORK/logs" -Dlog4j2.configurationFile="$WORK/log4j2.properties"
}

launch_once() {  # one attempt with fresh ports; returns 0 when ready, 2 when a port was taken
  local port cport
  read -r port cport < <(free_ports)
  rm -rf "$WORK/data"
  mkdir -p "$WORK/data" "$WORK/logs"
  sed -e "s#__WORK__#$WORK#g" -e "s#__PORT__#$port#g" -e "s#__CONTROLLER_PORT__#$cport#g" \
    "$ROOT/kafka/server.properties" > "$WORK/server.properties"
  cp "$ROOT/kafka/log4j2.properties" "$WORK/log4j2.properties"

  local t0=$SECONDS opts
  opts="$(java_opts)"
  # shellcheck disable=SC2086
  if ! java $opts -cp "$LIBS/*" kafka.tools.StorageTool format --ignore-formatted \
        -t "$(cluster_id)" -c "$WORK/server.properties" > "$WORK/logs/format.out" 2>&1; then
    cat "$WORK/logs/format.out" >&2
    die "formatting the storage failed"
  fi
  say "storage formatted in $((SECONDS - t0))s"

  t0=$SECONDS
  : > "$LOG"
  # setsid: own session, so a Ctrl-C in the terminal that runs the tests does not hit the broker;
  # the inner bash writes its pid and execs java, so broker.pid is the JVM's pid.
  # 9>&-: the broker must not inherit the lock below, or `stop` would wait for it forever.
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$PIDFILE" \
    java $opts -cp "$LIBS/*" kafka.Kafka "$WORK/server.properties" \
    < /dev/null >> "$LOG" 2>&1 9>&- &
  for _ in $(seq 50); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
  echo "127.0.0.1:$port" > "$BOOTFILE"

  local py; py="$(python_bin)"
  local deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    if "$py" "$ROOT/kafka/ready.py" "127.0.0.1:$port" --timeout 2 --quiet; then
      say "broker ready at 127.0.0.1:$port after $((SECONDS - t0))s (pid $(cat "$PIDFILE"), log $LOG)"
      return 0
    fi
    if ! running_pid >/dev/null; then
      if grep -q "Address already in use" "$LOG"; then
        say "a picked port was taken meanwhile; retrying with new ports"
        rm -f "$BOOTFILE" "$PIDFILE"
        return 2
      fi
      echo "---- last lines of $LOG ----" >&2; tail -n 60 "$LOG" >&2
      rm -f "$BOOTFILE" "$PIDFILE"
      die "the broker exited during startup"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "---- last lines of $LOG ----" >&2; tail -n 60 "$LOG" >&2
      do_stop >/dev/null
      die "the broker did not answer within ${READY_TIMEOUT}s"
    fi
  done
}

do_start() {
  mkdir -p "$CACHE" "$WORK/logs"
  local pid
  if pid="$(running_pid)"; then
    if answering 10; then
      say "reusing the running broker at $(cat "$BOOTFILE") (pid $pid)"
      return 0
    fi
    say "broker pid $pid runs but does not answer; restarting it"
    do_stop
  fi
  check_java
  fetch_jars
  local attempt rc
  for attempt in 1 2 3; do
    rc=0; launch_once || rc=$?
    [ "$rc" -eq 0 ] && return 0
    [ "$rc" -eq 2 ] || exit "$rc"
  done
  die "could not bind free ports after 3 attempts"
}

do_stop() {
  local pid
  if pid="$(running_pid)"; then
    local t0=$SECONDS
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t0)) -lt "$STOP_TIMEOUT" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      say "no controlled shutdown within ${STOP_TIMEOUT}s; sending SIGKILL to $pid"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    say "broker stopped (pid $pid, $((SECONDS - t0))s)"
  else
    say "no broker running for this checkout"
  fi
  rm -rf "$WORK/data"
  rm -f "$PIDFILE" "$BOOTFILE"
  return 0
}

do_status() {
  local pid
  if ! pid="$(running_pid)"; then say "not running"; return 3; fi
  if answering 5; then say "running and answering at $(cat "$BOOTFILE") (pid $pid)"; return 0; fi
  say "running (pid $pid) but not answering"; return 1
}

# Serialise start/stop/status of this checkout's broker (two `make test` at once, say).
mkdir -p "$CACHE"
exec 9>"$CACHE/kafka.lock"
flock 9

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
