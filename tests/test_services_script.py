"""``scripts/services.sh`` (``make run``/``make test``/CI): a broker that takes TCP
connections but never answers the AMQP handshake is named, not left for every test to time
out on. The silent broker here is not local (127.0.0.2), so the script only reports it: it
never restarts the machine's real RabbitMQ in a test."""

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def silent_broker():
    server = socket.socket()
    server.bind(("127.0.0.2", 0))
    server.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)  # held open, never answered

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for connection in accepted:
        connection.close()


def test_a_broker_that_never_answers_the_handshake_stops_the_script_naming_it(silent_broker):
    result = subprocess.run(
        ["scripts/services.sh"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "PY": sys.executable,
            "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.2:{silent_broker}//",
            # 1 s per probe instead of 5: the silence is the same, the test 16 s shorter.
            "SERVICES_AMQP_ANSWER_SECONDS": "1",
        },
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert result.returncode == 1
    assert "accepts connections but does not answer the AMQP handshake" in result.stdout
    assert "restarting" not in result.stdout  # not a local broker: only reported


def test_the_real_broker_answers():
    result = subprocess.run(
        ["scripts/services.sh"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PY": sys.executable},
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "RabbitMQ ok" in result.stdout
