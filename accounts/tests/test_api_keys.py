"""Service API keys: hashed at rest, cached by hash, revocation and expiry, last use."""

import copy
import logging
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, connections
from django.test import override_settings
from django.utils import timezone
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from accounts import keycache, selectors
from accounts.models import SYSTEM_TENANT_SLUG, ApiKey, Tenant
from accounts.selectors import api_key_principal_get
from accounts.services import api_key_create, api_key_revoke, api_key_touch
from traceledger import log_throttle

STALE_ENTRY_LINE = "database unreachable: authenticating an API key from its cached entry"


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _status(key: str) -> int:
    # GET /audit-events with a read key: 200 once authenticated, 401 otherwise.
    return _client(key).get("/api/v1/audit-events").status_code


@pytest.fixture
def read_key(tenant):
    return api_key_create(tenant=tenant, name="reader", scopes=["read"])


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """No test inherits another's "PostgreSQL failed moments ago" or log throttling."""
    keycache.database_latch_reset()
    log_throttle.reset()
    yield
    keycache.database_latch_reset()
    log_throttle.reset()


def _database_down(*args, **kwargs):
    raise OperationalError("connection refused")


CUT_ALIAS = "apikey_cut"


@pytest.fixture
def database_cut(db, fault_proxy, monkeypatch):
    """database_cut(mode): from then on, key look-ups and last-use writes go to the test
    database through a fault proxy in ``mode``, on a connection alias of their own (the
    test's connection, inside its transaction, is left alone). Returns the list of look-ups
    that reached the alias."""
    default = connections["default"].settings_dict
    proxy = fault_proxy(default["HOST"] or "localhost", int(default["PORT"] or 5432))
    connections.settings[CUT_ALIAS] = {
        **copy.deepcopy(default),
        "HOST": "127.0.0.1",
        "PORT": str(proxy.port),
    }
    cut_connection = connections[CUT_ALIAS]
    # Out of the settings again, it counts as a dynamically created connection, which
    # Django's test case lets a test use (an alias it knows would need a test database).
    del connections.settings[CUT_ALIAS]
    cut = ApiKey.objects.db_manager(CUT_ALIAS)
    lookups = []

    def get_from_key(key):
        lookups.append(key)
        return cut.get_from_key(key)

    def make(mode: str) -> list:
        proxy.set_mode(mode)
        monkeypatch.setattr(ApiKey.objects, "get_from_key", get_from_key)
        monkeypatch.setattr(ApiKey.objects, "filter", cut.filter)  # api_key_touch's UPDATE
        return lookups

    yield make
    cut_connection.close()
    del connections[CUT_ALIAS]


@pytest.mark.django_db
def test_it_stores_only_a_hash_of_the_key(read_key):
    api_key, key = read_key
    prefix, _, secret = key.partition(".")
    assert api_key.prefix == prefix
    assert api_key.hashed_key.startswith("sha512$$")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey WHERE prefix = %s", [prefix])
        row = cursor.fetchone()
    assert not any(secret in str(value) for value in row)


@pytest.mark.django_db
def test_it_never_puts_the_key_into_redis(read_key):
    _api_key, key = read_key
    assert _status(key) == 200
    redis = get_redis_connection("default")
    names = list(redis.scan_iter(match="*apikey*", count=1000))
    assert names, "the look-up should have been cached"
    secret = key.partition(".")[2]
    for name in names:
        assert secret.encode() not in name
        assert secret.encode() not in (redis.get(name) or b"")


@pytest.mark.django_db
def test_it_authenticates_a_cached_key_without_the_database(read_key, django_assert_num_queries):
    api_key, key = read_key
    first = api_key_principal_get(key=key)
    with django_assert_num_queries(0):
        again = api_key_principal_get(key=key)
    assert again == first
    assert again.tenant_id == api_key.tenant_id
    assert again.scopes == frozenset({"read"})
    assert again.api_key_id == api_key.prefix
    assert again.rate_key == f"key:{api_key.prefix}"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    ["Api-Key nope", "Api-Key ", "Api-Key abc.def", "Bearer nope", "Api-Key a.b.c"],
)
def test_it_answers_401_for_a_bad_key(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/audit-events")
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"authentication_failed", "token_not_valid"}


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Api-Key ", "Api-Key", "api-key   ", "API-KEY\t"])
def test_it_says_the_key_is_missing_after_the_scheme_alone(db, header):
    """A server strips the space after a bare "Api-Key ", leaving the scheme alone: that is
    no other scheme, but this one without its key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/audit-events")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.json()["error"] == {
        "code": "authentication_failed",
        "message": "The API key is missing: send `Authorization: Api-Key <key>`.",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["api-key", "API-KEY", "Api-key"])
def test_the_scheme_is_case_insensitive(read_key, scheme):
    _api_key, key = read_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
    assert client.get("/api/v1/audit-events").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("separator", ["  ", "\t", " \t "])
def test_any_run_of_spaces_or_tabs_separates_the_key(read_key, separator):
    """The key parser split at the first space: with two, the key began with one and was
    refused as invalid, counted against the address's bad-key limit (API client QA)."""
    _api_key, key = read_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key{separator}{key}")
    assert client.get("/api/v1/audit-events").status_code == 200


