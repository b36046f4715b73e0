import time

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from traceledger import health


def test_it_answers_healthz_without_io(client):
    # No django_db mark: any database access here would raise.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_monitoring_endpoints_answer_head_as_get(client):
    # Load balancers and uptime checks often probe with HEAD.
    assert client.head("/healthz").status_code == 200


@pytest.fixture
def ingest_consumer():
    """A consumer on audit.ingest, as each worker process has (it takes one message at most,
    and gives it back when it closes)."""
    from kombu import Connection, Consumer

    from traceledger.queues import INGEST_QUEUE

    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 1, False)
        # A message delivered to it stays unacked and goes back to the queue on close.
        consumer = Consumer(
            channel, queues=[INGEST_QUEUE], accept=["json"], callbacks=[lambda *_: None]
        )
        consumer.consume()
        yield
        consumer.cancel()


@pytest.mark.django_db
def test_it_reports_every_dependency_ok_and_search_disabled(client, ingest_consumer):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "broker": "ok",
            "cache": "ok",
            "search": "disabled",
            "workers": "ok",
        },
    }


@pytest.mark.django_db
def test_it_is_degraded_while_no_worker_consumes_the_ingest_queue(client):
    # Events are still accepted (202), but nothing stores them: an operator must see it.
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["workers"] == "down"
    assert response.json()["status"] == "degraded"


@pytest.mark.django_db
def test_the_ingest_queue_and_its_consumers_are_exported_at_scrape_time(client, ingest_consumer):
    text = client.get("/metrics").content.decode()

    assert "traceledger_ingest_queue_consumers 1.0" in text
    assert "traceledger_ingest_queue_messages " in text


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_it_is_degraded_but_serving_when_redis_is_cut(client, fault_proxy, mode):
    proxy = fault_proxy("127.0.0.1", 6379)
    proxy.set_mode(mode)
    caches_setting = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{proxy.port}/0"}
    }
    with override_settings(CACHES=caches_setting):
        caches["default"].set("k", "v")  # swallowed: must not raise
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["cache"] == "down"
    assert body["status"] == "degraded"
    assert elapsed < 2


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_it_answers_503_quickly_when_the_database_is_unreachable(
    client, fault_proxy, monkeypatch, mode
):
    proxy = fault_proxy("127.0.0.1", 5432)
    proxy.set_mode(mode)
    real_params = health.database_params()
    monkeypatch.setattr(
        health, "database_params", lambda: {**real_params, "host": "127.0.0.1", "port": proxy.port}
    )
    started = time.monotonic()
    response = client.get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "down"
    assert response.json()["status"] == "down"
    assert elapsed < 2


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_it_reports_the_broker_down_as_degraded_and_the_workers_unknown(
    client, fault_proxy, ingest_consumer, mode
):
    # A worker consumes audit.ingest on the real broker; the probe cannot reach it, so it
    # cannot know whether anything consumes, so it must not say "down".
    proxy = fault_proxy("127.0.0.1", 5672)
    proxy.set_mode(mode)
    with override_settings(CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}//"):
        started = time.monotonic()
        response = client.get("/readyz")
    assert time.monotonic() - started < 2
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "down"
    assert response.json()["checks"]["workers"] == "unknown"
    assert response.json()["status"] == "degraded"


@pytest.mark.django_db
def test_it_is_degraded_when_only_the_workers_cannot_be_asked(client, monkeypatch):
    from kombu.exceptions import OperationalError

    def cannot_say(*args, **kwargs):
        raise OperationalError("reading the state of audit.ingest: timed out")

    monkeypatch.setattr("audit.topology.queue_state", cannot_say)
    body = client.get("/readyz").json()

    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["workers"] == "unknown"
    assert body["status"] == "degraded"


@pytest.mark.django_db
def test_it_reports_search_down_when_elasticsearch_is_unreachable(client, fault_proxy):
    proxy = fault_proxy("127.0.0.1", 9)
    proxy.set_mode("refuse")
    with override_settings(ELASTICSEARCH_URL=f"http://127.0.0.1:{proxy.port}"):
        response = client.get("/readyz")
    assert response.json()["checks"]["search"] == "down"
    assert response.json()["status"] == "degraded"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "error", ["OperationalError", "InterfaceError"], ids=["unreachable", "connection-lost"]
)
def test_a_read_while_the_database_is_unavailable_is_a_503_with_retry_after(
    key_client, monkeypatch, error
):
    from django import db

    client = key_client(scopes=["read"])

    def unavailable(**kwargs):
        raise getattr(db, error)("connection to server at 127.0.0.1 failed")

    monkeypatch.setattr("audit.api.listing.event_queryset", unavailable)
    response = client.get("/api/v1/audit-events")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "error": {"code": "unavailable", "message": "The database is unavailable; retry later."}
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_a_post_to_a_probe_is_a_405_not_a_csrf_page(path):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
