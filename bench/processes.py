"""The processes under test: gunicorn and Celery workers, each in its own process group.

Each is started with ``start_new_session`` so that stopping or SIGKILLing it reaches its
children (gunicorn and prefork workers) and nothing else on the machine.
"""

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.environment import ROOT
from testsupport.worker import ALL_QUEUES, celery_worker_argv

# The product's worker class (gunicorn.conf.py): gthread with a deadline on the request head.
GTHREAD_WORKER = "traceledger.gunicorn_worker.HeadDeadlineThreadWorker"


class Managed:
    name = "process"

    def __init__(self, *, argv: list[str], env: dict[str, str], log_path: Path):
        self.argv, self.env, self.log_path = argv, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Managed":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash would."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()

    def cpu_seconds(self) -> float:
        """User+system CPU of the group's processes so far (read from /proc)."""
        if not self.alive:
            return 0.0
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in _group_pids(self.proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                continue
        return total


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) == pgid:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


class Web(Managed):
    name = "web"

    def __init__(
        self, *, port: int, env: dict[str, str], log_path: Path, workers: int = 2, threads: int = 1
    ):
        self.port = port
        bin_dir = Path(sys.executable).parent
        # More than one thread: gthread, as the product's gunicorn.conf.py runs it.
        threading = (
            ["--worker-class", GTHREAD_WORKER, "--threads", str(threads)] if threads > 1 else []
        )
        super().__init__(
            argv=[
                str(bin_dir / "gunicorn"),
                "traceledger.wsgi:application",
                "--config",
                str(Path(ROOT) / "bench" / "gunicorn_bench.py"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                *threading,
            ],
            env=env,
            log_path=log_path,
        )

    def wait_ready(self, timeout: float = 30) -> "Web":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"gunicorn exited early:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready in {timeout}s:\n{self.log_tail()}")


class Worker(Managed):
    name = "worker"

    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 2,
        queues: str = ALL_QUEUES,
        node: str = "bench",
    ):
        super().__init__(
            argv=celery_worker_argv(queues=queues, concurrency=concurrency, node=node),
            # INFO, as make run's worker logs: its "ready." line is how wait_ready knows it
            # started, and every earlier run's worker logged at INFO (its --loglevel did).
            env={**env, "DJANGO_LOG_LEVEL": "INFO"},
            log_path=log_path,
        )

    def wait_ready(self, timeout: float = 40) -> "Worker":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"celery worker exited early:\n{self.log_tail()}")
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                if b"ready." in fh.read():
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready in {timeout}s:\n{self.log_tail()}")


class Workers:
    """Several Celery workers started, stopped and measured as one (``--worker-layout split``)."""

    def __init__(self, workers: list[Worker]):
        self.workers = workers

    def start(self) -> "Workers":
        for worker in self.workers:
            worker.start()
        return self

    def wait_ready(self, timeout: float = 40) -> "Workers":
        for worker in self.workers:
            worker.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 15) -> None:
        for worker in self.workers:
            worker.stop(timeout)

    def cpu_seconds(self) -> float:
        return sum(worker.cpu_seconds() for worker in self.workers)


class Beat(Managed):
    name = "beat"

    def __init__(self, *, env: dict[str, str], log_path: Path, schedule: Path):
        super().__init__(
            argv=[
                sys.executable,
                "-m",
                "celery",
                "-A",
                "traceledger",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(schedule),
            ],
            env=env,
            log_path=log_path,
        )