@pytest.mark.django_db
def test_it_rejects_a_key_whose_secret_part_is_wrong(read_key):
    api_key, _key = read_key
    assert _status(f"{api_key.prefix}.{'x' * 32}") == 401


@pytest.mark.django_db
def test_it_rejects_a_revoked_key_at_once_even_when_cached(
    read_key, django_capture_on_commit_callbacks
):
    api_key, key = read_key
    assert _status(key) == 200  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        assert api_key_revoke(api_key=api_key) is True
    response = _client(key).get("/api/v1/audit-events")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert keycache.get(key=key) is None
    assert api_key_revoke(api_key=api_key) is False  # idempotent


@pytest.mark.django_db
def test_a_look_up_that_read_the_key_before_its_revocation_does_not_cache_it_after(
    read_key, monkeypatch, django_capture_on_commit_callbacks
):
    """A security review: a request that read the key from PostgreSQL, then lost the race
    to the revocation's ``forget``, wrote its entry after it: the revoked key worked again
    for the fresh window (and the stale one if PostgreSQL went down)."""
    api_key, key = read_key
    read_before_revocation = ApiKey.objects.get_from_key

    def revoked_meanwhile(raw_key):
        found = read_before_revocation(raw_key)
        with django_capture_on_commit_callbacks(execute=True):
            assert api_key_revoke(api_key=ApiKey.objects.get(pk=api_key.pk)) is True
        return found

    monkeypatch.setattr(ApiKey.objects, "get_from_key", revoked_meanwhile)
    assert api_key_principal_get(key=key) is not None  # that request read it valid
    monkeypatch.undo()

    assert keycache.get(key=key) is None
    assert _status(key) == 401


@pytest.mark.django_db
def test_it_bounds_a_revocation_behind_the_services_back_by_the_cache_window(read_key):
    api_key, key = read_key
    assert _status(key) == 200
    ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)  # no cache invalidation
    assert _status(key) == 200  # within TRACELEDGER_API_KEY_CACHE_SECONDS
    with override_settings(TRACELEDGER_API_KEY_CACHE_SECONDS=0):  # the window has passed
        assert _status(key) == 401
    assert keycache.get(key=key) is None  # and the stale entry is gone
    assert _status(key) == 401


@pytest.mark.django_db
def test_it_rejects_an_expired_key(read_key):
    api_key, key = read_key
    ApiKey.objects.filter(pk=api_key.pk).update(expiry_date=timezone.now() - timedelta(seconds=1))
    assert _status(key) == 401


@pytest.mark.django_db
def test_it_rejects_a_key_of_the_system_tenant_made_before_the_services_refused_them():
    system = Tenant.objects.create(slug=SYSTEM_TENANT_SLUG, name="System")
    # What api_key_create did before it refused the system tenant.
    _, key = ApiKey.objects.create_key(name="old", tenant=system, scopes=["ingest", "read"])

    assert _status(key) == 401
    assert api_key_principal_get(key=key) is None


@pytest.mark.django_db
def test_it_rejects_a_cached_key_once_it_expires(tenant, monkeypatch):
    expiry = timezone.now() + timedelta(minutes=5)
    _, key = api_key_create(tenant=tenant, name="short", scopes=["read"], expiry_date=expiry)
    assert _status(key) == 200
    later = expiry.timestamp() + 1
    monkeypatch.setattr(selectors.time, "time", lambda: later)
    with override_settings(TRACELEDGER_API_KEY_CACHE_SECONDS=10**9):  # served from the cache
        assert _status(key) == 401


@pytest.mark.django_db
def test_it_refuses_to_create_an_already_expired_key(tenant):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as exc:
        api_key_create(
            tenant=tenant, name="x", scopes=["read"], expiry_date=timezone.now() - timedelta(1)
        )
    assert "expiry_date" in exc.value.message_dict


@pytest.mark.django_db
def test_it_records_last_use_at_most_once_a_minute(read_key, monkeypatch):
    api_key, key = read_key
    assert _status(key) == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=None)
    assert _status(key) == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at is None  # the minute's write was done already
    # A minute later: the Redis gate has expired, and so has this process's memo of it.
    get_redis_connection("default").delete(
        *get_redis_connection("default").keys(f"*apikey:v1:touched:{api_key.prefix}")
    )
    real_clock = time.monotonic
    monkeypatch.setattr(keycache.time, "monotonic", lambda: real_clock() + 61)
    assert _status(key) == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


