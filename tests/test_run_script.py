"""``scripts/run.sh`` (``make run``) stops all three processes however it is told to stop.

The README says to stop it from a script with SIGTERM to ``make run``'s process group. make
then forwards that TERM to the script, which so gets two: the second one used to kill it
half way through stopping its children, leaving beat running (a later ``make run`` then had
two beats). The children here are stubs that take a second to stop, as the real ones do.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# manage.py collectstatic, bootstrap_demo, sign_checkpoints: each call noted for the test.
STUB_PYTHON = '#!/bin/sh\necho "$2" >> "$STUB_CALLS"\nexit 0\n'
# A long-running process that takes a moment to shut down, and writes its pid for the test.
STUB_SERVER = """#!/bin/bash
echo $$ >> "$STUB_PIDS"
trap 'sleep 1; exit 0' TERM
while :; do sleep 0.1; done
"""


@pytest.fixture
def stubbed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {
        "python": STUB_PYTHON,
        "gunicorn": STUB_SERVER,
        "celery": STUB_SERVER,
    }.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    pids = tmp_path / "pids"
    env = {
        **os.environ,
        "PY": str(bin_dir / "python"),
        "STUB_PIDS": str(pids),
        "STUB_CALLS": str(tmp_path / "calls"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    return tmp_path, env, pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_second_term_while_stopping_does_not_leave_a_process_behind(stubbed):
    cwd, env, pids = stubbed
    script = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run.sh")],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(_read_pids(pids)) < 3:
            time.sleep(0.05)
        children = _read_pids(pids)
        assert len(children) == 3, "the stub web, worker and beat did not start"

        os.killpg(script.pid, signal.SIGTERM)  # the README's stop: TERM to the group
        time.sleep(0.3)
        script.send_signal(signal.SIGTERM)  # make's forwarded copy, while it is stopping
        output, _ = script.communicate(timeout=30)
    finally:
        if script.poll() is None:
            script.kill()

    assert "[run] stopped" in output
    survivors = [pid for pid in children if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


def _read_pids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


def test_it_signs_again_once_the_worker_had_time_to_store_the_demo_events(stubbed):
    """The first signing runs before any worker: on a fresh database no checkpoint existed
    for beat's first 5 minutes, and the README's offline check failed (new-user QA)."""
    cwd, env, pids = stubbed
    script = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run.sh")],
        cwd=cwd,
        env={**env, "FIRST_SIGNING_DELAY": "0.5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    calls = cwd / "calls"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _signings(calls) < 2:
            time.sleep(0.05)
        children = _read_pids(pids)
        signings = _signings(calls)
        os.killpg(script.pid, signal.SIGTERM)
        output, _ = script.communicate(timeout=30)
    finally:
        if script.poll() is None:
            script.kill()

    assert signings == 2, calls.read_text()
    assert "[run] stopped" in output
    assert [pid for pid in children if _alive(pid)] == []


def _signings(path: Path) -> int:
    return path.read_text().split().count("sign_checkpoints") if path.exists() else 0
