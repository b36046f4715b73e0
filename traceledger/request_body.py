"""Request bodies, read whole before Django sees them, within a deadline.

gunicorn serves clients directly here (no buffering proxy is required), which leaves two
problems to the application:

- A body sent with ``Transfer-Encoding: chunked`` (no ``Content-Length``): Django reads
  exactly ``CONTENT_LENGTH`` bytes of a WSGI request, and 0 when it is absent, so a chunked
  body (what many HTTP clients send for a streamed or generated body) arrived as empty: a
  valid event was answered 400 "Malformed JSON", an oversized one too instead of 413. When
  the server says ``wsgi.input_terminated`` (gunicorn does: it de-chunks and ends the stream
  at the last chunk), the body is read up to one byte past the limit and handed on sized;
  past the limit Django refuses it as too big (413).
- A body that arrives slowly or never ends: a gunicorn thread read it without any time
  limit, so a client that sent fewer bytes than its ``Content-Length`` (a bug, a dropped
  link) held the thread for good, and nine of them every thread of the default stack,
  ``/healthz`` included. The whole body must arrive within ``TRACELEDGER_BODY_TIMEOUT``
  (30 s); past that the answer is 408 with ``Connection: close``, and gunicorn closes the
  connection instead of waiting for the rest. A body that ends before its ``Content-Length``
  is a 400, never handed on short (a truncated batch that happened to be valid JSON was
  accepted).

A body larger than the limit by its ``Content-Length`` is left to Django (413, unread).
Outside gunicorn (tests, ``runserver``) there is no socket to bound and the body is read as
it comes.
"""

import contextlib
import io
import logging
import socket
import time

import orjson
from django.conf import settings

from traceledger import stall_watch
from traceledger.request_id import bound_request_id, request_id_for

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


class _Refused(Exception):
    def __init__(self, status: str, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RequestBodyMiddleware:
    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        declared = _content_length(environ)
        if declared is None:
            if not (
                "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
                and environ.get("wsgi.input_terminated")
            ):
                # Without an end the server vouches for, reading to the end could wait for
                # the client for ever: Django reads nothing, as it would have.
                return self.application(environ, start_response)
            want, exact = (limit + 1 if limit is not None else None), False
        elif declared == 0:
            return self.application(environ, start_response)
        elif limit is not None and declared > limit:
            # Django refuses it (413) unread: the rest of the body is still coming, so the
            # connection cannot carry another request. Its answer said keep-alive, gunicorn
            # then closed it anyway, and a client's next pooled request failed
            # ("Remote end closed connection without response").
            _close_after(start_response)
            return self.application(environ, start_response)
        else:
            want, exact = declared, True
        try:
            body = _read(environ, want=want, exact=exact)
        except _Refused as refused:
            return _answer(environ, start_response, refused)
        if want is not None and len(body) >= want and not exact:
            _close_after(start_response)  # past the limit, a chunked body's rest is unread
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)


def _content_length(environ) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None  # gunicorn refuses a malformed one before the application runs


def _read(environ, *, want: int | None, exact: bool) -> bytes:
    stream = environ["wsgi.input"]
    sock = environ.get("gunicorn.socket")
    timeout = settings.TRACELEDGER_BODY_TIMEOUT
    deadline = time.monotonic() + timeout
    parts: list[bytes] = []
    got = 0
    # The socket timeout bounds each recv; a client sending a byte now and then reset it at
    # every one (8 such clients, a byte a second, held every thread for 30 s with a 2 s
    # timeout). The watch bounds the whole read: past it the reading side is shut, the
    # blocked recv returns the end of the stream, and the answer is still a 408.
    watch = stall_watch.watch(sock, timeout, "", how=socket.SHUT_RD) if sock else None
    try:
        while want is None or got < want:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if sock is not None:
                sock.settimeout(remaining)
            chunk = stream.read(READ_SIZE if want is None else min(READ_SIZE, want - got))
            if not chunk:
                if watch is not None and watch.cut:
                    raise TimeoutError
                break
            parts.append(chunk)
            got += len(chunk)
    except OSError as exc:
        # The deadline (TimeoutError); or the body ended early: the client reset or closed
        # the connection, or a chunked body ended before its last chunk (gunicorn's
        # NoMoreData, an IOError).
        if sock is not None:
            # gunicorn would otherwise read the rest of this body before the next request,
            # without a deadline: a shut read side makes that the end of the connection.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        timed_out = isinstance(exc, TimeoutError) or (watch is not None and watch.cut)
        with bound_request_id(request_id_for(environ)):
            logger.warning(
                "request body incomplete after %s of %s bytes: %s",
                got,
                want if exact else "?",
                "timed out" if timed_out else type(exc).__name__,
                extra={"path": environ.get("PATH_INFO", ""), "timeout": timeout},
            )
        if not timed_out:
            # A chunked body's count would be wrong: gunicorn drops the chunk it was reading.
            ended = (
                f"after {got} of the {want} bytes its Content-Length announced"
                if exact
                else ("before its last chunk")
            )
            raise _Refused(
                "400 Bad Request",
                "incomplete_body",
                f"The body ended {ended}: nothing was accepted.",
            ) from exc
        raise _Refused(
            "408 Request Timeout",
            "request_timeout",
            f"The request body did not arrive within {timeout:g} s: nothing was accepted.",
        ) from exc
    finally:
        stall_watch.unwatch(watch)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(None)  # the response is written without this deadline
    if exact and got < want:
        raise _Refused(
            "400 Bad Request",
            "incomplete_body",
            f"The body ended after {got} of the {want} bytes its Content-Length announced: "
            "nothing was accepted.",
        )
    return b"".join(parts)


def _answer(environ, start_response, refused: _Refused):
    from traceledger.api.exceptions import error_body

    # The rest of the body is unread (or never comes): the connection cannot carry another
    # request, and its answer must not say keep-alive.
    _close_after(start_response)
    body = orjson.dumps(error_body(refused.code, refused.message))
    start_response(
        refused.status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("X-Request-ID", request_id_for(environ)),
        ],
    )
    return [body]


def _close_after(start_response) -> None:
    """Have gunicorn answer ``Connection: close`` and close the connection after this answer.

    An application may not send hop-by-hop headers (PEP 3333): gunicorn drops a
    ``Connection`` header it is given and writes its own, ``keep-alive`` for an HTTP/1.1
    request (wsgiref, under ``runserver``, refuses it outright). What gunicorn honours is its
    response's ``force_close()``, and ``start_response`` is that response's bound method.
    Elsewhere (tests, ``runserver``) nothing to do: the server decides.
    """
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if callable(force_close):
        force_close()
