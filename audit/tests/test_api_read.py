"""GET /api/v1/audit-events and /api/v1/audit-events/{id}."""

import base64
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.cache import cache, caches
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from audit.api.serializers import AuditEventOutputSerializer, event_document
from audit.models import AuditEvent
from audit.selectors import event_cache_key
from audit.tests.factories import BASE_TIME, events_create

LIST = "/api/v1/audit-events"


def detail_url(pk) -> str:
    return f"/api/v1/audit-events/{pk}"


@pytest.fixture
def reader(key_client):
    return key_client(scopes=("read",))


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # our own Redis db (REDIS_URL), never the shared one
    yield


def _event_queries(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "audit_auditevent" in q["sql"]]


def _cursor(position: str, **more) -> str:
    """A cursor as DRF writes one: base64 of the url-encoded position (and ``more`` tokens)."""
    return base64.b64encode(urlencode({"p": position, **more}).encode()).decode()


ZERO_ID = "00000000-0000-0000-0000-000000000000"
# What the search endpoint's cursor holds (search/api/views.py): not a list cursor.
SEARCH_CURSOR = b'{"b":"postgresql","s":0.06,"t":"2026-03-01T12:00:00Z","i":"' + ZERO_ID.encode()
SEARCH_CURSOR += b'"}'


# --- list ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_lists_the_tenants_events_newest_first_in_the_documented_shape(
    reader, tenant, other_tenant
):
    events = events_create(tenant_id=tenant.pk, count=3)
    events_create(tenant_id=other_tenant.pk, count=2)
    response = reader.get(LIST)
    assert response.status_code == 200
    body = response.json()
    assert [e["id"] for e in body["results"]] == [str(e.pk) for e in reversed(events)]
    assert body["next"] is None and body["previous"] is None
    assert "count" not in body
    first = body["results"][0]
    assert list(first) == [
        "id", "tenant", "event_id", "occurred_at", "received_at", "action", "outcome",
        "severity", "actor", "target", "source_ip", "user_agent", "description", "metadata",
        "sequence", "prev_hash", "hash",
    ]  # fmt: skip
    newest = events[-1]
    assert first["tenant"] == "acme"
    assert first["occurred_at"] == newest.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert first["actor"] == {"id": newest.actor_id, "type": "user", "name": "Ada Lovelace"}
    assert first["target"] == {"id": newest.target_id, "type": "invoice", "name": "Invoice"}
    assert first["metadata"] == newest.metadata
    assert first["sequence"] == newest.sequence


@pytest.mark.django_db
def test_it_declares_exactly_the_fields_it_returns(tenant):
    [event] = events_create(tenant_id=tenant.pk, count=1)
    event = AuditEvent.objects.select_related("tenant").get(pk=event.pk)
    assert list(AuditEventOutputSerializer().fields) == list(event_document(event))


@pytest.mark.django_db
def test_it_returns_a_null_target_and_microseconds_even_when_zero(reader, tenant):
    events_create(
        tenant_id=tenant.pk, count=1, target=None, occurred_at=BASE_TIME.replace(microsecond=0)
    )
    [only] = reader.get(LIST).json()["results"]
    assert only["target"] is None
    assert only["occurred_at"] == "2026-03-01T12:00:00.000000Z"


