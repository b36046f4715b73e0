#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and RabbitMQ answer, for `make run`, `make test` and CI.
# Starts a stopped service, installs a missing one with apt-get when running as root,
# otherwise prints how to start it and exits non-zero. Also creates the database named in
# DATABASE_URL and the RabbitMQ vhost named in CELERY_BROKER_URL when they are missing.
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgres://localhost:5432/traceledger}
REDIS_URL=${REDIS_URL:-redis://localhost:6379/0}
CELERY_BROKER_URL=${CELERY_BROKER_URL:-amqp://guest:guest@localhost:5672//}
PY=${PY:-python3}

say() { printf '[services] %s\n' "$*"; }
is_root() { [ "$(id -u)" = 0 ]; }
can_apt() { is_root && command -v apt-get >/dev/null 2>&1; }
APT_UPDATED=
apt_install() {
  if [ -z "$APT_UPDATED" ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# scheme, host, port (with the scheme's default) or decoded path of a URL; every scheme the
# settings accept (unix:// is a Redis socket: its path is the socket's)
url_part() { "$PY" - "$1" "$2" <<'PYEOF'
import sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
part = sys.argv[2]
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379,
                 "amqp": 5672, "amqps": 5671, "unix": ""}
if part == "scheme": print(u.scheme)
elif part == "host": print(u.hostname or "localhost")
elif part == "port": print(u.port or DEFAULT_PORTS.get(u.scheme, ""))
elif part == "path": print(unquote(u.path) if u.scheme == "unix" else unquote(u.path.lstrip("/")))
PYEOF
}
unix_socket_open() { "$PY" -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect(sys.argv[1])" "$1" 2>/dev/null; }
tcp_open() { "$PY" -c "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)" "$1" "$2" 2>/dev/null; }
is_local() { case "$1" in localhost|127.0.0.1|::1) return 0;; *) return 1;; esac; }
# RabbitMQ can accept TCP connections and never answer the AMQP handshake (seen on this
# machine class with RabbitMQ 3.10): every test would then wait out its timeout. The
# protocol header must be answered by a method frame (connection.start) within
# SERVICES_AMQP_ANSWER_SECONDS (5 s).
amqp_answers() { "$PY" - "$1" "$2" "${SERVICES_AMQP_ANSWER_SECONDS:-5}" <<'PYEOF' 2>/dev/null
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)
s.settimeout(float(sys.argv[3]))
s.sendall(b"AMQP\x00\x00\x09\x01")
sys.exit(0 if s.recv(1) == b"\x01" else 1)
PYEOF
}
wait_for_amqp() { # host port seconds
  for _ in $(seq 1 "$3"); do amqp_answers "$1" "$2" && return 0; sleep 1; done; return 1
}
wait_for() { # host port seconds
  for _ in $(seq 1 "$3"); do tcp_open "$1" "$2" && return 0; sleep 1; done; return 1
}
give_up() {
  say "$1 is not answering at $2:$3 and cannot be started here."
  say "Start it yourself, e.g. 'docker compose up -d postgres redis rabbitmq', or set $4."
  exit 1
}

ensure_postgres() {
  local host port
  host=$(url_part "$DATABASE_URL" host); port=$(url_part "$DATABASE_URL" port)
  if ! tcp_open "$host" "$port"; then
    is_local "$host" || give_up PostgreSQL "$host" "$port" DATABASE_URL
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      can_apt || give_up PostgreSQL "$host" "$port" DATABASE_URL
      say "installing PostgreSQL (apt-get)"; apt_install postgresql postgresql-contrib
      local conf; conf=$(ls -d /etc/postgresql/*/main | head -n1)
      # A freshly installed local server: trust loopback connections, as this machine's does.
      sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
    fi
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_for "$host" "$port" 20 || give_up PostgreSQL "$host" "$port" DATABASE_URL
  fi
  if is_local "$host" && is_root && command -v psql >/dev/null 2>&1; then
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='$(whoami)'\"" 2>/dev/null | grep -q 1 \
      || su postgres -c "createuser -s $(whoami)" 2>/dev/null || true
  fi
  "$PY" - "$DATABASE_URL" <<'PYEOF'
import sys
from urllib.parse import unquote, urlsplit
import psycopg
from psycopg import sql
u = urlsplit(sys.argv[1]); name = unquote(u.path.lstrip("/"))
conninfo = dict(host=u.hostname or "localhost", port=u.port or 5432, dbname="postgres",
                user=u.username, password=u.password, connect_timeout=3, autocommit=True)
with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        print(f"[services] created database {name}")
PYEOF
  say "PostgreSQL ok ($host:$port)"
}

ensure_redis() {
  local host port socket
  if [ "$(url_part "$REDIS_URL" scheme)" = unix ]; then
    socket=$(url_part "$REDIS_URL" path)
    unix_socket_open "$socket" && { say "Redis ok ($socket)"; return; }
    say "Redis is not answering on the socket $socket (REDIS_URL), and a socket-only Redis is"
    say "not started from here: start it with 'unixsocket $socket' in its configuration."
    exit 1
  fi
  host=$(url_part "$REDIS_URL" host); port=$(url_part "$REDIS_URL" port)
  if ! tcp_open "$host" "$port"; then
    is_local "$host" || give_up Redis "$host" "$port" REDIS_URL
    if ! command -v redis-server >/dev/null 2>&1; then
      can_apt || give_up Redis "$host" "$port" REDIS_URL
      say "installing Redis (apt-get)"; apt_install redis-server
    fi
    say "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for "$host" "$port" 10 || give_up Redis "$host" "$port" REDIS_URL
  fi
  say "Redis ok ($host:$port)"
}

ensure_rabbitmq() {
  local host port vhost tls=
  host=$(url_part "$CELERY_BROKER_URL" host); port=$(url_part "$CELERY_BROKER_URL" port)
  vhost=$(url_part "$CELERY_BROKER_URL" path)
  # amqps: the handshake probe below speaks plain AMQP, so over TLS only the port is checked.
  [ "$(url_part "$CELERY_BROKER_URL" scheme)" = amqps ] && tls=1
  if ! tcp_open "$host" "$port"; then
    is_local "$host" || give_up RabbitMQ "$host" "$port" CELERY_BROKER_URL
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
      can_apt || give_up RabbitMQ "$host" "$port" CELERY_BROKER_URL
      say "installing RabbitMQ (apt-get)"; apt_install rabbitmq-server
    fi
    say "starting RabbitMQ (takes a few seconds)"
    rabbitmq-server -detached || true
    wait_for "$host" "$port" 60 || give_up RabbitMQ "$host" "$port" CELERY_BROKER_URL
  fi
  if [ -z "$tls" ] && ! wait_for_amqp "$host" "$port" 3; then
    say "RabbitMQ at $host:$port accepts connections but does not answer the AMQP handshake"
    if is_local "$host" && command -v rabbitmq-server >/dev/null 2>&1; then
      say "restarting RabbitMQ (its queues and messages are kept)"
      timeout 60 rabbitmqctl -q stop >/dev/null 2>&1 || pkill -9 -f 'beam.smp.* rabbit' || true
      sleep 2
      rabbitmq-server -detached || true
      wait_for_amqp "$host" "$port" 90 && { say "RabbitMQ answers again"; }
    fi
    if ! amqp_answers "$host" "$port"; then
      say "RabbitMQ still does not answer: see its log (/var/log/rabbitmq/). As a last resort"
      say "'rabbitmqctl stop_app; rabbitmqctl reset; rabbitmqctl start_app' empties it (every"
      say "vhost, queue and message) and has brought it back here."
      exit 1
    fi
  fi
  if [ -n "$vhost" ] && [ "$vhost" != "/" ] && is_local "$host" && command -v rabbitmqctl >/dev/null 2>&1; then
    if ! rabbitmqctl -q list_vhosts 2>/dev/null | grep -qx "$vhost"; then
      rabbitmqctl -q add_vhost "$vhost" && rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
      say "created RabbitMQ vhost $vhost"
    fi
  fi
  # At-least-once dead-lettering for audit.ingest (traceledger/broker_policy.py); idempotent.
  if is_local "$host" && command -v rabbitmqctl >/dev/null 2>&1; then
    "$PY" traceledger/broker_policy.py "${vhost:-/}" \
      || say "could not set the dead-letter policy on vhost ${vhost:-/} (README, Operations)"
  fi
  say "RabbitMQ ok ($host:$port)"
}

ensure_postgres
ensure_redis
ensure_rabbitmq
