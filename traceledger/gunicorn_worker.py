"""gunicorn's gthread worker with a deadline on the request head (``gunicorn.conf.py``).

Once a byte of a request has arrived, gthread reads the rest of its head blocking, with no
time limit: eight clients that sent ``GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n`` and then
nothing held every thread of the default stack (2 workers x 4 threads) until they hung up.
Here a thread taking up a connection watches it (``traceledger.stall_watch``) until the
head is parsed (``handle_request``, which gunicorn calls right after): past
``TRACELEDGER_BODY_TIMEOUT`` the client gets a 408 and the connection is closed. The watch
starts when the thread takes the connection up, which for a new one includes gthread's wait
of up to 5 s for its first byte (after which gthread hands an idle connection back to its
poller): with a timeout under 5 s, a client that connects and waits is cut too. The body
has its own deadline of the same length (``traceledger.request_body``).
"""

import threading
import uuid

from gunicorn.workers.gthread import ThreadWorker

from traceledger import stall_watch

_current = threading.local()  # the watch of the connection this thread is reading


def _timeout_answer(seconds: float) -> bytes:
    body = (
        '{"error":{"code":"request_timeout","message":"The request head did not arrive '
        f'within {seconds:g} s: nothing was accepted."}}}}'
    ).encode()
    return (
        b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        # A fresh id, as for any response (README): the request never got one of its own.
        + f"X-Request-ID: {uuid.uuid4().hex}\r\n".encode()
        + b"Connection: close\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class HeadDeadlineThreadWorker(ThreadWorker):
    def handle(self, conn):
        from django.conf import settings  # configured: the application is loaded by now

        seconds = settings.TRACELEDGER_BODY_TIMEOUT
        _current.watch = stall_watch.watch(
            conn.sock,
            seconds,
            f"request head from {conn.client[0] if conn.client else '?'} incomplete after "
            f"{seconds:g} s",
            answer=_timeout_answer(seconds),
        )
        try:
            return super().handle(conn)
        finally:
            _head_complete()

    def handle_request(self, req, conn):
        _head_complete()  # the head is parsed; the body and the response are not bounded here
        return super().handle_request(req, conn)


def _head_complete() -> None:
    stall_watch.unwatch(getattr(_current, "watch", None))
    _current.watch = None
