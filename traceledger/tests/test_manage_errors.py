"""manage.py answers what an operator can fix in one line, exit 2, instead of a traceback."""

import os
import subprocess
import sys

import pytest

from testsupport.worker import ROOT


def _manage(*args, **env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "command",
    # drain_dlq: also with its queue empty, which never needed the database (new-user QA:
    # "moved 0", exit 0, with PostgreSQL down).
    [("create_tenant", "zz"), ("verify_ledger",), ("relay_outbox",), ("drain_dlq",)],
)
def test_an_unreachable_database_is_one_line(command):
    result = _manage(*command, DATABASE_URL="postgres://127.0.0.1:9/nowhere")
    assert result.returncode == 2
    assert result.stderr.startswith("database unavailable: ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def empty_database(transactional_db):
    """A database of its own without any table: DATABASE_URL pointing at the wrong one."""
    from django.db import connection

    name = f"tl_unmigrated_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    settings = connection.settings_dict
    yield f"postgres://{settings['HOST'] or 'localhost'}:{settings['PORT'] or 5432}/{name}"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.parametrize("command", [("create_tenant", "zz"), ("verify_ledger",)])
def test_a_database_without_the_tables_is_one_line_saying_to_migrate(command, empty_database):
    """It was Django's traceback and exit 1, which verify_ledger keeps for a broken chain."""
    result = _manage(*command, DATABASE_URL=empty_database)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("database not migrated (relation ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_setting_is_one_line_naming_the_variable():
    result = _manage("check", TRACELEDGER_PUBLISH_TIMEOUT="5ms")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "configuration error: TRACELEDGER_PUBLISH_TIMEOUT='5ms' is not a number of seconds "
        "(e.g. 0.5)"
    )


def test_a_prefetch_of_zero_is_refused_celery_would_read_it_as_unlimited():
    result = _manage("check", TRACELEDGER_WORKER_PREFETCH="0")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "configuration error: TRACELEDGER_WORKER_PREFETCH='0' must be at least 1"
    )


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        (
            "DATABASE_URL",
            "mysql://auditor:s3cret@db/trail",
            "DATABASE_URL must be a PostgreSQL URL (postgres://, postgresql://), not mysql://…",
        ),
        (
            "REDIS_URL",
            "garbage",
            "REDIS_URL must be a Redis URL (redis://, rediss://, unix://), not a value without "
            "a scheme://",
        ),
        (
            "CELERY_BROKER_URL",
            "redis://:s3cret@localhost:6379/0",
            "CELERY_BROKER_URL must be a RabbitMQ URL (amqp://, amqps://, pyamqp://), not "
            "redis://…",
        ),
        (
            "ELASTICSEARCH_URL",
            "redis://localhost:6379",
            "ELASTICSEARCH_URL must be an Elasticsearch URL (http://, https://), not redis://…",
        ),
        (
            # Accepted at start before; the client refused it at the first search (a 500). An
            # https URL without a port means 443, plain http has no default.
            "ELASTICSEARCH_URL",
            "http://elastic:s3cret@search.internal",
            "ELASTICSEARCH_URL must be one URL with scheme, host and port (e.g. "
            "http://localhost:9200)",
        ),
        (
            "ELASTICSEARCH_URL",
            "http://a:9200,http://b:s3cret@c:9200",
            "ELASTICSEARCH_URL must be one URL with scheme, host and port (e.g. "
            "http://localhost:9200)",
        ),
    ],
)
def test_a_service_url_of_the_wrong_kind_is_one_line_without_its_password(name, value, line):
    result = _manage("check", **{name: value})
    assert result.returncode == 2
    assert result.stderr.strip() == f"configuration error: {line}"
    assert "s3cret" not in result.stderr
