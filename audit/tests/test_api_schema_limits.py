"""The OpenAPI document states the limits the API enforces, so that a request valid by the
schema is one the API takes (schemathesis' "schema-valid request rejected" check found
bodies and parameters the schema allowed and the API refused)."""

import re

import pytest
from django.core.cache import cache
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from audit import validation
from audit.api.ledger import VERIFY_MAX_EVENTS
from audit.api.pagination import MAX_PAGE_SIZE
from audit.filters import ACTION_MAX_LENGTH, EMPTY_MEANS_ABSENT
from audit.tests.ledger_factories import chained_events_create
from search.api.views import MAX_QUERY_LENGTH


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()  # verify is a heavy read, limited per minute


def _parameter(schema, path: str, name: str) -> dict:
    [parameter] = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name]
    return parameter["schema"]


@pytest.mark.parametrize(
    ("component", "struct"),
    [
        ("AuditEventInputRequest", validation.EventIn),
        ("ActorInputRequest", validation.Actor),
        ("TargetInputRequest", validation.Target),
    ],
)
def test_unknown_fields_are_refused_by_both(schema, component, struct):
    assert struct.__struct_config__.forbid_unknown_fields
    assert schema["components"]["schemas"][component]["additionalProperties"] is False


@pytest.mark.django_db
def test_the_ingest_body_is_required(schema, key_client):
    assert schema["paths"]["/api/v1/audit-events"]["post"]["requestBody"]["required"] is True
    response = key_client(scopes=("ingest",)).post("/api/v1/audit-events")
    assert response.status_code == 415


def test_a_list_body_holds_one_to_the_validated_maximum(schema):
    body = schema["components"]["schemas"]["AuditEventIngestBodyRequest"]
    [array] = [variant for variant in body["oneOf"] if variant.get("type") == "array"]
    assert (array["minItems"], array["maxItems"]) == (1, validation.MAX_EVENTS_PER_REQUEST)


def test_source_ip_is_an_address(schema):
    source_ip = schema["components"]["schemas"]["AuditEventInputRequest"]["properties"]["source_ip"]
    assert source_ip["anyOf"] == [{"format": "ipv4"}, {"format": "ipv6"}]
    # What Swagger UI's "Try it out" sends: it sent "string", which the API refuses.
    assert validation.source_ip_normalize(source_ip["example"]) == source_ip["example"]


@pytest.mark.parametrize(
    "path", ["/api/v1/audit-events", "/api/v1/audit-events/search", "/api/v1/ledger/checkpoints"]
)
def test_page_size_has_the_bounds_the_pagination_enforces(schema, path):
    assert _parameter(schema, path, "page_size") == {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PAGE_SIZE,
    }


def test_search_text_is_not_blank_and_not_too_long(schema):
    q = _parameter(schema, "/api/v1/audit-events/search", "q")
    assert (q["minLength"], q["maxLength"], q["pattern"]) == (1, MAX_QUERY_LENGTH, r"\S")


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", ["0", str(MAX_PAGE_SIZE + 1)])
def test_the_api_refuses_what_the_schema_excludes(key_client, page_size):
    # The other side of the bounds above: the API really refuses just outside them.
    reader: APIClient = key_client(scopes=("read",))
    response = reader.get("/api/v1/audit-events", {"page_size": page_size})
    assert response.status_code == 400
    assert "page_size" in response.json()["error"]["fields"]
    assert reader.get("/api/v1/audit-events", {"page_size": str(MAX_PAGE_SIZE)}).status_code == 200


FILTERED_READS = [
    "/api/v1/audit-events",
    "/api/v1/audit-events/search",
    "/api/v1/audit-events/export",
]
VERIFY = "/api/v1/ledger/verify"


