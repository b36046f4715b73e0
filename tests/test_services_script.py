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


def _services(env: dict, path_first: Path | None = None) -> subprocess.CompletedProcess:
    path = "/usr/bin:/bin:/usr/sbin:/sbin"
    return subprocess.run(
        ["scripts/services.sh"],
        cwd=ROOT,
        env={"PATH": f"{path_first}:{path}" if path_first else path, "PY": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture
def recording_rabbitmqctl(tmp_path):
    """A ``rabbitmqctl`` first on PATH that lists no vhost and records what it is asked, so
    the test never creates a vhost on the machine's broker."""
    log = tmp_path / "rabbitmqctl.log"
    stub = tmp_path / "rabbitmqctl"
    stub.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {log}\necho >> {log}\n')
    stub.chmod(0o755)
    return tmp_path, log


@pytest.mark.parametrize(
    ("vhost_in_url", "created"), [("team%20a", "team a"), ("%2F", None), ("plain", "plain")]
)
def test_the_vhost_is_created_under_its_decoded_name(recording_rabbitmqctl, vhost_in_url, created):
    stub_dir, log = recording_rabbitmqctl

    result = _services(
        {"CELERY_BROKER_URL": f"amqp://guest:guest@localhost:5672/{vhost_in_url}"}, stub_dir
    )

    assert result.returncode == 0, result.stdout + result.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    added = [call.split("|")[2] for call in calls if call.startswith("-q|add_vhost|")]
    assert added == ([created] if created else [])


def test_a_redis_socket_that_does_not_answer_is_named_without_a_traceback(tmp_path):
    socket_path = tmp_path / "redis.sock"

    result = _services({"REDIS_URL": f"unix://{socket_path}?db=3"})

    assert result.returncode == 1
    assert f"Redis is not answering on the socket {socket_path}" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_redis_socket_that_answers_is_accepted(tmp_path):
    socket_path = tmp_path / "redis.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(socket_path))
    server.listen(4)
    try:
        result = _services({"REDIS_URL": f"unix://{socket_path}?db=3"})
    finally:
        server.close()

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Redis ok ({socket_path})" in result.stdout


def test_amqps_is_checked_by_its_port_alone(silent_broker):
    # TLS: the plain-AMQP handshake probe would read the broker's silence as a hang.
    result = _services({"CELERY_BROKER_URL": f"amqps://guest:guest@127.0.0.2:{silent_broker}/tls"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"RabbitMQ ok (127.0.0.2:{silent_broker})" in result.stdout
