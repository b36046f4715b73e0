"""Run a real Celery worker as a subprocess against the test database and the real broker."""

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.db import connections

from traceledger.queues import CELERY_QUEUES

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connections["default"].settings_dict
    auth = ""
    if s.get("USER"):
        auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "") + "@"
    return f"postgres://{auth}{s.get('HOST') or 'localhost'}:{s.get('PORT') or 5432}/{s['NAME']}"


_started: list["WorkerProcess"] = []


@atexit.register
def _kill_leftovers() -> None:
    """A test that failed before stopping its worker must not leave it running after pytest."""
    for worker in _started:
        worker.kill()


# Every queue a worker consumes (the DLQ is not one of them, on purpose).
ALL_QUEUES = ",".join(queue.name for queue in CELERY_QUEUES)


def celery_worker_argv(*, queues: str, concurrency: int, node: str) -> list[str]:
    """``celery -A traceledger worker`` as the tests and the benchmark start it."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "traceledger",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "--loglevel",
        "INFO",
        "-n",
        f"{node}-{os.getpid()}-{time.time_ns()}@%h",
    ]


class WorkerProcess:
    """``celery -A traceledger worker`` with the test database; stop() or kill() it."""

    def __init__(
        self,
        queues: str = ALL_QUEUES,
        extra_env=None,
        concurrency: int = 1,
    ):
        self.queues = queues
        self.concurrency = concurrency
        self.env = {**os.environ, "DATABASE_URL": test_database_url(), **(extra_env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = ROOT / "var" / f"test-worker-{os.getpid()}-{time.time_ns()}.log"

    def start(self, ready_timeout: float = 30) -> "WorkerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            celery_worker_argv(queues=self.queues, concurrency=self.concurrency, node="test"),
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _started.append(self)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if "ready." in self.log():
                return self
            time.sleep(0.2)
        # Never leave a half-started worker behind: it would consume the next test's messages.
        self.stop()
        raise RuntimeError(f"worker not ready in {ready_timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool children."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()
