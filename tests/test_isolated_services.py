"""The suite runs on its own RabbitMQ vhost and Redis database, never on those of `make run`."""

import os
import shutil
import subprocess
import uuid
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.cache import cache

from testsupport.isolated_services import (
    broker_url_with_vhost,
    redis_url_with_db,
    vhost_ensure,
    vhost_missing_message,
)


def test_the_suite_is_on_its_own_vhost_and_redis_database():
    # The defaults, or what the run was given (README: to run beside another run).
    vhost = os.environ.get("TRACELEDGER_TEST_VHOST") or "traceledger_test"
    db = int(os.environ.get("TRACELEDGER_TEST_REDIS_DB", "14"))
    assert vhost != "/" and db != 0  # never make run's
    assert urlsplit(settings.CELERY_BROKER_URL).path == f"/{vhost}"
    assert urlsplit(settings.REDIS_URL).path == f"/{db}"
    assert cache.client.get_client().connection_pool.connection_kwargs["db"] == db


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "amqp://guest:guest@localhost:5672//",
            "amqp://guest:guest@localhost:5672/traceledger_test",
        ),
        ("amqp://u:p@broker/prod", "amqp://u:p@broker/traceledger_test"),
        (
            "amqp://u:p@a/x;amqp://u:p@b:5673/x",
            "amqp://u:p@a/traceledger_test;amqp://u:p@b:5673/traceledger_test",
        ),
    ],
)
def test_the_broker_url_keeps_its_servers_and_changes_the_vhost(given, expected):
    assert broker_url_with_vhost(given, "traceledger_test") == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/15"),
        ("redis://localhost", "redis://localhost/15"),
        (
            "rediss://:pw@cache:6380?db=3&ssl_cert_reqs=none",
            "rediss://:pw@cache:6380/15?ssl_cert_reqs=none",
        ),
        ("redis://a:6379/0,redis://b:6379/0", "redis://a:6379/15,redis://b:6379/15"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=15"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock?db=15"),
    ],
)
def test_the_redis_url_keeps_its_servers_and_changes_the_database(given, expected):
    assert redis_url_with_db(given, 15) == expected


def _broker_url_on(vhost: str) -> str:
    return broker_url_with_vhost(settings.CELERY_BROKER_URL, vhost)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs a local rabbitmqctl")
def test_a_missing_vhost_is_named_then_created_on_a_local_broker():
    vhost = f"traceledger_isolation_{uuid.uuid4().hex[:8]}"
    url = _broker_url_on(vhost)
    try:
        message = vhost_missing_message(url)
        assert message is not None
        assert f"rabbitmqctl add_vhost {vhost}" in message
        assert "TRACELEDGER_TEST_VHOST" in message

        vhost_ensure(url)

        assert vhost_missing_message(url) is None
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], timeout=60, check=False)


def test_an_existing_vhost_needs_nothing():
    assert vhost_missing_message(settings.CELERY_BROKER_URL) is None
