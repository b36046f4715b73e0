"""A logging filter that turns a flood of identical lines into one line per interval.

During an outage some loggers repeat the same record on every request, or several times per
request: django-redis logs each cache call it turned into a miss (``Exception ignored``,
with a full traceback), and the API key look-up logs each stale entry it served. 50
requests made 200 such lines. ``ThrottleFilter`` (attached to those loggers in
``LOGGING``) lets through the first record of a kind, then at most one per ``interval``
seconds, which says how many it stands for (``suppressed``) and carries the exception as
one line (``error``) instead of another traceback.

A *kind* is the logger, level and message template (``record.msg``, before the arguments
are merged in): the arguments and extras, such as the API key prefix, may differ. A kind
quiet for ``interval`` seconds starts afresh: the next outage is logged at once, with its
traceback. State is per process and per filter, like the rate-limit "failing open" line.

Where one template covers several kinds, ``kind_attrs`` names the record attributes (extras)
that tell them apart: ``/readyz`` logs every failed check as ``readiness check failed`` with
``check``, celery beat every failed send with its schedule ``entry``. ``level`` leaves
records below it alone (beat's routine ``Sending due task`` lines). ``ServerErrorThrottleFilter``
throttles ``django.request``'s 5xx lines only.

``skipped_run`` is the periodic tasks' "<task> skipped: <dependency> unavailable" line, and
``one_line`` an exception as its class and message on one line, for such lines.
"""

import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

# The most kinds a filter remembers; message templates are few, but a caller formatting its
# message itself (an f-string) would make every record a kind of its own.
MAX_KINDS = 1000

_filters: "weakref.WeakSet[ThrottleFilter]" = weakref.WeakSet()


@dataclass
class _Kind:
    passed_at: float  # when a record of this kind last went through
    seen_at: float  # when one last arrived, passed or not
    suppressed: int = 0  # dropped since passed_at


class ThrottleFilter(logging.Filter):
    def __init__(
        self,
        interval: float = 30.0,
        name: str = "",
        *,
        kind_attrs: Sequence[str] = (),
        level: int | str = logging.NOTSET,
    ):
        super().__init__(name)
        self.interval = float(interval)
        self.kind_attrs = tuple(kind_attrs)
        self.level = level if isinstance(level, int) else logging.getLevelNamesMapping()[level]
        self._kinds: dict[tuple, _Kind] = {}
        self._lock = threading.Lock()
        _filters.add(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        if record.levelno < self.level:
            return True
        key = self.kind_of(record)
        now = time.monotonic()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None or now - kind.seen_at >= self.interval:
                # The first of an episode goes through whole, traceback included.
                if len(self._kinds) >= MAX_KINDS:
                    self._kinds.clear()
                self._kinds[key] = _Kind(passed_at=now, seen_at=now)
                return True
            kind.seen_at = now
            if now - kind.passed_at < self.interval:
                kind.suppressed += 1
                return False
            suppressed, kind.suppressed, kind.passed_at = kind.suppressed, 0, now
        # Still the same episode: a summary line. One traceback per episode is enough.
        record.suppressed = suppressed
        record.msg = f"{record.msg} (and {suppressed} more in the last {self.interval:g} s)"
        if record.exc_info and record.exc_info[1] is not None:
            record.error = repr(record.exc_info[1])
        record.exc_info = None
        record.exc_text = None
        return True

    def kind_of(self, record: logging.LogRecord) -> tuple:
        extras = tuple(str(getattr(record, attr, None)) for attr in self.kind_attrs)
        return (record.name, record.levelno, str(record.msg), *extras)

    def reset(self) -> None:
        with self._lock:
            self._kinds.clear()


class ServerErrorThrottleFilter(ThrottleFilter):
    """``django.request``: its 5xx lines, throttled per status code and exception type (while
    PostgreSQL is down every read logs ``Service Unavailable: <path>``), and its 429 lines
    (while the workers catch up every post is ``Too Many Requests``: 94 % of an operators'
    drill's WARNINGs, drowning the outage lines); other 4xx lines all kept,
    without the traceback Django attaches to a refusal it raised (``PermissionDenied`` for
    staff opening a page their role does not cover): a client's request refused as designed,
    not a fault in the code, and the line already names it.

    Django logs every response of 400 or more with one template (``"%s: %s"``, the reason and
    the path), and the path is an argument, so the status code tells the kinds apart; a 500's
    exception type too, so a second bug keeps its own traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if not isinstance(status, int):
            return True
        if status < 500:
            record.exc_info = record.exc_text = None
            if status != 429:
                return True
        return super().filter(record)

    def kind_of(self, record: logging.LogRecord) -> tuple:
        exc = record.exc_info[1] if record.exc_info else None
        error = type(exc).__qualname__ if exc is not None else None
        # 429s per path (Django's last argument): one kind for all of them hid a login
        # lockout behind the ingest backlog's refusals for 30 s (regression QA).
        path = record.args[-1] if record.status_code == 429 and record.args else None
        return (*super().kind_of(record), record.status_code, error, path)


def skipped_run(logger: logging.Logger, what: str, dependency: str, exc: BaseException) -> None:
    """A periodic task's run given up while ``dependency`` is away: one WARNING without a
    traceback (the next scheduled run tries again), ``dependency`` in the record so that a
    filter with ``kind_attrs=["dependency"]`` keeps one kind per dependency."""
    logger.warning(
        "%s: %s unavailable (%s); retrying on the next run",
        what,
        dependency,
        one_line(exc),
        extra={"dependency": dependency, "error": repr(exc)},
    )


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Class: message`` on one line, at most ``limit`` characters (psycopg's messages span
    several lines). An exception without a message says what it was raised from: kombu
    raises ``OperationalError('')`` from a socket timeout, which logged as a blank error."""
    message = " ".join(str(exc).split())
    inner = exc.__cause__ or exc.__context__
    if not message and inner is not None:
        message = f"({one_line(inner, limit)})"
    text = f"{type(exc).__name__}: {message}"
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def reset() -> None:
    """Forget every filter's state (tests: each starts with a fresh episode)."""
    for throttle in list(_filters):
        throttle.reset()
