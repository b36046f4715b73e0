"""The query string's rules on every endpoint that reads one (audit.filters.reject_unknown_params):
a parameter the endpoint does not know, one given more than once, an integer that is not plain
ASCII digits, and ``format`` (DRF's renderer override, off) are each a 400 naming it."""

import orjson
import pytest
from django.core.cache import cache
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from audit.api.pagination import EventCursorPagination
from audit.tests.factories import events_create
from audit.tests.ingest_api_support import URL as COLLECTION
from audit.tests.ingest_api_support import post_json, valid_event
from audit.tests.ledger_factories import chained_events_create

SEARCH = "/api/v1/audit-events/search"
EXPORT = "/api/v1/audit-events/export"
VERIFY = "/api/v1/ledger/verify"
CHECKPOINTS = "/api/v1/ledger/checkpoints"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()  # our own Redis db (REDIS_URL)


@pytest.fixture
def reader(key_client):
    return key_client(scopes=("read",))


def _detail(tenant) -> str:
    [event] = events_create(tenant_id=tenant.pk, count=1)
    return f"/api/v1/audit-events/{event.pk}"


def _assert_400_naming(response, field):
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]
    return error["fields"][field][0]


# Each endpoint with the parameters it needs to answer 200 otherwise.
READS = {
    "list": (COLLECTION, {}),
    "search": (SEARCH, {"q": "payroll"}),
    "export": (EXPORT, {"format": "csv"}),
    "verify": (VERIFY, {}),
    "checkpoints": (CHECKPOINTS, {}),
}


@pytest.mark.parametrize("endpoint", list(READS))
def test_it_answers_200_to_the_base_parameters(reader, tenant, endpoint):
    chained_events_create(tenant_id=tenant.pk, count=2)
    url, base = READS[endpoint]
    assert reader.get(url, base).status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "name", "values"),
    [
        ("list", "actor_id", ["a1", "a2"]),
        ("list", "tenant", ["acme", "acme"]),
        ("list", "page_size", ["5", "10"]),
        ("list", "cursor", ["x", "y"]),
        ("list", "occurred_after", ["2026-01-01T00:00:00Z", ""]),
        ("search", "q", ["payroll", "invoice"]),
        ("search", "action", ["invoice.*", "user.*"]),
        ("export", "format", ["csv", "jsonl"]),
        ("export", "severity", ["info", "info"]),
        ("verify", "last", ["3", "2"]),
        ("checkpoints", "page_size", ["1", "2"]),
    ],
)
def test_it_refuses_a_parameter_given_more_than_once(reader, tenant, endpoint, name, values):
    chained_events_create(tenant_id=tenant.pk, count=2)
    url, base = READS[endpoint]
    response = reader.get(url, {**base, name: values})
    assert "more than once" in _assert_400_naming(response, name)


def test_the_detail_refuses_a_repeated_tenant(reader, tenant):
    response = reader.get(_detail(tenant), {"tenant": ["acme", "acme"]})
    assert "more than once" in _assert_400_naming(response, "tenant")


NOT_PLAIN_DIGITS = ["1_0", "+5", " 5", "5 ", "\u0665", "\uff15", "5.0", "0x5", "--1", "-+1", "- 1"]


@pytest.mark.parametrize("value", NOT_PLAIN_DIGITS)
@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        ("list", "page_size"),
        ("search", "page_size"),
        ("checkpoints", "page_size"),
        ("verify", "last"),
        ("verify", "from_sequence"),
        ("verify", "to_sequence"),
    ],
)
def test_it_takes_an_integer_only_in_plain_ascii_digits(reader, tenant, endpoint, name, value):
    chained_events_create(tenant_id=tenant.pk, count=6)
    url, base = READS[endpoint]
    _assert_400_naming(reader.get(url, {**base, name: value}), name)


@pytest.mark.parametrize("value", NOT_PLAIN_DIGITS)
def test_the_pagination_itself_takes_only_plain_ascii_digits(value):
    """Also when a view did not run reject_unknown_params first."""
    request = Request(APIRequestFactory().get("/", {"page_size": value}))
    with pytest.raises(ValidationError) as refused:
        EventCursorPagination().get_page_size(request)
    assert list(refused.value.detail) == ["page_size"]


@pytest.mark.parametrize("value", ["0", "-0", "-1", "-5"])
@pytest.mark.parametrize("name", ["last", "from_sequence", "to_sequence"])
def test_verify_gives_a_plain_integer_below_1_the_minimum_message(reader, tenant, name, value):
    message = _assert_400_naming(reader.get(VERIFY, {name: value}), name)
    assert message == "Ensure this value is greater than or equal to 1."


@pytest.mark.parametrize("value", ["-", "-\u0665", *NOT_PLAIN_DIGITS])
def test_verify_calls_anything_else_not_an_integer(reader, tenant, value):
    message = _assert_400_naming(reader.get(VERIFY, {"last": value}), "last")
    assert message == "A valid integer is required."


