import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


def test_it_generates_a_valid_openapi_3_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)  # raises on an invalid document
    assert schema["openapi"].startswith("3.")


@pytest.mark.django_db
def test_it_serves_the_schema_and_swagger_ui(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"openapi: 3" in response.content
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_it_serves_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# TYPE process_cpu_seconds_total counter" in text or "python_info" in text


@pytest.mark.django_db
def test_it_gives_a_readable_message_for_a_bad_bearer_token(client):
    response = client.get("/api/v1/audit-events", HTTP_AUTHORIZATION="Bearer not-a-jwt")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "token_not_valid"
    assert "ErrorDetail" not in error["message"] and error["message"]
