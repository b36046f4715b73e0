"""The OpenAPI document of the accounts endpoints."""

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture(scope="module")
def paths(schema):
    return schema["paths"]


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/users"])
def test_it_documents_the_503_of_an_unreachable_database(paths, path):
    """The exception handler answers 503 with Retry-After when PostgreSQL is down."""
    response = paths[path]["post"]["responses"]["503"]
    assert "Retry-After" in response["description"]


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/users"])
def test_its_request_bodies_refuse_unknown_fields_as_the_api_does(schema, paths, path):
    """A body the schema allows is one the API takes: an extra property is a 400."""
    ref = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert body["additionalProperties"] is False
