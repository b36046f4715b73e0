"""Worker and beat log at DJANGO_LOG_LEVEL, as the web does, whatever Celery's --loglevel."""

import os
import subprocess
import sys
import time

import pytest

from testsupport import worker


def _lines_until(argv: list[str], *, env: dict, wanted: str, seconds: float = 30) -> str:
    """Runs ``argv`` until ``wanted`` shows in its output (or ``seconds`` pass); the output."""
    proc = subprocess.Popen(
        argv,
        cwd=worker.ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    deadline = time.monotonic() + seconds
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline and not any(wanted in line for line in output):
            line = proc.stdout.readline()
            if line:
                output.append(line)
            else:
                time.sleep(0.05)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)
    return "".join(output)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_readme_worker_command_logs_info_lines_as_json():
    # No --loglevel, as in the README's "Running the pieces separately".
    argv = [sys.executable, "-m", "celery", "-A", "traceledger", "worker", "-Q", "maintenance",
            "-c", "1", "-n", f"loglevel-{os.getpid()}@%h"]  # fmt: skip
    output = _lines_until(
        argv,
        env={"DATABASE_URL": worker.test_database_url(), "DJANGO_LOG_LEVEL": "INFO"},
        wanted="ready.",
    )

    ready = [line for line in output.splitlines() if "ready." in line]
    assert ready, output
    assert ready[0].startswith("{") and '"level": "INFO"' in ready[0]
