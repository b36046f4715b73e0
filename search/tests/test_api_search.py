"""GET /api/v1/audit-events/search: the endpoint minimum (401, 403, 400, happy path)."""

import base64
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from audit.api.serializers import event_document
from audit.metrics_read import READ_LATENCY
from audit.models import AuditEvent
from search.api.views import cursor_encode
from search.backends.postgresql import QUERY_NO_WORDS
from search.tests.conftest import found

pytestmark = pytest.mark.django_db


def test_it_answers_401_without_credentials(api_client):
    response = api_client.get("/api/v1/audit-events/search", {"q": "payroll"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_answers_403_to_a_key_without_the_read_scope(search_get, key_client):
    response = search_get("payroll", client=key_client(scopes=["ingest"]))
    assert response.status_code == 403


def test_it_answers_403_when_asked_for_another_tenant(search_get, other_tenant):
    response = search_get("payroll", tenant=other_tenant.slug)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 513}, "q"),
        ({"q": "pay\x00roll"}, "q"),
        ({"q": "payroll", "actor_id": "a\x00b"}, "actor_id"),
        (
            {
                "q": "payroll",
                "cursor": cursor_encode({"b": "postgresql", "s": 1, "t": "x", "i": "y"}),
            },
            "cursor",
        ),
        ({"q": "payroll", "severity": "loud"}, "severity"),
        ({"q": "payroll", "occurred_after": "yesterday"}, "occurred_after"),
        ({"q": "payroll", "action": "*"}, "action"),
        ({"q": "payroll", "page_size": "0"}, "page_size"),
        ({"q": "payroll", "page_size": "501"}, "page_size"),
        ({"q": "payroll", "cursor": "not-base64!"}, "cursor"),
        ({"q": "payroll", "cursor": cursor_encode({"b": "postgresql", "s": "x"})}, "cursor"),
        ({"q": "payroll", "sort": "oldest"}, "sort"),
        ({"q": "payroll", "format": "csv"}, "format"),
        ({"q": "payroll", "page_size": "1_0"}, "page_size"),
        ({"q": "payroll", "page_size": "+5"}, "page_size"),
        ({"q": ["payroll", "invoice"]}, "q"),
        ({"q": "payroll", "actor_id": ["a1", "a2"]}, "actor_id"),
        ({"q": "payroll", "occurred_after": "٢٠٢٦-01-01T00:00:00Z"}, "occurred_after"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_it_answers_400_naming_the_bad_parameter(search_get, params, field):
    response = search_get(**params)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_it_says_q_is_required_when_it_was_not_sent(search_get):
    """Left out, q read "This field may not be blank." (contract QA)."""
    missing = search_get()
    blank = search_get("")
    assert missing.status_code == blank.status_code == 400
    assert missing.json()["error"]["fields"]["q"] == ["This field is required."]
    assert blank.json()["error"]["fields"]["q"] == ["This field may not be blank."]


# PostgreSQL's websearch_to_tsquery keeps pending operators on a stack of 32 (STACKDEPTH in
# src/backend/utils/adt/tsquery.c): each "-" waiting for its word is one, and so is the
# implicit AND after a word.
TOO_COMPLEX = ["-" * 33, " ".join(["-"] * 33), "a " + "-" * 33, "payroll -" + "-!" * 40]


@pytest.mark.parametrize("q", TOO_COMPLEX)
def test_it_answers_400_naming_q_when_the_query_is_too_complex_for_postgresql(
    search_get, indexed, q
):
    indexed(description="payroll")

    response = search_get(q)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "too complex" in error["fields"]["q"][0]


def test_it_still_searches_up_to_the_limit(search_get, indexed):
    indexed(event_id="e-1", description="payroll")

    # Parsed (not "too complex"), but no word is left to search for.
    assert search_get("-" * 32).json()["error"]["fields"]["q"] == [QUERY_NO_WORDS]
    assert found(search_get("payroll " + "-" * 31)) == ["e-1"]


def test_its_latency_is_observed_as_the_other_reads_are(search_get, indexed):
    """``traceledger_read_request_seconds{endpoint="search"}``: the README lists it beside
    the list's, the detail's and the export's, but the search view never timed itself."""
    series = READ_LATENCY.labels(endpoint="search")
    before = _observations(series)

    assert search_get("payroll").status_code == 200
    assert search_get("payroll", severity="loud").status_code == 400

    assert _observations(series) == before + 2


def _observations(histogram) -> float:
    return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))


def test_it_refuses_a_too_complex_query_before_asking_elasticsearch(search_get, indexed, fake_es):
    response = search_get("-" * 33)

    assert response.status_code == 400
    assert "q" in response.json()["error"]["fields"]
    assert fake_es.search_bodies == []


