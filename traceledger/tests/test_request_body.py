"""Request bodies reach the views whole: chunked ones sized (or 413), a short one refused,
a slow or stalled one cut at ``TRACELEDGER_BODY_TIMEOUT`` without holding a web thread."""

import http.client
import io
import socket
import time
import urllib.request

import orjson
import pytest

from accounts.services import api_key_create
from audit.tests.ingest_api_support import valid_event
from traceledger.request_body import RequestBodyMiddleware


def _through_middleware(environ: dict) -> dict:
    seen = {}

    def app(environ, start_response):
        seen["length"] = environ.get("CONTENT_LENGTH")
        seen["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        return []

    answered = {}

    def start_response(status, headers):
        answered["status"] = status

    chunks = RequestBodyMiddleware(app)(environ, start_response)
    if answered:
        seen["status"] = answered["status"]
        seen["error"] = orjson.loads(b"".join(chunks))["error"]["code"]
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


def test_a_body_that_ends_before_its_content_length_is_refused_not_handed_on_short():
    """Cut short, a batch can still be valid JSON (one event of two): it was accepted."""
    seen = _through_middleware({"CONTENT_LENGTH": "20", "wsgi.input": io.BytesIO(b"[{}]")})
    assert seen == {"status": "400 Bad Request", "error": "incomplete_body"}


class _Trickle:
    """A client sending one byte per read, each taking a second of the test's clock."""

    def __init__(self, clock: list[float]):
        self.clock = clock

    def read(self, size: int) -> bytes:
        self.clock[0] += 1.0
        return b" "


def test_a_body_that_takes_longer_than_the_timeout_in_all_is_a_408(settings, monkeypatch):
    settings.TRACELEDGER_BODY_TIMEOUT = 5
    clock = [1000.0]
    monkeypatch.setattr("traceledger.request_body.time.monotonic", lambda: clock[0])
    environ = {"CONTENT_LENGTH": "100", "wsgi.input": _Trickle(clock)}
    seen = _through_middleware(environ)
    assert seen == {"status": "408 Request Timeout", "error": "request_timeout"}
    assert clock[0] <= 1000.0 + 6  # stopped at the deadline, not after 100 bytes


def test_a_read_that_times_out_is_a_408():
    class Stalled:
        def read(self, size):
            raise TimeoutError("timed out")

    seen = _through_middleware({"CONTENT_LENGTH": "10", "wsgi.input": Stalled()})
    assert seen == {"status": "408 Request Timeout", "error": "request_timeout"}


class _ServerResponse:
    """Stands in for gunicorn's ``Response``, whose bound ``start_response`` it is given."""

    def __init__(self):
        self.status, self.closing = None, False

    def start_response(self, status, headers):
        self.status = status

    def force_close(self):
        self.closing = True


class _TimesOut:
    def read(self, size):
        raise TimeoutError("timed out")


@pytest.mark.parametrize(
    ("body", "status", "closing"),
    [
        (io.BytesIO(b"[{}]"), "400 Bad Request", True),  # ends before its Content-Length
        (_TimesOut(), "408 Request Timeout", True),
        (io.BytesIO(b"[{}]" * 5), "202 Accepted", False),  # whole: the view answers
    ],
)
def test_a_refused_body_closes_the_connection(body, status, closing):
    """The rest of a refused body is unread: the connection cannot carry another request,
    and the answer must not say keep-alive (gunicorn's default for HTTP/1.1)."""
    server = _ServerResponse()

    def app(environ, start_response):
        start_response("202 Accepted", [])
        return []

    RequestBodyMiddleware(app)({"CONTENT_LENGTH": "20", "wsgi.input": body}, server.start_response)

    assert (server.status, server.closing) == (status, closing)


def _stalled_post(port: int, key: str) -> socket.socket:
    """An ingest POST whose headers announce 100 bytes, then 3 of them, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /api/v1/audit-events HTTP/1.1\r\nHost: localhost\r\n"
        + f"Authorization: Api-Key {key}\r\n".encode()
        + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[{"'
    )
    return sock


@pytest.mark.integration
def test_stalled_bodies_are_cut_at_the_timeout_and_hold_no_web_thread(gunicorn_with, tenant):
    """Without the deadline each such client held a thread for good: with more of them than
    the worker's 4 threads, nothing answered any more, /healthz included."""
    _, key = api_key_create(tenant=tenant, name="stalled", scopes=["ingest"])
    port = gunicorn_with(TRACELEDGER_BODY_TIMEOUT="1")
    stalled = [_stalled_post(port, key) for _ in range(8)]
    for answer in _healthz_answered_then_each_408(port, stalled):
        # gunicorn said keep-alive on the HTTP/1.1 request, then closed anyway.
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\nconnection: close" in head and b"keep-alive" not in head, head
        assert b"\r\nX-Request-ID: " in answer


def _healthz_answered_then_each_408(port: int, stalled: list[socket.socket]) -> list[bytes]:
    """/healthz answers while ``stalled`` hang; then each of them gets a 408 and the end of
    its connection. Their answers, the sockets closed."""
    try:
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=15) as health:
            assert health.status == 200
        assert time.monotonic() - started < 15
        answers = []
        for sock in stalled:
            answer = b""
            while chunk := sock.recv(4096):  # then the server closes the connection
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert b'"code":"request_timeout"' in answer
            answers.append(answer)
        return answers
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.integration
def test_stalled_request_heads_are_cut_at_the_timeout_and_hold_no_web_thread(gunicorn_with):
    """Once a byte had arrived, gthread read the rest of a head without a deadline: eight
    clients sending part of one and then nothing left /healthz unanswered (security QA)."""
    port = gunicorn_with(TRACELEDGER_BODY_TIMEOUT="1")
    stalled = []
    for _ in range(8):  # twice the worker's threads
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        stalled.append(sock)
    for answer in _healthz_answered_then_each_408(port, stalled):
        assert b"\r\nConnection: close\r\n" in answer
        assert b"\r\nX-Request-ID: " in answer