@pytest.mark.parametrize("path", FILTERED_READS)
def test_the_filters_have_the_limits_their_form_fields_enforce(schema, path):
    assert _parameter(schema, path, "action") == {
        "type": "string",
        "maxLength": ACTION_MAX_LENGTH + 1,
        "pattern": r"^[A-Za-z0-9_.:-]{1,128}\*?$",
    }
    for name, length in [("actor_id", 256), ("target_id", 256), ("actor_type", 64)]:
        assert _parameter(schema, path, name) == {"type": "string", "maxLength": length}
    assert _parameter(schema, path, "target_type") == {"type": "string", "maxLength": 64}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "action",
    ["invoice.update", "invoice.*", "a" * 128, "a" * 128 + "*", "a" * 129, "*", "in voice", "a*b"],
)
def test_an_action_matches_the_schema_exactly_when_the_api_takes_it(schema, key_client, action):
    pattern = _parameter(schema, "/api/v1/audit-events", "action")["pattern"]
    schema_valid = len(action) <= ACTION_MAX_LENGTH + 1 and re.search(pattern, action) is not None

    response = key_client(scopes=("read",)).get("/api/v1/audit-events", {"action": action})

    assert response.status_code == (200 if schema_valid else 400), response.content


def test_verify_states_the_bounds_its_serializer_enforces(schema):
    sequence = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1, "format": "int64"}
    assert _parameter(schema, VERIFY, "from_sequence") == sequence
    assert _parameter(schema, VERIFY, "to_sequence") == sequence
    assert _parameter(schema, VERIFY, "last") == {
        "type": "integer",
        "minimum": 1,
        "maximum": VERIFY_MAX_EVENTS,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("last", "0"),
        ("last", str(VERIFY_MAX_EVENTS + 1)),
        ("from_sequence", "0"),
        ("to_sequence", "0"),
    ],
)
def test_verify_refuses_what_the_schema_excludes(key_client, tenant, name, value):
    chained_events_create(tenant_id=tenant.id, count=2)
    reader = key_client(scopes=("read",))

    response = reader.get(VERIFY, {name: value})

    assert response.status_code == 400
    assert name in response.json()["error"]["fields"]
    inside = "1" if value == "0" else str(VERIFY_MAX_EVENTS)
    assert reader.get(VERIFY, {name: inside}).status_code == 200


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/api/v1/audit-events", ["action", "outcome", "occurred_after", "page_size", "cursor"]),
        ("/api/v1/audit-events/search", ["actor_id", "severity", "page_size", "cursor", "tenant"]),
        ("/api/v1/audit-events/export", ["target_type", "occurred_before", "tenant"]),
        (VERIFY, ["last", "from_sequence", "to_sequence", "tenant"]),
        ("/api/v1/ledger/checkpoints", ["page_size", "cursor", "tenant"]),
    ],
)
def test_the_parameters_say_an_empty_value_is_left_out(schema, path, names):
    parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
    for name in names:
        assert EMPTY_MEANS_ABSENT in parameters[name]["description"], name
        # And the schema agrees: its enum, pattern, date-time or integer would exclude "".
        assert parameters[name]["allowEmptyValue"] is True, name


def test_a_parameter_that_refuses_an_empty_value_does_not_allow_it(schema):
    search = {
        p["name"]: p for p in schema["paths"]["/api/v1/audit-events/search"]["get"]["parameters"]
    }
    export = {
        p["name"]: p for p in schema["paths"]["/api/v1/audit-events/export"]["get"]["parameters"]
    }
    assert "allowEmptyValue" not in search["q"]
    assert "allowEmptyValue" not in export["format"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/audit-events", {"action": "", "outcome": "", "page_size": "", "cursor": ""}),
        ("/api/v1/audit-events/search", {"q": "x", "actor_type": "", "page_size": ""}),
        (VERIFY, {"last": "", "tenant": ""}),
        (VERIFY, {"from_sequence": "", "to_sequence": ""}),
        ("/api/v1/ledger/checkpoints", {"page_size": "", "cursor": ""}),
    ],
)
def test_the_api_reads_an_empty_value_as_the_parameter_left_out(key_client, tenant, path, params):
    # What the descriptions above promise.
    chained_events_create(tenant_id=tenant.id, count=2)

    response = key_client(scopes=("read",)).get(path, params)

    assert response.status_code == 200, response.content