@pytest.mark.django_db
def test_a_process_asks_redis_about_last_use_once_a_minute_per_key(read_key, monkeypatch):
    """The touch gate costs no Redis round trip per request (it was one of three)."""
    api_key, key = read_key
    calls = []
    real_add = keycache.cache.add
    monkeypatch.setattr(
        keycache.cache, "add", lambda *a, **kw: calls.append(a[0]) or real_add(*a, **kw)
    )
    for _ in range(5):
        assert _status(key) == 200
    assert [c for c in calls if ":touched:" in c] == [f"apikey:v1:touched:{api_key.prefix}"]


@pytest.mark.django_db
def test_it_serves_a_stale_entry_while_the_database_is_unreachable(read_key, monkeypatch):
    _api_key, key = read_key
    principal = api_key_principal_get(key=key)

    def database_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ApiKey.objects, "get_from_key", database_down)
    with override_settings(TRACELEDGER_API_KEY_CACHE_SECONDS=0):  # entry is no longer fresh
        assert api_key_principal_get(key=key) == principal


@pytest.mark.django_db
def test_it_answers_503_when_neither_cache_nor_database_can_check_a_key(read_key, monkeypatch):
    _api_key, key = read_key

    def database_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ApiKey.objects, "get_from_key", database_down)
    response = _client(key).get("/api/v1/audit-events")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "unavailable"


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_it_checks_keys_against_postgresql_when_redis_is_cut(read_key, redis_cut, mode):
    api_key, key = read_key
    with redis_cut(mode):
        assert _status(key) == 200
        ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)
        assert _status(key) == 401


@pytest.mark.django_db
def test_a_blackholed_database_costs_one_connect_timeout_then_the_stale_entry_serves_at_once(
    read_key, database_cut, monkeypatch, caplog
):
    """D4: every request with a stale entry used to wait out connect_timeout (2 s), and the
    minute's last-use write another 2 s, for the whole outage."""
    api_key, key = read_key
    api_key_principal_get(key=key)  # cached while PostgreSQL answers
    lookups = database_cut("blackhole")
    connect_timeout = connections[CUT_ALIAS].settings_dict["OPTIONS"]["connect_timeout"]
    assert connect_timeout == 2

    with override_settings(TRACELEDGER_API_KEY_CACHE_SECONDS=0), caplog.at_level(logging.INFO):
        started = time.monotonic()
        assert _status(key) == 200  # from the stale entry, after the connect timeout
        first = time.monotonic() - started
        started = time.monotonic()
        assert [_status(key) for _ in range(5)] == [200] * 5
        then = time.monotonic() - started

        assert connect_timeout - 0.5 < first < 2 * connect_timeout - 0.5, first  # no touch
        assert then < connect_timeout, then  # five requests: PostgreSQL skipped, not waited for
        assert len(lookups) == 1

        # After DATABASE_RETRY_AFTER one request tries PostgreSQL again.
        real_clock = time.monotonic
        shift = keycache.DATABASE_RETRY_AFTER + 0.1
        monkeypatch.setattr(keycache.time, "monotonic", lambda: real_clock() + shift)
        assert _status(key) == 200
        assert len(lookups) == 2

    stale_lines = [r for r in caplog.records if r.getMessage().startswith(STALE_ENTRY_LINE)]
    assert len(stale_lines) == 1  # D3: not one per request
    api_key.refresh_from_db()
    assert api_key.last_used_at is None  # the write was skipped, not attempted


@pytest.mark.django_db
def test_it_skips_the_database_for_a_stale_entry_only_for_a_few_seconds(read_key, monkeypatch):
    _api_key, key = read_key
    principal = api_key_principal_get(key=key)
    lookups = []

    def database_down(key):
        lookups.append(key)
        raise OperationalError("connection refused")

    monkeypatch.setattr(ApiKey.objects, "get_from_key", database_down)
    with override_settings(TRACELEDGER_API_KEY_CACHE_SECONDS=0):
        assert [api_key_principal_get(key=key) for _ in range(10)] == [principal] * 10
        assert len(lookups) == 1
        real_clock = time.monotonic
        shift = keycache.DATABASE_RETRY_AFTER + 0.1
        monkeypatch.setattr(keycache.time, "monotonic", lambda: real_clock() + shift)
        assert api_key_principal_get(key=key) == principal
        assert len(lookups) == 2


