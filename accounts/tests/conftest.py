"""Helpers for the accounts tests: real JWTs, unique client addresses, a Redis cut."""

import uuid

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

EVENT = {
    "occurred_at": "2026-01-01T12:00:00+00:00",
    "action": "invoice.update",
    "actor": {"id": "user-1", "type": "user", "name": "Ada"},
}


def unique_ip() -> str:
    """A client address no earlier run has used, so login counters never carry over."""
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


@pytest.fixture
def jwt_client():
    """An APIClient carrying a real simplejwt access token of ``user`` (Bearer)."""

    def make(user) -> APIClient:
        client = APIClient(REMOTE_ADDR=unique_ip())
        token = RefreshToken.for_user(user).access_token
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient(REMOTE_ADDR=unique_ip())


@pytest.fixture
def redis_cut(fault_proxy):
    """redis_cut(mode): a context in which the cache goes through a fault proxy in ``mode``."""

    def make(mode: str):
        proxy = fault_proxy("127.0.0.1", 6379)
        proxy.set_mode(mode)
        location = settings.CACHES["default"]["LOCATION"].rsplit("/", 1)[-1]
        caches = {
            "default": {
                **settings.CACHES["default"],
                "LOCATION": f"redis://127.0.0.1:{proxy.port}/{location}",
            }
        }
        return override_settings(CACHES=caches)

    return make


_user_ids_moved = False


@pytest.fixture(autouse=True)
def _fresh_user_ids(request):
    """Start user ids at a random point once per run: rate-limit buckets are keyed by user
    id and live in Redis for a minute, so a re-run must not inherit the previous run's."""
    global _user_ids_moved
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(
        request.fixturenames
    )
    if _user_ids_moved or not uses_db:
        return
    request.getfixturevalue("_django_db_helper")  # the test database, set up and unblocked
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('accounts_user', 'id'), %s)",
            [uuid.uuid4().int % 10**12 + 1],
        )
    _user_ids_moved = True
