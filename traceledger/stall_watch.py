"""Connections cut when they stall: a request head that never ends, a response nobody reads.

gunicorn's gthread threads read a request's head and write its response blocking, with no
deadline: a client that sent part of a head and then nothing held a thread for good (eight
of them took every thread of the default stack, ``/healthz`` included), and one that stopped
reading a streamed export held a thread, an export slot and a database transaction for as
long as it kept the connection open. The request body has its own deadline
(``traceledger.request_body``).

A watch is a socket and a deadline. One daemon thread per process looks every half second
and shuts down the socket of each watch past its deadline: the blocked ``recv`` or ``send``
returns at once (end of stream, or EPIPE), gunicorn drops the connection quietly, and the
thread is free. A watch that ends in time is removed by its owner.
"""

import contextlib
import logging
import os
import socket
import threading
import time

logger = logging.getLogger(__name__)

CHECK_EVERY = 0.5  # seconds: how late past its deadline a stalled connection may be cut


class Watch:
    __slots__ = ("answer", "cut", "deadline", "how", "sock", "what")

    def __init__(self, sock: socket.socket, seconds: float, what: str, answer: bytes, how: int):
        self.sock, self.what, self.answer, self.how = sock, what, answer, how
        self.deadline = time.monotonic() + seconds
        self.cut = False

    def extend(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds


_lock = threading.Lock()
_watches: set[Watch] = set()
_thread_pid: int | None = None  # a thread does not survive a fork: start one per process


def watch(
    sock: socket.socket,
    seconds: float,
    what: str,
    *,
    answer: bytes = b"",
    how: int = socket.SHUT_RDWR,
) -> Watch:
    """Cut ``sock`` once ``seconds`` pass without ``unwatch`` (or an ``extend``). ``what``
    names the stall in the log line; ``answer`` is sent first, if the socket takes it at once
    (the client may be reading nothing); ``how``: ``SHUT_RD`` ends only the reading (a blocked
    ``recv`` returns the end of the stream), so that its owner can still answer. ``cut`` says
    afterwards whether it happened."""
    global _thread_pid
    new = Watch(sock, seconds, what, answer, how)
    with _lock:
        if _thread_pid != os.getpid():
            _thread_pid = os.getpid()
            threading.Thread(target=_run, name="stall-watch", daemon=True).start()
        _watches.add(new)
    return new


def unwatch(old: Watch | None) -> None:
    if old is not None:
        with _lock:
            _watches.discard(old)


def _run() -> None:
    while True:
        time.sleep(CHECK_EVERY)
        now = time.monotonic()
        with _lock:
            late = [w for w in _watches if w.deadline <= now]
            _watches.difference_update(late)
            # Under the lock (both calls return at once): once ``unwatch`` has returned, its
            # owner has moved on (a head parsed, a request running) and is never cut after.
            for stalled in late:
                _cut(stalled)
        for stalled in late:
            if stalled.what:  # else its owner says it
                logger.warning("%s: connection closed", stalled.what)


def _cut(stalled: Watch) -> None:
    stalled.cut = True
    if stalled.answer:
        with contextlib.suppress(OSError):
            stalled.sock.send(stalled.answer, socket.MSG_DONTWAIT)
    with contextlib.suppress(OSError):
        stalled.sock.shutdown(stalled.how)
