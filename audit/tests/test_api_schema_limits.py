"""The OpenAPI document states the limits the API enforces, so that a request valid by the
schema is one the API takes (schemathesis' "schema-valid request rejected" check found
bodies and parameters the schema allowed and the API refused)."""

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from audit import validation
from audit.api.pagination import MAX_PAGE_SIZE
from search.api.views import MAX_QUERY_LENGTH


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


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