@pytest.mark.django_db
def test_it_asks_the_database_again_as_soon_as_it_answers(read_key, monkeypatch, caplog):
    api_key, key = read_key
    api_key_principal_get(key=key)
    keycache.database_failed()
    monkeypatch.setattr(keycache, "DATABASE_RETRY_AFTER", 0)
    with override_settings(TRACELEDGER_API_KEY_CACHE_SECONDS=0), caplog.at_level(logging.INFO):
        keycache.database_failed()
        assert api_key_principal_get(key=key) is not None  # checked in PostgreSQL
        ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)
        assert api_key_principal_get(key=key) is None
    assert not keycache.database_skipped()
    recovered = [r for r in caplog.records if r.name == "accounts.selectors"]
    assert [r.getMessage() for r in recovered] == [
        "database reachable again: API keys are checked against it"
    ]


@pytest.mark.django_db
def test_a_revocation_takes_effect_at_once_while_the_database_is_being_skipped(
    read_key, django_capture_on_commit_callbacks
):
    """Skipping is process memory, nothing is written to the cache: revoking deletes the
    entry, and a key without an entry is always checked in PostgreSQL."""
    api_key, key = read_key
    assert _status(key) == 200
    keycache.database_failed()  # as after a failed look-up moments ago
    with override_settings(TRACELEDGER_API_KEY_CACHE_SECONDS=0):
        assert _status(key) == 200  # the stale entry, PostgreSQL skipped
        with django_capture_on_commit_callbacks(execute=True):
            api_key_revoke(api_key=api_key)
        assert _status(key) == 401


@pytest.mark.django_db
def test_it_does_not_try_to_record_last_use_while_the_database_is_being_skipped(
    read_key, monkeypatch, django_assert_num_queries
):
    api_key, key = read_key
    principal = api_key_principal_get(key=key)
    keycache.database_failed()
    with django_assert_num_queries(0):
        api_key_touch(prefix=principal.api_key_id)
    keycache.database_latch_reset()
    api_key_touch(prefix=principal.api_key_id)  # the minute was not used up by the skip
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


@pytest.mark.django_db
def test_a_failed_last_use_write_makes_the_next_requests_skip_the_database(
    read_key, monkeypatch, caplog
):
    _api_key, key = read_key
    api_key_principal_get(key=key)
    monkeypatch.setattr(ApiKey.objects, "filter", _database_down)
    with caplog.at_level(logging.WARNING, logger="accounts.services.last_use"):
        assert _status(key) == 200  # fresh entry: only the last-use write needs PostgreSQL
    assert keycache.database_skipped()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("accounts.")] == [
        "could not record API key last use"
    ]


@pytest.mark.django_db
def test_a_stale_entry_served_many_times_is_logged_once(read_key, monkeypatch, caplog):
    _api_key, key = read_key
    api_key_principal_get(key=key)
    monkeypatch.setattr(ApiKey.objects, "get_from_key", _database_down)
    with override_settings(TRACELEDGER_API_KEY_CACHE_SECONDS=0), caplog.at_level(logging.INFO):
        for _ in range(20):
            assert _status(key) == 200
    assert [r.getMessage() for r in caplog.records if r.name == "accounts.selectors"] == [
        STALE_ENTRY_LINE
    ]


@pytest.mark.django_db
def test_a_redis_outage_logs_one_line_not_one_traceback_per_cache_call(read_key, redis_cut, caplog):
    """D3: 50 requests with Redis refusing made 200 "Exception ignored" lines, each with a
    traceback."""
    _api_key, key = read_key
    with redis_cut("refuse"), caplog.at_level(logging.INFO):
        assert [_status(key) for _ in range(50)] == [200] * 50
    ignored = [r for r in caplog.records if r.name == "traceledger.cache"]
    assert len(ignored) == 1
    assert ignored[0].getMessage() == "Exception ignored"
    assert ignored[0].exc_info is not None  # the outage's one traceback
    latch = [r.getMessage() for r in caplog.records if r.name == "traceledger.redis_latch"]
    assert len(latch) == 1 and latch[0].startswith("Redis unreachable")
    assert len(caplog.records) <= 5, [(r.name, r.getMessage()) for r in caplog.records]


@pytest.mark.django_db
@pytest.mark.parametrize("stored", [["admin", "ingest", "read"], [None, "read"]])
def test_a_key_holds_only_the_key_scopes_whatever_its_row_says(tenant, stored):
    # The forms offer ingest and read only; a row edited by SQL is read the same way.
    api_key, key = api_key_create(tenant=tenant, name="edited", scopes=["read"])
    ApiKey.objects.filter(pk=api_key.pk).update(scopes=stored)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    assert client.get("/api/v1/audit-events").status_code == 200
    body = {"username": "made-by-a-key", "password": "Correct-horse-9", "role": "auditor"}
    assert client.post("/api/v1/users", body, format="json").status_code == 403
