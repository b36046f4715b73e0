"""Fixtures of the project-level tests: the product's WSGI application under gunicorn."""

import os
import socket
import subprocess
import sys
import time

import pytest

from testsupport import worker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_with(transactional_db, tmp_path):
    """gunicorn_with(**env) → the port of the product's WSGI application under gunicorn
    (which de-chunks), on the test database, with ``env`` on top; stopped after the test."""
    started = []

    def start(**extra_env) -> int:
        port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": worker.test_database_url(),
            "TRACELEDGER_MAX_BODY_BYTES": "100000",
            "TRACELEDGER_INGEST_MAX_BACKLOG": "0",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
            **extra_env,
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "traceledger.wsgi:application",
                *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--access-logfile", "-"),
            ],
            cwd=worker.ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        return port

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(15)


@pytest.fixture
def gunicorn(gunicorn_with):
    """The product's WSGI application under gunicorn on the test database: its port."""
    return gunicorn_with()