@pytest.mark.parametrize("value", ["0", "-0", "-1", "501"])
@pytest.mark.parametrize("endpoint", ["list", "search", "checkpoints"])
def test_page_size_out_of_range_names_the_range(reader, tenant, endpoint, value):
    url, base = READS[endpoint]
    message = _assert_400_naming(reader.get(url, {**base, "page_size": value}), "page_size")
    assert message == "Must be an integer from 1 to 500."


@pytest.mark.parametrize(
    ("value", "reasons"),
    [
        ("a" * 200, ["at most 128 characters"]),
        ("a" * 129, ["at most 128 characters"]),
        ("a" * 129 + "*", ["at most 128 characters"]),
        ("in voice", ["Use an action of"]),
        ("*", ["Use an action of"]),
        ("a*b", ["Use an action of"]),
        ("a b" * 50, ["Use an action of", "at most 128 characters"]),
    ],
)
def test_the_action_filter_gives_only_the_reasons_that_apply(reader, tenant, value, reasons):
    response = reader.get(COLLECTION, {"action": value})
    _assert_400_naming(response, "action")
    messages = response.json()["error"]["fields"]["action"]
    assert len(messages) == len(reasons), messages
    assert all(reason in message for reason, message in zip(reasons, messages, strict=True))


@pytest.mark.parametrize("value", ["a" * 128, "a" * 128 + "*"])
def test_the_action_filter_takes_128_characters_and_a_star(reader, tenant, value):
    assert reader.get(COLLECTION, {"action": value}).status_code == 200


def test_it_still_takes_plain_digits_with_leading_zeros(reader, tenant):
    chained_events_create(tenant_id=tenant.pk, count=6)
    assert len(reader.get(COLLECTION, {"page_size": "005"}).json()["results"]) == 5
    assert reader.get(VERIFY, {"last": "03"}).json()["checked"] == 3


@pytest.mark.parametrize("value", ["csv", "jsonl", "json", "api", "xml"])
@pytest.mark.parametrize("endpoint", ["list", "search", "verify", "checkpoints"])
def test_format_is_an_unknown_parameter_not_a_404(reader, tenant, endpoint, value):
    url, base = READS[endpoint]
    response = reader.get(url, {**base, "format": value})
    assert "Unknown query parameter" in _assert_400_naming(response, "format")


@pytest.mark.parametrize("value", ["csv", "json", "api"])
def test_format_is_an_unknown_parameter_on_the_detail(reader, tenant, value):
    _assert_400_naming(reader.get(_detail(tenant), {"format": value}), "format")


@pytest.mark.parametrize(("value", "media_type"), [("csv", "text/csv"), ("jsonl", "x-ndjson")])
def test_the_export_still_reads_format_as_its_own(reader, tenant, value, media_type):
    events_create(tenant_id=tenant.pk, count=1)
    response = reader.get(EXPORT, {"format": value})
    assert response.status_code == 200
    assert media_type in response["Content-Type"]


def test_the_schema_still_takes_format_json(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert orjson.loads(response.content)["openapi"].startswith("3.")


# --- POST: the body is the input; the query string takes tenant= and nothing else -----------


@pytest.fixture
def ingest_client(key_client):
    return key_client(scopes=["ingest"])


def _post(client, query: str):
    return client.generic(
        "POST",
        f"{COLLECTION}?{query}",
        orjson.dumps(valid_event()),
        content_type="application/json",
    )


@pytest.mark.usefixtures("clean_broker")  # without the check, these would publish
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("foo=1", "foo"),
        ("format=csv", "format"),
        ("format=json", "format"),
        ("event_id=x", "event_id"),
        ("tenant=acme&tenant=acme", "tenant"),
    ],
)
def test_a_post_refuses_a_query_parameter_other_than_one_tenant(ingest_client, query, field):
    _assert_400_naming(_post(ingest_client, query), field)


@pytest.mark.usefixtures("clean_broker")
def test_a_post_without_a_query_string_parses_none(ingest_client, monkeypatch):
    def no_parse(*args, **kwargs):
        raise AssertionError("the query string was checked although there was none")

    monkeypatch.setattr("audit.api.ingest.reject_unknown_params", no_parse)
    assert post_json(ingest_client, valid_event()).status_code == 202


@pytest.mark.parametrize("endpoint", ["list", "search", "export"])
@pytest.mark.parametrize(
    ("after", "before", "empty"),
    [
        ("2026-11-30T00:00:00Z", "2026-11-28T00:00:00Z", True),
        ("2026-11-30T00:00:00Z", "2026-11-30T00:00:00Z", True),  # before is exclusive
        ("2026-11-30T01:00:00+01:00", "2026-11-30T00:00:01Z", False),
    ],
)
def test_a_time_range_that_ends_before_it_starts_is_named(
    reader, tenant, endpoint, after, before, empty
):
    """It listed nothing with a 200, read as "no such events" rather than as a slip."""
    url, base = READS[endpoint]

    response = reader.get(url, {**base, "occurred_after": after, "occurred_before": before})

    if not empty:
        assert response.status_code == 200
        return
    message = _assert_400_naming(response, "occurred_before")
    assert message.startswith("Must be later than occurred_after (2026-11-30T00:00:00+00:00)")
