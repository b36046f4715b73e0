"""How many exports one web process streams at once (``TRACELEDGER_EXPORTS_PER_PROCESS``).

An export holds a web thread for as long as it streams (seconds to minutes for a big
tenant, longer for a slow client). ``TRACELEDGER_RATELIMIT_HEAVY`` limits how often exports
start, not how many run: eight concurrent exports held every thread of the two gunicorn
processes, and ``/healthz``, reads and ingest went unanswered for as long (a scale review).
A slot is taken before anything is recorded or streamed and given back when the response is
closed, whether it was read to the end, cut off, or never started (Django calls ``close``
on the streamed iterator in every case).

A client that stops reading would hold its slot, its thread and a database transaction (the
rows come from a server-side cursor) for as long as it kept the connection open: four such
clients refused every other export of every tenant (security QA). Under gunicorn the
connection is closed once the client has taken no part for
``TRACELEDGER_EXPORT_STALL_TIMEOUT`` seconds (``traceledger.stall_watch``); the write then
fails, the response is closed, and the slot comes back.
"""

import threading
import weakref
from collections.abc import Callable, Iterator

from django.conf import settings

from traceledger import stall_watch
from traceledger.errors import Overloaded

RETRY_AFTER = 10  # seconds: an export of a big tenant takes about that
SLICE = 16 * 1024  # bytes handed to the server at a time while a stalled client is watched

_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None


def _semaphore() -> threading.BoundedSemaphore:
    global _slots
    with _lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(settings.TRACELEDGER_EXPORTS_PER_PROCESS)
        return _slots


class ExportsBusy(Overloaded):
    def __init__(self):
        super().__init__(
            f"{settings.TRACELEDGER_EXPORTS_PER_PROCESS} export(s) are already streaming from "
            "this server process; retry shortly.",
            retry_after=RETRY_AFTER,
        )


class SlotRows:
    """``rows`` holding an export slot until ``close`` (once, however often it is called);
    with ``sock`` (gunicorn's), the connection is cut when the client stalls."""

    def __init__(self, rows: Iterator[bytes], semaphore: threading.BoundedSemaphore, sock=None):
        self._rows = rows
        self._sock = sock
        self._watch: stall_watch.Watch | None = None
        # A backstop for a response thrown away unclosed (a middleware raising after the
        # view returned it): the slot comes back when this is collected. Runs at most once.
        self._release = weakref.finalize(self, semaphore.release)

    def __iter__(self) -> Iterator[bytes]:
        if self._sock is None:
            yield from self._rows
            return
        seconds = settings.TRACELEDGER_EXPORT_STALL_TIMEOUT
        # gunicorn asks for the next part once the client has taken the one before. A part
        # of 500 rows is ~300 KB: a client reading 64 KB/s took longer than a 3 s timeout
        # over one and was cut while reading. Handed on in slices of SLICE bytes, a
        # client is cut only below SLICE bytes per timeout (~270 B/s at 60 s).
        self._watch = stall_watch.watch(
            self._sock, seconds, f"export not read by the client for {seconds:g} s"
        )
        for part in self._rows:
            for start in range(0, len(part), SLICE):
                self._watch.extend(seconds)
                yield part[start : start + SLICE]

    def close(self) -> None:
        try:
            stall_watch.unwatch(self._watch)
            close = getattr(self._rows, "close", None)
            if close is not None:
                close()
        finally:
            self._release()


def export_slot_take() -> threading.BoundedSemaphore:
    """A slot, or ``ExportsBusy`` (429 with ``Retry-After`` on the API) when none is free."""
    semaphore = _semaphore()
    if not semaphore.acquire(blocking=False):
        raise ExportsBusy()
    return semaphore


def export_rows_in_slot(
    *, record: Callable[[], None], rows: Callable[[], Iterator[bytes]], request_meta: dict
) -> SlotRows:
    """Take a slot (or raise ``ExportsBusy`` before anything is recorded), then ``record()``
    the export and make its ``rows()``; the slot goes back if either raises, else when the
    returned rows are closed. ``request_meta``: the request's WSGI environ (its gunicorn
    socket, when there is one, is cut if the client stops reading)."""
    semaphore = export_slot_take()
    try:
        record()
        return SlotRows(rows(), semaphore, request_meta.get("gunicorn.socket"))
    except BaseException:
        semaphore.release()
        raise
