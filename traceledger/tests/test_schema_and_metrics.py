import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


def test_it_generates_a_valid_openapi_3_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)  # raises on an invalid document
    assert schema["openapi"].startswith("3.")


def test_the_schema_passes_openapi_spec_validator():
    """drf-spectacular's own check let through ``{"format": "email", "default": ""}`` (a
    default outside its own format), which strict tools refuse the whole schema for."""
    from openapi_spec_validator import validate

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate(json.loads(json.dumps(schema, default=str)))


def test_every_error_response_has_the_error_body_and_429_503_say_when_to_retry():
    """What a client generated from the schema needs: typed errors and Retry-After."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    responses = [
        (path, method, status, response)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        for status, response in operation["responses"].items()
    ]
    errors = [r for r in responses if int(r[2]) >= 400]

    assert len(errors) > 50
    for path, method, status, response in errors:
        body = response["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/Error"}, (path, method, status)
        assert ("Retry-After" in response["headers"]) == (int(status) in (429, 503))
    assert all("X-Request-ID" in r[3]["headers"] for r in responses)
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]


def test_the_answers_no_view_declares_are_in_the_schema():
    """An HTTP QA run: a 406 (an Accept the API cannot answer) on every operation, and
    408/413 on every one with a body, were answered but not documented. The export's 406
    names its own types."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [op for methods in schema["paths"].values() for op in methods.values()]
    for operation in operations:
        statuses = set(operation["responses"])
        name = operation["operationId"]
        assert "406" in statuses, name
        accepts = operation["responses"]["406"]["description"]
        assert ("text/csv" in accepts) == (name == "audit_events_export"), name
        if "requestBody" in operation:
            assert {"408", "413"} <= statuses, name
    assert sum("requestBody" in op for op in operations) == 4


def test_each_operation_offers_the_credentials_that_can_pass_it():
    """POST /users offered API keys too, which are always refused there (403)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    security = {
        (method, path): operation.get("security")
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    both = [{"ApiKeyAuth": []}, {"jwtAuth": []}]

    assert security.pop(("post", "/api/v1/users")) == [{"jwtAuth": []}]
    assert security.pop(("post", "/api/v1/auth/login")) is None
    assert security.pop(("post", "/api/v1/auth/refresh")) is None
    assert security and all(offered == both for offered in security.values()), security


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


def test_failure_series_are_exported_at_zero_before_the_first_failure():
    """An alert on rate(...) needs the series before anything fails; a fresh process (no
    test has counted anything in it) exports each label value at 0."""
    import os
    import subprocess
    import sys

    from testsupport.worker import ROOT

    script = (
        "import django; django.setup(); import audit.metrics, audit.metrics_worker; "
        "from prometheus_client import generate_latest; print(generate_latest().decode())"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["DJANGO_SETTINGS_MODULE"] = "traceledger.settings"
    text = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for series in (
        'traceledger_publish_failures_total{reason="unconfirmed"} 0.0',
        'traceledger_publish_failures_total{reason="skipped"} 0.0',
        'traceledger_events_accepted_total{path="outbox"} 0.0',
        'traceledger_events_dead_lettered_total{reason="refused"} 0.0',
        'traceledger_events_dead_lettered_total{reason="conflict"} 0.0',
        'traceledger_search_index_failures_total{backend="postgresql"} 0.0',
        'traceledger_search_indexed_events_total{backend="postgresql"} 0.0',
        'traceledger_search_index_retries_total{error="OperationalError"} 0.0',
    ):
        assert series in text
