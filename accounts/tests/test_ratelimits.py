"""Rate limits per API key or user, on Redis; 429 with Retry-After; fail open without Redis."""

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from django.test import override_settings

from accounts import ratelimits
from accounts.models import Role, User


def _event() -> dict:
    return {
        "occurred_at": datetime.now(UTC).isoformat(),
        "action": "invoice.update",
        "actor": {"id": "user-1"},
    }


def _post(client):
    return client.post("/api/v1/audit-events", _event(), format="json").status_code


def _get(client):
    return client.get("/api/v1/audit-events").status_code


def _assert_429(response):
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "rate_limited"


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_INGEST="2/m")
def test_it_limits_ingest_per_api_key(key_client):
    client = key_client(("ingest", "read"))
    assert [_post(client), _post(client)] == [202, 202]
    _assert_429(client.post("/api/v1/audit-events", _event(), format="json"))
    # Another key of the same tenant has its own bucket, and reads are counted apart.
    assert _post(key_client(("ingest",))) == 202
    assert _get(client) == 200


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_READ="2/m")
def test_it_limits_reads_per_api_key(key_client):
    client = key_client(("ingest", "read"))
    assert [_get(client), _get(client)] == [200, 200]
    _assert_429(client.get("/api/v1/audit-events"))
    assert _post(client) == 202  # the ingest bucket is untouched
    assert _get(key_client(("read",))) == 200


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_READ="1/m")
def test_it_limits_per_user_across_tokens(jwt_client, tenant):
    auditor = User.objects.create_user(
        username=f"a-{uuid.uuid4().hex[:8]}", password="x", tenant=tenant, role=Role.AUDITOR
    )
    assert _get(jwt_client(auditor)) == 200
    _assert_429(jwt_client(auditor).get("/api/v1/audit-events"))  # a fresh token, same user


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_READ="1/m")
def test_it_counts_user_management_against_the_read_limit(jwt_client, owner):
    client = jwt_client(owner)
    body = {"password": "violet-Anchor-47-river", "role": "auditor"}
    first = client.post(
        "/api/v1/users", body | {"username": f"x{uuid.uuid4().hex[:8]}"}, format="json"
    )
    assert first.status_code == 201
    second = body | {"username": f"y{uuid.uuid4().hex[:8]}"}
    _assert_429(client.post("/api/v1/users", second, format="json"))


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
@override_settings(TRACELEDGER_RATELIMIT_INGEST="1/m", TRACELEDGER_RATELIMIT_READ="1/m")
def test_it_fails_open_and_logs_it_when_redis_is_cut(
    key_client, redis_cut, mode, caplog, monkeypatch
):
    monkeypatch.setattr(ratelimits, "_last_fail_open_log", 0.0)
    client = key_client(("ingest", "read"))
    with redis_cut(mode), caplog.at_level(logging.WARNING, logger="accounts.ratelimits"):
        posts = [_post(client) for _ in range(3)]
        gets = [_get(client) for _ in range(3)]
    assert posts == [202, 202, 202]
    assert gets == [200, 200, 200]
    assert any("failing open" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_READ="1/m")
def test_it_does_not_fail_closed_when_redis_comes_back(key_client, redis_cut):
    client = key_client(("read",))
    with redis_cut("refuse"):
        assert [_get(client), _get(client)] == [200, 200]
    assert _get(client) == 200  # counting resumes from zero on the real Redis
    assert _get(client) == 429


def test_it_counts_exactly_under_concurrency(rf):
    """Redis add/incr are atomic: 20 concurrent requests against 5/m let exactly 5 through."""
    key = f"test:{uuid.uuid4().hex}"
    barrier = threading.Barrier(20)

    def attempt(_):
        barrier.wait()
        try:
            ratelimits.check_rate(
                request=rf.get("/"), group="test.concurrency", rate="5/m", key=key
            )
        except ratelimits.RateLimited:
            return False
        return True

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    assert results.count(True) == 5


READ_PATHS = [
    "/api/v1/audit-events",
    "/api/v1/audit-events/{id}",
    "/api/v1/audit-events/search?q=invoice",
    "/api/v1/audit-events/export?format=csv",
    "/api/v1/ledger/verify",
    "/api/v1/ledger/checkpoints",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", READ_PATHS)
@override_settings(TRACELEDGER_RATELIMIT_READ="1/m")
def test_it_applies_the_read_limit_to_every_read_endpoint(key_client, path):
    client = key_client(("read",))
    path = path.replace("{id}", str(uuid.uuid4()))
    assert client.get(path).status_code in (200, 404)
    _assert_429(client.get(path))


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_READ="1/m")
def test_retrying_after_exactly_retry_after_is_in_the_next_window(monkeypatch, key_client):
    """django-ratelimit's window ends with the second it names: a client that waits just
    ``Retry-After`` must land in the next window, not meet one more 429."""
    import django_ratelimit.core as core

    now = [1_800_000_000.25]
    monkeypatch.setattr(core.time, "time", lambda: now[0])
    client = key_client(scopes=["read"])

    assert client.get("/api/v1/ledger/public-key").status_code != 429
    refused = client.get("/api/v1/ledger/public-key")
    now[0] += int(refused["Retry-After"])

    assert refused.status_code == 429
    assert client.get("/api/v1/ledger/public-key").status_code != 429


# --- requests with a bad API key, per client address --------------------------------------


def _bad_key_client(ip: str):
    from rest_framework.test import APIClient

    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key bad{uuid.uuid4().hex[:5]}.{uuid.uuid4().hex}")
    return client


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_BAD_KEYS="3/m")
def test_bad_api_keys_from_one_address_are_refused_without_a_database_look_up(key_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.tests.conftest import unique_ip

    ip = unique_ip()
    known = key_client(("read",))
    known.defaults["REMOTE_ADDR"] = ip
    assert _get(known) == 200  # its look-up is cached now

    assert [_get(_bad_key_client(ip)) for _ in range(3)] == [401, 401, 401]
    with CaptureQueriesContext(connection) as queries:
        response = _bad_key_client(ip).get("/api/v1/audit-events")

    _assert_429(response)
    assert (
        "invalid, revoked or expired API key from this address"
        in response.json()["error"]["message"]
    )
    assert not [q for q in queries if "apikey" in q["sql"]]
    # Another address is not held back, nor is a known key from the same one.
    assert _get(_bad_key_client(unique_ip())) == 401
    assert _get(known) == 200


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_BAD_KEYS="1/m")
def test_bad_api_keys_fail_open_when_redis_is_cut(redis_cut):
    from accounts.tests.conftest import unique_ip

    ip = unique_ip()
    with redis_cut("refuse"):
        assert [_get(_bad_key_client(ip)) for _ in range(3)] == [401, 401, 401]