def test_the_head_watch_ends_once_the_head_is_parsed_not_with_the_response(monkeypatch):
    """Kept until the response was written, it would cut any request slower than the
    timeout (a big export streams for minutes)."""
    from gunicorn.workers.gthread import ThreadWorker

    from traceledger import stall_watch
    from traceledger.gunicorn_worker import HeadDeadlineThreadWorker

    seen = {}

    def parse_then_handle(self, conn):  # gthread's handle, reduced to its two steps
        seen["reading"] = {w.sock for w in stall_watch._watches}
        return self.handle_request("request", conn)

    def handle_request(self, req, conn):
        seen["handling"] = {w.sock for w in stall_watch._watches}
        return True

    monkeypatch.setattr(ThreadWorker, "handle", parse_then_handle)
    monkeypatch.setattr(ThreadWorker, "handle_request", handle_request)
    worker = HeadDeadlineThreadWorker.__new__(HeadDeadlineThreadWorker)
    with socket.socket() as sock:
        conn = type("Conn", (), {"sock": sock, "client": ("127.0.0.1", 40000)})()

        assert worker.handle(conn) is True

        assert sock in seen["reading"]
        assert sock not in seen["handling"]
        assert sock not in {w.sock for w in stall_watch._watches}


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


def _raw_answer(port: int, request: bytes, *, half_close: bool = False) -> bytes:
    """Send ``request`` on a fresh connection; everything answered until the server closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer
    finally:
        sock.close()


@pytest.mark.integration
def test_a_body_over_the_limit_is_refused_with_connection_close(gunicorn, tenant):
    """Its answer said keep-alive, then gunicorn closed the connection with the rest of the
    body unread: a client's next request on it failed ("Remote end closed connection")."""
    _, key = api_key_create(tenant=tenant, name="big", scopes=["ingest"])
    head = (
        b"POST /api/v1/audit-events HTTP/1.1\r\nHost: localhost\r\n"
        + f"Authorization: Api-Key {key}\r\nContent-Type: application/json\r\n".encode()
    )
    sized = head + b"Content-Length: 200000\r\n\r\n" + b"[" + b" " * 1000
    chunked = (
        head
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (60_000, b" " * 60_000) for _ in range(2))
    )

    for request in (sized, chunked):
        answer = _raw_answer(port=gunicorn, request=request)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"\r\nConnection: close\r\n" in answer, answer[:400]


@pytest.mark.integration
def test_a_chunked_body_that_ends_before_its_last_chunk_is_a_400_not_a_timeout(gunicorn, tenant):
    _, key = api_key_create(tenant=tenant, name="cut", scopes=["ingest"])
    request = (
        b"POST /api/v1/audit-events HTTP/1.1\r\nHost: localhost\r\n"
        + f"Authorization: Api-Key {key}\r\nContent-Type: application/json\r\n".encode()
        + b'Transfer-Encoding: chunked\r\n\r\n5\r\n[{"a"\r\n'
    )

    started = time.monotonic()
    answer = _raw_answer(port=gunicorn, request=request, half_close=True)

    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'"code":"incomplete_body"' in answer
    assert b"The body ended before its last chunk: nothing was accepted." in answer
    assert time.monotonic() - started < 10


@pytest.mark.integration
def test_a_body_dripping_a_byte_at_a_time_is_cut_at_the_timeout_in_all(gunicorn_with, tenant):
    """The socket timeout bounded each recv only: a byte every so often reset it, and eight
    such clients held every thread for as long as they dripped (regression QA)."""
    _, key = api_key_create(tenant=tenant, name="drip", scopes=["ingest"])
    port = gunicorn_with(TRACELEDGER_BODY_TIMEOUT="1")
    body = orjson.dumps([valid_event()])
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        sock.sendall(
            b"POST /api/v1/audit-events HTTP/1.1\r\nHost: localhost\r\n"
            + f"Authorization: Api-Key {key}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break  # cut
            time.sleep(0.2)
            if time.monotonic() - started > 8:
                break
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    finally:
        sock.close()

    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"code":"request_timeout"' in answer
    assert time.monotonic() - started < 8


@pytest.mark.integration
def test_a_transfer_coding_other_than_chunked_is_a_415_like_content_encoding(gunicorn, tenant):
    """gunicorn removes `chunked` and leaves the rest: `gzip, chunked` came through as gzip's
    bytes (a 400 on byte 0x8b), and a plain body labelled so was accepted (API client QA)."""
    _, key = api_key_create(tenant=tenant, name="te", scopes=["ingest"])
    body = orjson.dumps([valid_event()])
    request = (
        b"POST /api/v1/audit-events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        + f"Authorization: Api-Key {key}\r\nContent-Type: application/json\r\n".encode()
        + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )

    answer = _raw_answer(port=gunicorn, request=request)

    assert answer.startswith(b"HTTP/1.1 415 "), answer[:300]
    assert b"Unsupported Transfer-Encoding 'gzip, chunked': send the request body" in answer