@pytest.mark.django_db
def test_it_applies_the_filters_through_the_api(reader, tenant):
    events_create(tenant_id=tenant.pk, count=2, action="user.login")
    kept = events_create(tenant_id=tenant.pk, count=2, action="invoice.paid", severity="warning")
    response = reader.get(LIST, {"action": "invoice.*", "severity": "warning"})
    assert {e["id"] for e in response.json()["results"]} == {str(e.pk) for e in kept}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("param", "choices"),
    [("outcome", "success, failure, unknown"), ("severity", "info, notice, warning, critical")],
)
def test_a_bad_choice_is_told_the_choices(reader, tenant, param, choices):
    response = reader.get(LIST, {param: "maybe"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        param: [f"Select a valid choice: one of {choices} (not maybe)."]
    }


@pytest.mark.django_db
def test_a_service_finds_its_event_by_the_event_id_it_sent(reader, tenant, other_tenant):
    [mine] = events_create(tenant_id=tenant.pk, count=1, event_id="inv-7-update-1")
    events_create(tenant_id=other_tenant.pk, count=1, event_id="inv-7-update-1")
    events_create(tenant_id=tenant.pk, count=2)
    response = reader.get(LIST, {"event_id": "inv-7-update-1"})
    assert response.status_code == 200
    assert [e["id"] for e in response.json()["results"]] == [str(mine.pk)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"occurred_after": "not-a-date"}, "occurred_after"),
        ({"outcome": "maybe"}, "outcome"),
        ({"page_size": "501"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"page_size": "1_0"}, "page_size"),
        ({"page_size": "\u0665"}, "page_size"),
        ({"actor_id": ["a1", "a2"]}, "actor_id"),
        ({"format": "csv"}, "format"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "aGVsbG8="}, "cursor"),  # "hello": base64, but no cursor token
        # The search endpoint's cursor: url-safe base64 of a JSON object.
        ({"cursor": base64.urlsafe_b64encode(SEARCH_CURSOR).decode()}, "cursor"),
        ({"cursor": base64.b64encode(SEARCH_CURSOR).decode()}, "cursor"),
        ({"cursor": _cursor(f"2026-03-01T12:00:00Z|{ZERO_ID}", q="1")}, "cursor"),  # unknown q
        ({"cursor": base64.b64encode(b"r=1&r=1").decode()}, "cursor"),  # a token twice
        ({"actorid": "bob"}, "actorid"),
    ],
)
def test_it_answers_400_naming_the_bad_parameter(reader, tenant, params, field):
    response = reader.get(LIST, params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert list(response.json()["error"]["fields"]) == [field]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value", ["2026-03-01T12:00:05z", "2026-03-01t12:00:05Z", "2026-03-01t12:00:05+00:00"]
)
def test_it_takes_a_time_filter_with_lowercase_t_or_z_as_ingest_does(reader, tenant, value):
    events = events_create(tenant_id=tenant.pk, count=10)  # a second apart from BASE_TIME
    cut = datetime.fromisoformat("2026-03-01T12:00:05+00:00")
    response = reader.get(LIST, {"occurred_after": value})
    assert response.status_code == 200, response.json()
    assert {e["id"] for e in response.json()["results"]} == {
        str(e.pk) for e in events if e.occurred_at >= cut
    }
    assert 0 < len(response.json()["results"]) < 10


PLUS_HINT = (
    "Enter a valid date/time. It holds a space where an offset's `+` would be: a `+` in a "
    "URL must be sent as `%2B` (`2026-11-30T00:00:00%2B01:00`)."
)


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["occurred_after", "occurred_before"])
@pytest.mark.parametrize(
    "value",
    ["2026-11-30T00:00:00+01:00", "2026-11-30t00:00:00.123456+05:30", "2026-11-30 00:00+0100"],
)
def test_an_offset_whose_plus_was_not_url_encoded_is_told_to_send_2b(reader, tenant, param, value):
    # As a client that pastes the time into the URL sends it: the "+" arrives as a space.
    response = reader.get(f"{LIST}?{param}={value}")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {param: [PLUS_HINT]}
    encoded = reader.get(f"{LIST}?{param}={value.replace('+', '%2B')}")
    assert encoded.status_code == 200, encoded.json()


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["2026-11-30T25:00:00", "2026-11-30T00:00:00 x", "yesterday"])
def test_another_bad_time_is_not_told_about_plus_signs(reader, tenant, value):
    response = reader.get(LIST, {"occurred_after": value})
    assert response.json()["error"]["fields"] == {"occurred_after": ["Enter a valid date/time."]}


@pytest.mark.django_db
def test_it_pages_through_every_event_exactly_once_while_new_events_arrive(reader, tenant):
    # Ties on occurred_at straddle page boundaries: the keyset must use the id too.
    originals = events_create(
        tenant_id=tenant.pk,
        count=40,
        per_event=lambda i: {"occurred_at": BASE_TIME + timedelta(seconds=i // 5)},
    )
    seen: list[str] = []
    url, params = LIST, {"page_size": 7}
    pages = 0
    while url:
        response = reader.get(url, params)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert len(body["results"]) <= 7
        seen += [e["id"] for e in body["results"]]
        # New events arrive between pages: a newer one, and some tied with the page's last
        # timestamp (random ids sort on either side of the cursor's id).
        boundary = body["results"][-1]["occurred_at"] if body["results"] else None
        arrivals = [BASE_TIME + timedelta(hours=1)]
        if boundary:
            arrivals += [datetime.fromisoformat(boundary.replace("Z", "+00:00"))] * 4
        events_create(
            tenant_id=tenant.pk,
            count=len(arrivals),
            per_event=lambda i, arrivals=arrivals: {"occurred_at": arrivals[i]},
        )
        url, params, pages = body["next"], None, pages + 1
    assert len(seen) == len(set(seen)), "an event was returned twice"
    assert {str(e.pk) for e in originals} <= set(seen), "an event was skipped"
    assert pages >= 6


@pytest.mark.django_db
@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-00:01",  # after year 9999 in UTC
    ],
)
def test_it_answers_400_naming_the_cursor_for_a_time_outside_utcs_range(reader, tenant, when):
    events_create(tenant_id=tenant.pk, count=2)
    response = reader.get(LIST, {"cursor": _cursor(f"{when}|{ZERO_ID}")})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["cursor"]


