"""The benchmark's own services: a fresh database, a RabbitMQ vhost, a Redis database.

The harness never touches the product's default database or vhost: it refuses a database
whose name lacks "bench" or "soak", because it drops and recreates it on every run.
"""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from testsupport.isolated_services import vhost_ensure as broker_vhost_ensure
from traceledger.queues import CELERY_QUEUES, DLQ_NAME

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUEUE_NAMES = (*(queue.name for queue in CELERY_QUEUES), DLQ_NAME)


@dataclass(frozen=True)
class Services:
    database_url: str
    broker_url: str
    redis_url: str

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/")

    @property
    def vhost(self) -> str:
        return urlsplit(self.broker_url).path.lstrip("/") or "/"

    def conninfo(self, dbname: str | None = None) -> dict:
        u = urlsplit(self.database_url)
        info = {
            "host": u.hostname or "localhost",
            "port": u.port or 5432,
            "dbname": dbname or self.database_name,
            "user": u.username,
            "password": u.password,
            "connect_timeout": 5,
        }
        return {k: v for k, v in info.items() if v is not None}

    def environ(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "REDIS_URL": self.redis_url,
        }


def database_recreate(*, services: Services, allowed=("bench", "soak")) -> None:
    """Drops and creates the benchmark database (empty, to be migrated)."""
    name = services.database_name
    if not any(word in name for word in allowed):
        raise SystemExit(
            f"refusing to drop database {name!r}: its name must contain one of {allowed}"
        )
    with psycopg.connect(**services.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def vhost_ensure(*, services: Services) -> None:
    """Creates the vhost with rabbitmqctl when it is missing (local broker only)."""
    if services.vhost == "/":
        raise SystemExit("refusing to run the benchmark on the default RabbitMQ vhost '/'")
    broker_vhost_ensure(services.broker_url)


def queues_purge(*, services: Services) -> dict[str, int]:
    """Empties the vhost's queues that exist; returns how many messages each held."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    purged = {}
    with Connection(services.broker_url, connect_timeout=15) as conn:
        for name in QUEUE_NAMES:
            # A missing queue closes only its channel (404), so each gets a fresh one.
            channel = conn.channel()
            try:
                purged[name] = channel.queue_purge(name) or 0
            except NotFound:
                purged[name] = 0  # not declared yet: nothing to purge
                continue
            channel.close()
    return purged


class QueueDepth:
    """Reads a queue's ready-message count over one long-lived connection."""

    def __init__(self, broker_url: str, name: str = "audit.ingest"):
        from kombu import Connection

        self.name = name
        self._conn = Connection(broker_url, connect_timeout=2)

    def read(self) -> int | None:
        try:
            _, count, _ = self._conn.default_channel.queue_declare(self.name, passive=True)
            return count
        except Exception:
            self._conn.close()
            return None

    def close(self) -> None:
        self._conn.close()


def production_environ() -> dict[str, str]:
    """Production settings for every bench process: DEBUG off (with DEBUG on, Django keeps
    every query in memory and wraps each cursor call), as the settings guard requires."""
    return {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(48),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
    }


def django_setup(*, services: Services, settings_module: str = "bench.settings") -> None:
    """Points this process's Django at the benchmark services, then sets it up. The child
    processes inherit this environment (``process_env``)."""
    os.environ.update(production_environ())
    os.environ.update(services.environ())
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()


def prepare(*, services: Services) -> dict[str, int]:
    """A fresh, migrated database with its signing key, the vhost, empty queues; Django set
    up on them."""
    database_recreate(services=services)
    vhost_ensure(services=services)
    django_setup(services=services)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # As `make run` and compose start: the checkpoint signer makes the signing key, without
    # which the ledger's checkpoint and public-key endpoints answer 503.
    call_command("sign_checkpoints", verbosity=0)
    return queues_purge(services=services)


def process_env(*, services: Services, metrics_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of the web and worker processes the harness starts."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        **services.environ(),
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        # The harness measures throughput and failures, not the rate limiter's 429s.
        "TRACELEDGER_RATELIMIT_INGEST": "100000000/m",
        "TRACELEDGER_RATELIMIT_READ": "100000000/m",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "DJANGO_LOG_LEVEL": os.environ.get("DJANGO_LOG_LEVEL", "WARNING"),
        **extra,
    }
