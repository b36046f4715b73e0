import json
import logging

import pytest
from django.core.signals import request_finished
from django.http import HttpResponse
from django.test import RequestFactory

from traceledger.request_id import RequestIdMiddleware

log = logging.getLogger("traceledger.tests")


@pytest.fixture
def json_log_lines():
    """Capture what the configured JSON handler writes, one parsed object per line."""
    import io

    root = logging.getLogger()
    handler = next(h for h in root.handlers if h.formatter and "Json" in type(h.formatter).__name__)
    stream = io.StringIO()
    old_stream = handler.setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    handler.setStream(old_stream)


@pytest.fixture(autouse=True)
def _request_finished():
    """The middleware is called directly here; a server closes each response, which ends the
    request's id (``request_finished``)."""
    yield
    request_finished.send(sender=None)


def _view(request):
    log.warning("inside the view")
    return HttpResponse("ok")


def test_it_echoes_a_given_request_id_and_puts_it_on_log_lines(json_log_lines):
    request = RequestFactory().get("/", HTTP_X_REQUEST_ID="abc-123")
    response = RequestIdMiddleware(_view)(request)
    assert response["X-Request-ID"] == "abc-123"
    lines = [line for line in json_log_lines() if line["message"] == "inside the view"]
    assert lines and lines[0]["request_id"] == "abc-123"
    assert lines[0]["level"] == "WARNING"


def test_it_generates_a_request_id_when_none_or_a_bad_one_is_given(json_log_lines):
    for headers in ({}, {"HTTP_X_REQUEST_ID": "bad id\nwith newline"}):
        response = RequestIdMiddleware(_view)(RequestFactory().get("/", **headers))
        generated = response["X-Request-ID"]
        assert len(generated) == 32 and generated.isalnum()
        assert json_log_lines()[-1]["request_id"] == generated


def test_it_logs_no_request_id_outside_a_request(json_log_lines):
    log.warning("outside")
    assert json_log_lines()[-1]["request_id"] is None


@pytest.mark.django_db
def test_it_sets_the_header_on_real_responses(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="r-1")["X-Request-ID"] == "r-1"


@pytest.mark.django_db
def test_djangos_own_log_line_of_a_refused_request_carries_its_id(client, json_log_lines):
    response = client.get("/api/v1/audit-events", HTTP_X_REQUEST_ID="r-403")

    assert response.status_code == 401
    lines = [line for line in json_log_lines() if line["message"].startswith("Unauthorized:")]
    assert [line["request_id"] for line in lines] == ["r-403"]


@pytest.mark.django_db
def test_the_id_is_forgotten_once_the_response_is_closed(client, json_log_lines):
    client.get("/healthz", HTTP_X_REQUEST_ID="r-done")
    log.warning("after the request")

    assert json_log_lines()[-1]["request_id"] is None
