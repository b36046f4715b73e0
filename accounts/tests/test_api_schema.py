"""The OpenAPI document of the accounts endpoints."""

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def paths():
    return SchemaGenerator().get_schema(request=None, public=True)["paths"]


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/users"])
def test_it_documents_the_503_of_an_unreachable_database(paths, path):
    """The exception handler answers 503 with Retry-After when PostgreSQL is down."""
    response = paths[path]["post"]["responses"]["503"]
    assert "Retry-After" in response["description"]