@pytest.mark.django_db
def test_a_cursor_time_with_an_offset_means_the_same_instant_in_utc(reader, tenant):
    events = events_create(tenant_id=tenant.pk, count=4)
    third = events[2]  # newest first: the page after it holds the two oldest
    # Python reads offsets up to ±23:59, PostgreSQL only up to ±15:59: compared in UTC, each
    # is the instant it names, not a 500 (DataError: time zone displacement out of range).
    for offset in ("+20:00", "-23:59", "+14:00", "-15:59"):
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = map(int, offset[1:].split(":"))
        shift = timedelta(hours=hours, minutes=minutes) * sign
        local = (third.occurred_at + shift).replace(tzinfo=None).isoformat()
        response = reader.get(LIST, {"cursor": _cursor(f"{local}{offset}|{third.pk}")})
        assert response.status_code == 200, (offset, response.json())
        assert [e["id"] for e in response.json()["results"]] == [
            str(events[1].pk),
            str(events[0].pk),
        ], offset


@pytest.mark.django_db
def test_it_pages_back_with_the_previous_link(reader, tenant):
    events = events_create(tenant_id=tenant.pk, count=10, occurred_at=BASE_TIME)
    first = reader.get(LIST, {"page_size": 4}).json()
    second = reader.get(first["next"]).json()
    back = reader.get(second["previous"]).json()
    assert [e["id"] for e in back["results"]] == [e["id"] for e in first["results"]]
    newest_first = sorted(events, key=lambda e: e.pk, reverse=True)
    assert [e["id"] for e in second["results"]] == [str(e.pk) for e in newest_first[4:8]]


