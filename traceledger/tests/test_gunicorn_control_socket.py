"""gunicorn's control socket is off unless asked for: its default path is one per user, so
a second stack on the host took it over from the first."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _socket_after_boot(home: Path, socket: Path, **env) -> tuple[str, bool]:
    """Starts gunicorn, waits for its workers and then up to 5 s for ``socket`` (the master
    opens it after forking); returns the log and whether the socket appeared."""
    environment = {**os.environ, "HOME": str(home), **env}
    environment.pop("XDG_RUNTIME_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "traceledger.wsgi:application", "-b", "127.0.0.1:0"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not lines or "Booting worker" not in lines[-1]:
            line = process.stdout.readline()
            if not line:  # exited
                return "".join(lines), False
            lines.append(line)
        deadline = time.monotonic() + 5
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return "".join(lines), socket.is_socket()
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.integration
def test_no_control_socket_by_default(tmp_path):
    log, opened = _socket_after_boot(tmp_path, tmp_path / ".gunicorn" / "gunicorn.ctl")
    assert "Booting worker" in log, log
    assert not opened


@pytest.mark.integration
def test_a_control_socket_where_asked(tmp_path):
    path = tmp_path / "web.ctl"
    log, opened = _socket_after_boot(tmp_path, path, GUNICORN_CONTROL_SOCKET=str(path))
    assert "Booting worker" in log, log
    assert opened