def test_it_refuses_a_cursor_of_the_other_backend(search_get, indexed):
    indexed(description="payroll")
    cursor = cursor_encode(
        {"b": "elasticsearch", "s": 1.0, "t": "2026-01-01T00:00:00+00:00", "i": "x"}
    )
    response = search_get("payroll", cursor=cursor)
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        '{"b": "postgresql", "s": NaN, "t": "2026-01-01T00:00:00+00:00", "i": "%(id)s"}',
        '{"b": "postgresql", "s": Infinity, "t": "2026-01-01T00:00:00+00:00", "i": "%(id)s"}',
        '{"b": "postgresql", "s": 1e400, "t": "2026-01-01T00:00:00+00:00", "i": "%(id)s"}',
        '{"b": "postgresql", "s": true, "t": "2026-01-01T00:00:00+00:00", "i": "%(id)s"}',
        '{"b": "postgresql", "s": "0.5", "t": "2026-01-01T00:00:00+00:00", "i": "%(id)s"}',
        '{"b": "postgresql", "s": 0.5, "t": "2026-01-01T00:00:00", "i": "%(id)s"}',
        # outside years 1 to 9999 in UTC
        '{"b": "postgresql", "s": 0.5, "t": "0001-01-01T00:00:00+01:00", "i": "%(id)s"}',
        '{"b": "postgresql", "s": 0.5, "t": "9999-12-31T23:59:59-00:01", "i": "%(id)s"}',
        # an integer beyond a float's range
        '{"b": "postgresql", "s": 1%(zeros)s, "t": "2026-01-01T00:00:00+00:00", "i": "%(id)s"}',
        '{"b": "postgresql", "s": 0.5, "t": ["2026"], "i": "%(id)s"}',
        # nested past Python's recursion limit (a few KB): json.loads raises RecursionError
        '{"s": ' + "[" * 1200 + "]" * 1200 + "}",
    ],
)
def test_it_refuses_a_cursor_it_could_not_have_written(search_get, indexed, text):
    event = indexed(description="payroll")[0]
    raw = text % {"id": event.id, "zeros": "0" * 400}
    cursor = base64.urlsafe_b64encode(raw.encode()).decode()
    response = search_get("payroll", cursor=cursor)
    assert response.status_code == 400, raw
    assert "cursor" in response.json()["error"]["fields"]


def test_a_cursor_time_with_an_offset_means_the_same_instant_in_utc(search_get, indexed):
    indexed(count=3, description="payroll")
    first = search_get("payroll", page_size=1).json()
    cursor = json.loads(
        base64.urlsafe_b64decode(parse_qs(urlsplit(first["next"]).query)["cursor"][0])
    )
    expected = found(search_get("payroll", cursor=cursor_encode(cursor)))
    assert len(expected) == 2
    at = datetime.fromisoformat(cursor["t"])
    # Python reads offsets up to ±23:59, PostgreSQL only up to ±15:59: compared in UTC, each
    # is the instant it names, not a 500 (DataError: time zone displacement out of range).
    for offset in (timedelta(hours=20), timedelta(hours=-23, minutes=-59), timedelta(hours=14)):
        local = at.astimezone(timezone(offset)).isoformat()
        assert found(search_get("payroll", cursor=cursor_encode({**cursor, "t": local}))) == (
            expected
        ), local


def test_it_answers_in_the_documented_shape(search_get, indexed):
    event = indexed(event_id="e-1", description="payroll exported")[0]
    response = search_get("payroll")
    body = response.json()
    assert body["backend"] == "postgresql"
    assert body["degraded"] is False
    assert body["next"] is None
    stored = AuditEvent.objects.select_related("tenant").get(pk=event.pk)
    assert body["results"] == [event_document(stored)]


def test_it_lets_a_superuser_search_a_named_tenant_or_every_tenant(
    user_client, superuser, tenant, other_tenant, indexed, monkeypatch
):
    indexed(event_id="e-1", description="payroll exported")
    indexed(event_id="o-1", description="payroll approved", tenant_id=other_tenant.pk)
    indexed(event_id="o-2", description="invoice approved", tenant_id=other_tenant.pk)
    recorded = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: recorded.append(kw)
    )
    client = user_client(superuser)
    response = client.get("/api/v1/audit-events/search", {"q": "payroll", "tenant": tenant.slug})
    assert found(response) == ["e-1"]
    assert [r["tenant_id"] for r in recorded] == [tenant.pk]

    recorded.clear()
    everywhere = client.get("/api/v1/audit-events/search", {"q": "payroll"})
    assert sorted(found(everywhere)) == ["e-1", "o-1"]
    # The search text in the system tenant's trail (None) only; the search in the trail of
    # each tenant whose events it showed.
    assert [r["tenant_id"] for r in recorded] == [None, *sorted([tenant.pk, other_tenant.pk])]
    assert recorded[0]["metadata"]["filters"]["q"] == "payroll"
    assert all("filters" not in r["metadata"] for r in recorded[1:])
    assert {r["action"] for r in recorded} == {"audit_log.search"}

    recorded.clear()
    nothing = client.get("/api/v1/audit-events/search", {"q": "nowhere"})
    assert found(nothing) == []
    assert [r["tenant_id"] for r in recorded] == [None]  # the system tenant's trail


def test_it_records_a_persons_search_as_an_audit_log_search_event(
    user_client, teammate, tenant, indexed, monkeypatch
):
    recorded = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: recorded.append(kw)
    )
    indexed(description="payroll exported")
    response = user_client(teammate).get(
        "/api/v1/audit-events/search", {"q": "payroll", "severity": "info"}
    )
    assert response.status_code == 200
    assert len(recorded) == 1
    assert recorded[0]["action"] == "audit_log.search"
    assert recorded[0]["tenant_id"] == tenant.pk
    assert recorded[0]["metadata"]["filters"] == {"q": "payroll", "severity": "info"}


def test_it_does_not_record_a_service_keys_search(search_get, indexed, monkeypatch):
    recorded = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: recorded.append(kw)
    )
    indexed(description="payroll exported")
    assert search_get("payroll").status_code == 200
    assert recorded == []