@pytest.mark.django_db
def test_every_link_the_list_writes_walks_forward_and_back(reader, tenant):
    # Ties on occurred_at across page boundaries, and a last page shorter than the others.
    events = events_create(
        tenant_id=tenant.pk,
        count=11,
        per_event=lambda i: {"occurred_at": BASE_TIME + timedelta(seconds=i // 3)},
    )
    pages, url, params = [], LIST, {"page_size": 3}
    while url:
        body = reader.get(url, params).json()
        pages.append([e["id"] for e in body["results"]])
        url, params = body["next"], None
    newest_first = [str(e.pk) for e in sorted(events, key=lambda e: (e.occurred_at, e.pk))][::-1]
    assert [pk for page in pages for pk in page] == newest_first and len(pages) == 4

    back, url = [], body["previous"]
    while url:
        response = reader.get(url)
        assert response.status_code == 200, response.json()
        body = response.json()
        back.append([e["id"] for e in body["results"]])
        # Walking back, "next" leads forward again to the page just left.
        ahead = reader.get(body["next"]).json()["results"]
        assert [e["id"] for e in ahead] == pages[len(pages) - len(back)]
        url = body["previous"]
    assert back == pages[-2::-1]  # down to the first page, whose previous is null


@pytest.mark.django_db
def test_it_runs_no_count_query_on_the_list(reader, tenant):
    events_create(tenant_id=tenant.pk, count=5)
    with CaptureQueriesContext(connection) as ctx:
        assert reader.get(LIST, {"page_size": 2}).status_code == 200
    assert not [q for q in _event_queries(ctx) if "COUNT(" in q.upper()]


@pytest.mark.django_db
def test_it_answers_401_without_credentials(api_client):
    response = api_client.get(LIST)
    assert response.status_code == 401
    assert api_client.get(detail_url(uuid.uuid4())).status_code == 401


@pytest.mark.django_db
def test_it_answers_403_to_a_key_without_the_read_scope(key_client, tenant):
    [event] = events_create(tenant_id=tenant.pk, count=1)
    ingest_only = key_client(scopes=("ingest",))
    assert ingest_only.get(LIST).status_code == 403
    assert ingest_only.get(detail_url(event.pk)).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [("ingest",), ("read",), ("ingest", "read")])
def test_a_method_the_url_does_not_serve_is_405_whatever_the_keys_scopes(key_client, scopes):
    client = key_client(scopes=scopes)
    for method, url in [
        ("put", LIST),
        ("delete", LIST),
        ("patch", detail_url(uuid.uuid4())),
        ("delete", detail_url(uuid.uuid4())),
        ("post", detail_url(uuid.uuid4())),
    ]:
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 405, (method, url, response.content)
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert client.options(LIST).status_code == 200


@pytest.mark.django_db
def test_it_answers_403_when_a_tenant_asks_for_another_tenants_events(reader, tenant, other_tenant):
    events_create(tenant_id=other_tenant.pk, count=1)
    response = reader.get(LIST, {"tenant": "globex"})
    assert response.status_code == 403
    # The reason, not DRF's generic "You do not have permission to perform this action."
    assert response.json()["error"]["message"] == (
        f"You may only use your own tenant's events: tenant={tenant.slug}, or leave it out."
    )
    assert reader.get(LIST, {"tenant": "no-such-tenant"}).status_code == 403


@pytest.mark.django_db
def test_it_accepts_the_callers_own_tenant_slug(reader, tenant):
    events_create(tenant_id=tenant.pk, count=2)
    response = reader.get(LIST, {"tenant": "acme"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 2


# --- detail ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_returns_one_event_and_serves_the_second_read_from_redis(reader, tenant):
    [event] = events_create(tenant_id=tenant.pk, count=1)
    first = reader.get(detail_url(event.pk))
    assert first.status_code == 200
    assert first.json()["id"] == str(event.pk)
    assert cache.get(event_cache_key(tenant_id=tenant.pk, event_id=event.pk)) is not None

    with CaptureQueriesContext(connection) as ctx:
        second = reader.get(detail_url(event.pk))
    assert second.status_code == 200
    assert second.json() == first.json()
    assert _event_queries(ctx) == []


@pytest.mark.django_db
def test_it_answers_404_for_another_tenants_event_even_when_it_is_cached(
    reader, key_client, tenant, other_tenant
):
    [theirs] = events_create(tenant_id=other_tenant.pk, count=1)
    outsider = key_client(scopes=("read",), for_tenant=other_tenant)
    assert outsider.get(detail_url(theirs.pk)).status_code == 200  # now in their cache
    response = reader.get(detail_url(theirs.pk))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert reader.get(detail_url(uuid.uuid4())).status_code == 404


@pytest.mark.django_db
def test_it_refuses_list_parameters_on_the_detail(reader, tenant):
    [event] = events_create(tenant_id=tenant.pk, count=1)
    response = reader.get(detail_url(event.pk), {"severity": "info"})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["severity"]


@pytest.mark.django_db
def test_it_finds_an_event_by_its_id_in_upper_case(reader, tenant):
    [event] = events_create(tenant_id=tenant.pk, count=1)
    response = reader.get(detail_url(str(event.pk).upper()))
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(event.pk)
    mixed = str(event.pk)[:18].upper() + str(event.pk)[18:]
    assert reader.get(detail_url(mixed)).json()["id"] == str(event.pk)


@pytest.mark.django_db
def test_an_upper_case_id_shares_the_lower_case_ids_cache_entry(reader, tenant):
    [event] = events_create(tenant_id=tenant.pk, count=1)
    assert reader.get(detail_url(event.pk)).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        assert reader.get(detail_url(str(event.pk).upper())).status_code == 200
    assert _event_queries(ctx) == []


@pytest.mark.django_db
def test_it_answers_404_for_a_malformed_id(reader):
    assert reader.get("/api/v1/audit-events/not-a-uuid").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_it_reads_from_postgresql_when_redis_is_cut(reader, tenant, fault_proxy, mode):
    [event] = events_create(tenant_id=tenant.pk, count=1)
    proxy = fault_proxy("127.0.0.1", 6379)
    proxy.set_mode(mode)
    dead_redis = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{proxy.port}/5"}
    }
    with override_settings(CACHES=dead_redis):
        assert caches["default"].get("anything") is None  # swallowed, not raised
        for _ in range(2):
            response = reader.get(detail_url(event.pk))
            assert response.status_code == 200
            assert response.json()["hash"] == event.hash


@pytest.mark.django_db
def test_it_counts_cache_hits_and_misses_in_metrics(reader, tenant, client):
    [event] = events_create(tenant_id=tenant.pk, count=1)

    def counter(result):
        text = client.get("/metrics").content.decode()
        line = f'traceledger_event_cache_total{{result="{result}"}}'
        return next((float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)), 0.0)

    hits, misses = counter("hit"), counter("miss")
    reader.get(detail_url(event.pk))
    reader.get(detail_url(event.pk))
    assert counter("miss") == misses + 1
    assert counter("hit") == hits + 1
    assert "traceledger_read_request_seconds_bucket" in client.get("/metrics").content.decode()


def test_it_documents_list_detail_and_export_in_the_openapi_schema():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    listing = paths["/api/v1/audit-events"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {
        "actor_id", "actor_type", "action", "target_type", "target_id", "outcome", "severity",
        "occurred_after", "occurred_before", "page_size", "cursor", "tenant",
    } <= names  # fmt: skip
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert page.endswith("PaginatedAuditEventOutputList")
    detail = paths["/api/v1/audit-events/{id}"]["get"]
    assert detail["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "AuditEventOutput"
    )
    export = paths["/api/v1/audit-events/export"]["get"]
    fmt = next(p for p in export["parameters"] if p["name"] == "format")
    assert fmt["required"] and fmt["schema"]["enum"] == ["csv", "jsonl"]
    assert set(export["responses"]["200"]["content"]) == {"text/csv", "application/x-ndjson"}
    assert "severity" in {p["name"] for p in export["parameters"]}


def test_it_answers_options_on_the_collection_without_a_server_error(tenant, key_client):
    response = key_client(scopes=("ingest", "read")).options("/api/v1/audit-events")
    assert response.status_code == 200
    assert "occurred_at" in response.json()["actions"]["POST"]


@pytest.mark.django_db(transaction=True)
def test_a_purged_event_is_not_served_from_the_cache(reader, key_client, tenant, superuser):
    """Redis keeps documents for a day; a retention purge must end them at once, for the
    tenant's readers and for a cross-tenant reader alike."""
    from datetime import UTC, datetime

    from rest_framework.test import APIClient

    from audit.ledger.services import events_purge
    from audit.tests.ledger_factories import chained_events_create

    old = datetime(2026, 1, 1, tzinfo=UTC)
    [purged, kept] = chained_events_create(tenant_id=tenant.pk, count=2, received_at=old)
    chained_events_create(tenant_id=tenant.pk, count=1, start=5, received_at=datetime.now(UTC))
    admin = APIClient()
    admin.force_authenticate(superuser)
    for client in (reader, admin):
        for event in (purged, kept):
            assert client.get(detail_url(event.pk)).status_code == 200  # now cached

    events_purge(tenant_id=tenant.pk, before=datetime(2026, 1, 2, tzinfo=UTC))

    for client in (reader, admin):
        for event in (purged, kept):
            assert client.get(detail_url(event.pk)).status_code == 404


@pytest.mark.django_db
def test_a_year_before_1000_is_written_with_four_digits_and_pages_on(reader, tenant):
    """strftime writes year 999 as "999": not RFC 3339, and a cursor it cannot read back."""
    from datetime import UTC, datetime

    events_create(
        tenant_id=tenant.pk,
        count=3,
        per_event=lambda i: {"occurred_at": datetime(999, 1, 2, 3, 4, 5, i, tzinfo=UTC)},
    )
    first = reader.get(LIST, {"page_size": 2}).json()
    assert first["results"][0]["occurred_at"] == "0999-01-02T03:04:05.000002Z"
    second = reader.get(first["next"])
    assert second.status_code == 200, second.json()
    assert [e["occurred_at"] for e in second.json()["results"]] == ["0999-01-02T03:04:05.000000Z"]


@pytest.mark.django_db
def test_a_read_whose_access_record_cannot_be_kept_answers_503_not_500(reader, tenant, monkeypatch):
    """Exports are audited (also for API keys); when neither the broker nor the database
    takes that record, the read answers 503 with Retry-After, like the ingest API, not 500."""
    from django.db import OperationalError

    from audit.publisher import BrokerSkipped

    events_create(tenant_id=tenant.pk, count=1)

    def broker_down(payload, **kwargs):
        raise BrokerSkipped("circuit breaker open")

    def database_down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("audit.services.submission.publish_ingest_batch", broker_down)
    monkeypatch.setattr("audit.services.outbox.outbox_message_create", database_down)
    response = reader.get(f"{LIST}/export", {"format": "jsonl"})
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "unavailable"
