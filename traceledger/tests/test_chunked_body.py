"""Bodies sent with ``Transfer-Encoding: chunked`` reach the views whole (or are 413)."""

import http.client
import io

import orjson
import pytest

from accounts.services import api_key_create
from audit.tests.ingest_api_support import valid_event
from traceledger.chunked_body import ChunkedBodyMiddleware


def _through_middleware(environ: dict) -> dict:
    seen = {}

    def app(environ, start_response):
        seen["length"] = environ.get("CONTENT_LENGTH")
        seen["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        return []

    ChunkedBodyMiddleware(app)(environ, lambda *a: None)
    return seen


def _chunked(body: bytes, **extra) -> dict:
    return {
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input_terminated": True,
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


def test_a_chunked_body_is_handed_on_with_its_length():
    assert _through_middleware(_chunked(b'{"a": 1}')) == {"length": "8", "body": b'{"a": 1}'}


def test_a_chunked_body_is_read_one_byte_past_the_limit_so_django_refuses_it(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10

    assert _through_middleware(_chunked(b"x" * 100)) == {"length": "11", "body": b"x" * 11}


def test_a_stream_the_server_does_not_end_is_left_alone():
    # Without wsgi.input_terminated, reading to the end could wait for the client forever.
    seen = _through_middleware(_chunked(b"{}", **{"wsgi.input_terminated": False}))
    assert seen == {"length": None, "body": b""}


def test_a_sized_body_is_left_alone():
    seen = _through_middleware(_chunked(b'{"a": 1}', CONTENT_LENGTH="2"))
    assert seen == {"length": "2", "body": b'{"'}


def _post_chunked(port: int, key: str, chunks: list[bytes]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(
        "POST",
        "/api/v1/audit-events",
        body=iter(chunks),
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    status, body = response.status, orjson.loads(response.read())
    conn.close()
    return status, body


@pytest.mark.integration
def test_gunicorn_serves_a_chunked_ingest_post_and_refuses_an_oversized_one(gunicorn, tenant):
    _, key = api_key_create(tenant=tenant, name="chunked", scopes=["ingest"])
    body = orjson.dumps(valid_event(event_id="chunked-1"))

    status, answer = _post_chunked(gunicorn, key, [body[:10], body[10:]])
    too_big_status, _ = _post_chunked(gunicorn, key, [b"[" + b" " * 60_000] * 2 + [b"]"])

    assert (status, answer["accepted"]) == (202, 1)
    assert too_big_status == 413
