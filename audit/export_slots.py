"""How many exports one web process streams at once (``TRACELEDGER_EXPORTS_PER_PROCESS``).

An export holds a web thread for as long as it streams (seconds to minutes for a big
tenant, longer for a slow client). ``TRACELEDGER_RATELIMIT_HEAVY`` limits how often exports
start, not how many run: eight concurrent exports held every thread of the two gunicorn
processes, and ``/healthz``, reads and ingest went unanswered for as long (a scale review).
A slot is taken before anything is recorded or streamed and given back when the response is
closed, whether it was read to the end, cut off, or never started (Django calls ``close``
on the streamed iterator in every case).
"""

import threading
import weakref
from collections.abc import Callable, Iterator

from django.conf import settings

from traceledger.errors import Overloaded

RETRY_AFTER = 10  # seconds: an export of a big tenant takes about that

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
    """``rows`` holding an export slot until ``close`` (once, however often it is called)."""

    def __init__(self, rows: Iterator[bytes], semaphore: threading.BoundedSemaphore):
        self._rows = rows
        # A backstop for a response thrown away unclosed (a middleware raising after the
        # view returned it): the slot comes back when this is collected. Runs at most once.
        self._release = weakref.finalize(self, semaphore.release)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._rows)

    def close(self) -> None:
        try:
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
    *, record: Callable[[], None], rows: Callable[[], Iterator[bytes]]
) -> SlotRows:
    """Take a slot (or raise ``ExportsBusy`` before anything is recorded), then ``record()``
    the export and make its ``rows()``; the slot goes back if either raises, else when the
    returned rows are closed."""
    semaphore = export_slot_take()
    try:
        record()
        return SlotRows(rows(), semaphore)
    except BaseException:
        semaphore.release()
        raise
