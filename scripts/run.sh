#!/usr/bin/env bash
# `make run`: demo data, then web (gunicorn :8000), a Celery worker and beat in the
# foreground. Ctrl-C (or any of the three exiting) stops all of them.
set -euo pipefail
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
PORT=${PORT:-8000}
# Loopback only by default: a development stack (DEBUG on, demo accounts) is not for the
# network. HOST=0.0.0.0 make run exposes it.
HOST=${HOST:-127.0.0.1}

mkdir -p var
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/metrics}
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

# gunicorn serves the admin's CSS and JS through WhiteNoise, from STATIC_ROOT.
"$PY" manage.py collectstatic --noinput --verbosity 0
PORT="$PORT" "$PY" manage.py bootstrap_demo
# Signs what there is and makes the ledger key on a first run, so the public key is served
# at once (beat signs every TRACELEDGER_CHECKPOINT_SECONDS after that).
# A chain whose events since its last checkpoint do not verify is reported (stderr) and left
# unsigned (older events are what `manage.py verify_ledger` checks); the stack still starts.
"$PY" manage.py sign_checkpoints >/dev/null || echo "[run] a ledger chain does not verify: see above"

pids=()
cleanup() {
  # Ignore, not default: `make` forwards the SIGTERM a process-group kill already sent,
  # and a second TERM would kill this script halfway through stopping its children.
  trap '' INT TERM HUP; trap - EXIT
  echo "[run] stopping..."
  [ -n "${helper:-}" ] && kill -TERM -- "-$helper" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 20); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "[run] stopped"
}
trap cleanup INT TERM HUP EXIT

# Each child in its own process group: Ctrl-C then reaches this script only, and each child
# gets one TERM from cleanup. Otherwise a gunicorn worker gets the terminal's INT and, an
# instant later, the master's QUIT; gthread's quit handler is not re-entrant (it takes the
# thread pool's shutdown lock), so the worker could hang until the master SIGKILLs it.
set -m
GUNICORN_BIND="$HOST:$PORT" "$BIN/gunicorn" traceledger.wsgi:application &
pids+=($!)
"$BIN/celery" -A traceledger worker --concurrency 2 \
  -Q audit.ingest,search.index,maintenance --without-gossip --without-mingle &
pids+=($!)
"$BIN/celery" -A traceledger beat &
pids+=($!)

# Once more when the worker has stored the demo's events (the signing above ran before any
# worker): the README's offline check then finds a checkpoint at once, not after beat's first
# tick, TRACELEDGER_CHECKPOINT_SECONDS (300 s) later. Not in pids: its end stops nothing.
( sleep "${FIRST_SIGNING_DELAY:-20}" && "$PY" manage.py sign_checkpoints >/dev/null 2>&1 ) &
helper=$!

echo "[run] web http://localhost:$PORT/  admin http://localhost:$PORT/admin/  API docs http://localhost:$PORT/api/docs/"
wait -n "${pids[@]}" || true
