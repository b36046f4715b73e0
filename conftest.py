"""Shared fixtures: personas (owner, teammate, outsider tenant), API clients, a real worker."""

import time
from contextlib import contextmanager

import pytest
from rest_framework.test import APIClient

from accounts.models import Role, Tenant, User
from accounts.services import api_key_create
from testsupport.isolated_services import vhost_ensure, vhost_missing_message


def pytest_sessionstart(session):
    """The tests' own RabbitMQ vhost (``testsupport/isolated_services.py``): created when it
    is missing on a local broker, with the dead-letter policy ``make run`` sets; otherwise
    the run stops saying how to create it."""
    from django.conf import settings

    vhost_ensure(settings.CELERY_BROKER_URL)
    message = vhost_missing_message(settings.CELERY_BROKER_URL)
    if message is not None:
        pytest.exit(message, returncode=4)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The events table refuses TRUNCATE (audit migration 0003) except in a database that
    allows it: the test database, which Django empties with TRUNCATE after each
    transactional test. The setting applies to new connections, so reconnect."""
    from django.db import connection

    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            name = connection.ops.quote_name(connection.settings_dict["NAME"])
            cursor.execute(f"ALTER DATABASE {name} SET traceledger.allow_truncate = 'on'")
        connection.close()


@pytest.fixture(scope="session", autouse=True)
def _ledger_signing_key():
    """A deployment has its signing key from its first checkpoint; tests that read the
    public key first must not depend on which test signed before them."""
    from audit.ledger.signing import signing_key

    signing_key(create=True)


@pytest.fixture
def tenant(db) -> Tenant:
    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return Tenant.objects.create(slug="globex", name="Globex")


def _user(tenant, username, role, **extra):
    return User.objects.create_user(
        username=username, password="correct-horse-battery", tenant=tenant, role=role, **extra
    )


@pytest.fixture
def owner(tenant) -> User:
    """The tenant's admin."""
    return _user(tenant, "owner", Role.ADMIN)


@pytest.fixture
def teammate(tenant) -> User:
    """An auditor of the same tenant."""
    return _user(tenant, "teammate", Role.AUDITOR)


@pytest.fixture
def outsider(other_tenant) -> User:
    """An admin of another tenant."""
    return _user(other_tenant, "outsider", Role.ADMIN)


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser(username="root", password="correct-horse-battery")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session", autouse=True)
def _views_imported_before_any_patch():
    """Every view imported once, before a test patches what they import by name: the ingest
    view binds ``events_submit`` when first imported, and a test's first request loads the
    URLconf; under a fixture's patch (``submitted_events``), every later test's posts went to
    the patch, and the outbox tests found no rows (order-dependent failures)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018


@contextmanager
def account_changes_unrecorded():
    """A test's arrangement (its client's key) without its audit record: the record is
    written in the change's transaction, and would be one more outbox row or queued message
    in every test that counts them. The tests of the records make their changes directly."""
    from accounts.signals import account_changed
    from audit.receivers import record_account_change

    uid = "audit.record_account_change"
    account_changed.disconnect(dispatch_uid=uid)
    try:
        yield
    finally:
        account_changed.connect(record_account_change, dispatch_uid=uid)


@pytest.fixture
def key_client(tenant):
    """An APIClient authenticated with a fresh API key: key_client(scopes=[...], tenant=...)."""

    def make(scopes=("ingest", "read"), for_tenant=None):
        with account_changes_unrecorded():
            _, key = api_key_create(
                tenant=for_tenant or tenant, name=f"test-{'-'.join(scopes)}", scopes=list(scopes)
            )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    return make


@pytest.fixture
def user_client():
    """An APIClient authenticated as a user (JWT itself is tested in accounts)."""

    def make(user):
        client = APIClient()
        client.force_authenticate(user=user)
        return client

    return make


@pytest.fixture
def celery_worker_process(transactional_db):
    """A real Celery worker subprocess on the test database; yields the WorkerProcess."""
    from testsupport.worker import WorkerProcess

    worker = WorkerProcess().start()
    yield worker
    worker.stop()


@pytest.fixture
def fault_proxy():
    """fault_proxy(host, port) → a started FaultProxy, stopped after the test."""
    from testsupport.faultproxy import FaultProxy

    proxies = []

    def make(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(host, port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def database_down(transactional_db, fault_proxy):
    """database_down() → from then on the default connection goes through a fault proxy that
    refuses (every query fails at once with OperationalError, as with PostgreSQL down).

    Needs a test without a wrapping transaction (``transactional_db``): the connection is
    closed to be reopened through the proxy. The real address comes back before the tables
    are flushed."""
    from django.db import connections

    connection = connections["default"]
    real = connection.settings_dict["HOST"], connection.settings_dict["PORT"]
    proxy = fault_proxy(real[0] or "localhost", int(real[1] or 5432))

    def cut():
        proxy.set_mode("refuse")
        connection.close()
        connection.settings_dict["HOST"], connection.settings_dict["PORT"] = (
            "127.0.0.1",
            str(proxy.port),
        )

    yield cut
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = real


@pytest.fixture(autouse=True)
def _redis_latch_reset():
    """A Redis, PostgreSQL or RabbitMQ cut by one test (through a proxy) must not be skipped
    in the next, nor its log lines throttled there."""
    from accounts import keycache
    from search.receivers import index_publish_breaker
    from traceledger import log_throttle, redis_latch

    def reset():
        redis_latch.reset()
        keycache.database_latch_reset()
        log_throttle.reset()
        index_publish_breaker.close()

    reset()
    yield
    reset()


@pytest.fixture(autouse=True)
def _rate_limit_clock(monkeypatch):
    """django-ratelimit counts in fixed windows whose edge falls at a per-key second: two
    requests a test expects in one window (the second one refused) met the edge once in a
    CI run, and the second was allowed. Its clock stands still during each test; a test
    that moves it sets ``django_ratelimit.core.time.time`` itself. Only django-ratelimit's
    module sees this clock, not ``time`` itself."""
    import types

    import django_ratelimit.core as core

    now = time.time()
    monkeypatch.setattr(core, "time", types.SimpleNamespace(time=lambda: now))


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's deliberate slowness costs ~0.3 s per user made or password checked in this
    process: the users behind the admin and API tests of every app (0.28 s of setup per
    admin test before). The tests need no strength; subprocesses keep the real hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_admission_control(settings):
    """Admission control refuses posts by the depth of ``audit.ingest`` on the shared test
    vhost, which many tests fill on purpose (no worker consumes it) and an interrupted run
    may leave full. Only its own tests (``test_api_ingest_backlog.py``) turn it on."""
    settings.TRACELEDGER_INGEST_MAX_BACKLOG = 0


@pytest.fixture(autouse=True)
def fresh_export_slots(monkeypatch):
    """Each test its own export slots: Django's test client closes a streamed response (and
    gives its slot back, audit/export_slots.py) only when a test reads it to the end, where
    a WSGI server always closes it."""
    import threading

    from django.conf import settings

    monkeypatch.setattr(
        "audit.export_slots._slots",
        threading.BoundedSemaphore(settings.TRACELEDGER_EXPORTS_PER_PROCESS),
    )
