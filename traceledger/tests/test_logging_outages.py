"""During an outage a process logs one line of a kind per 30 s (README, "When a dependency
fails"): celery beat's failed sends, /readyz's failed checks, reads answered 503. Each test
goes through the loggers as LOGGING configures them."""

import json
import logging
import os
import socket
import subprocess
import sys
import types

import pytest
from celery.beat import ScheduleEntry, Scheduler
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from django.utils.log import log_response
from kombu import Connection, Producer

from testsupport.worker import ROOT
from traceledger import health, log_throttle
from traceledger.api.exceptions import exception_handler
from traceledger.celery import app


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock only: Celery, kombu and the test client keep the real one."""
    fake = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(log_throttle, "time", types.SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def _lines(caplog, logger: str, level=logging.WARNING) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno >= level]


def _json(record: logging.LogRecord) -> str:
    """The line our console handler would write."""
    [formatter] = [
        h.formatter
        for h in logging.getLogger().handlers
        if type(h.formatter).__name__ == "JsonFormatter"
    ]
    return formatter.format(record)


# --- celery beat, RabbitMQ down ------------------------------------------------------------


@pytest.fixture
def refused_producer():
    """A producer on a port nothing listens on: each send fails as with RabbitMQ down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection = Connection(f"amqp://guest:guest@127.0.0.1:{port}//", connect_timeout=1)
    yield Producer(connection, auto_declare=False)
    connection.release()


def _send(scheduler: Scheduler, name: str, producer, **overrides) -> None:
    entry = ScheduleEntry(
        name=name, app=app, **{**settings.CELERY_BEAT_SCHEDULE[name], **overrides}
    )
    scheduler.apply_entry(entry, producer=producer)


def test_beat_logs_a_failed_send_as_one_line_per_entry_and_interval(
    caplog, clock, refused_producer
):
    scheduler = Scheduler(app=app, lazy=True)
    _send(scheduler, "audit-relay-outbox", refused_producer)
    _send(scheduler, "search-sweep-index", refused_producer)
    for _ in range(2):  # relay every 10 s: counted, not logged
        clock.now += 10
        _send(scheduler, "audit-relay-outbox", refused_producer)
    clock.now += 10
    _send(scheduler, "audit-relay-outbox", refused_producer)

    lines = _lines(caplog, "celery.beat", logging.WARNING)
    # Expected while RabbitMQ is away and healed by the next run: not an ERROR.
    assert {r.levelname for r in lines} == {"WARNING"}
    assert [r.entry for r in lines] == [
        "audit-relay-outbox",
        "search-sweep-index",
        "audit-relay-outbox",
    ]
    first, _, summary = lines
    assert first.getMessage().startswith(
        "Message Error: Couldn't apply scheduled task audit-relay-outbox: "
    )
    assert summary.getMessage().endswith("(and 2 more in the last 30 s)")
    assert summary.suppressed == 2
    for record in lines:
        # A broker down is not a bug: no traceback, not even the first time; the cause's
        # type and message instead.
        assert record.exc_info is None
        assert record.error.startswith(("OperationalError: ", "ConnectionRefusedError: "))
        line = _json(record)
        assert "\n" not in line and len(line) < 600, line
        assert "exc_info" not in json.loads(line)


def test_beat_keeps_the_traceback_of_an_error_that_is_not_the_broker(caplog, refused_producer):
    scheduler = Scheduler(app=app, lazy=True)
    # An argument the task does not take: Celery refuses it before connecting (TypeError).
    _send(scheduler, "audit-relay-outbox", refused_producer, kwargs={"unknown": 1})
    [record] = _lines(caplog, "celery.beat", logging.ERROR)
    assert record.exc_info is not None
    assert record.getMessage().startswith("Message Error: Couldn't apply scheduled task ")
    assert "\n" not in record.getMessage()  # the message itself; the traceback follows


def test_beat_logs_its_reconnection_attempts_once_per_interval(caplog, clock):
    # celery.beat.Scheduler._ensure_connected's errback, while RabbitMQ refuses beat's
    # (re)connection: 2, 4, 6 ... s apart.
    beat = logging.getLogger("celery.beat")
    for interval in (2.0, 4.0, 6.0, 8.0, 10.0, 12.0):
        beat.error("beat: Connection error: %s. Trying again in %s seconds...", "refused", interval)
        clock.now += interval
    assert [r.getMessage() for r in _lines(caplog, "celery.beat")] == [
        "beat: Connection error: refused. Trying again in 2.0 seconds...",
        "beat: Connection error: refused. Trying again in 12.0 seconds... "
        "(and 4 more in the last 30 s)",
    ]


def test_beat_leaves_its_routine_lines_alone(caplog, clock):
    beat = logging.getLogger("celery.beat")
    for _ in range(3):
        beat.info("Scheduler: Sending due task %s (%s)", "audit-relay-outbox", "x")
    assert len(_lines(caplog, "celery.beat", logging.INFO)) == 3


# --- /readyz, Redis down -------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_logs_a_failed_check_once_per_interval_per_check(
    client, caplog, clock, fault_proxy, monkeypatch
):
    # The database (readiness needs it) and the cache: the broker's probe is not the subject.
    checks = {name: health.CHECKS[name] for name in ("database", "cache")}
    monkeypatch.setattr(health, "CHECKS", checks)
    proxy = fault_proxy("127.0.0.1", 6379)
    proxy.set_mode("refuse")
    cache = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{proxy.port}/0"}
    }
    with override_settings(CACHES=cache):
        for _ in range(5):
            assert client.get("/readyz").json()["checks"]["cache"] == "down"
            clock.now += 5
        clock.now += 10
        client.get("/readyz")

    lines = [r for r in _lines(caplog, "traceledger.health") if r.check == "cache"]
    assert [r.getMessage() for r in lines] == [
        "readiness check failed",
        "readiness check failed (and 4 more in the last 30 s)",
    ]
    # Another check failing meanwhile is a kind of its own.
    readiness_log = logging.getLogger("traceledger.health")
    readiness_log.warning("readiness check failed", extra={"check": "broker", "error": "x"})
    assert _lines(caplog, "traceledger.health")[-1].check == "broker"


# --- the worker's consumer, RabbitMQ away --------------------------------------------------


def test_the_workers_cannot_connect_line_is_throttled(caplog, clock):
    from celery.worker.consumer.consumer import CONNECTION_ERROR

    consumer_log = logging.getLogger("celery.worker.consumer.consumer")
    for _ in range(6):  # Celery's retries: 2, 4, 6 ... s apart
        consumer_log.error(
            CONNECTION_ERROR, "amqp://guest:**@localhost:5672//", "refused", "Trying again"
        )
        clock.now += 4
    clock.now += 10
    consumer_log.error(CONNECTION_ERROR, "amqp://…", "refused", "Trying again")

    lines = _lines(caplog, "celery.worker.consumer.consumer", logging.ERROR)
    assert len(lines) == 2
    assert lines[-1].getMessage().endswith("(and 5 more in the last 30 s)")


def test_the_dlq_depth_line_is_throttled_and_drain_failures_are_not(caplog, clock, monkeypatch):
    """The admin reads the DLQ depth on every page view: 3 lines in 6 s during an outage."""
    from audit.services import dead_letters
    from audit.services.dead_letters import draining

    with socket.socket() as sock:  # a port nothing listens on: RabbitMQ down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(draining, "_broker_url", lambda: f"amqp://guest:guest@127.0.0.1:{port}//")
    for _ in range(3):  # page views
        assert dead_letters.dlq_depth() is None
        clock.now += 2
    clock.now += 25  # 31 s after the first line, still the same outage
    assert dead_letters.dlq_depth() is None
    # A message that could not be stored is news each time, whatever the outage does.
    for n in range(2):
        logging.getLogger("audit.services.dead_letters").error("%d dead letter(s) ... left", n)

    depth = [r.getMessage() for r in caplog.records if "cannot read the depth" in r.getMessage()]
    assert len(depth) == 2, depth
    assert depth[0].startswith("cannot read the depth of audit.ingest.dlq: ")
    assert depth[1].endswith("(and 2 more in the last 30 s)")
    assert len(_lines(caplog, "audit.services.dead_letters", logging.ERROR)) == 2


# --- reads answered 503, PostgreSQL down ---------------------------------------------------


def _read_answered_503(request) -> None:
    """What a read does while PostgreSQL is down: the API's handler answers 503, then Django
    logs the response."""
    response = exception_handler(OperationalError("connection refused"), {"request": request})
    assert response.status_code == 503
    log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)


def test_reads_answered_503_log_one_line_of_each_kind_per_interval(caplog, clock):
    factory = RequestFactory()
    for n in range(10):
        _read_answered_503(factory.get(f"/api/v1/audit-events/{n}"))
        clock.now += 2
    clock.now += 15
    _read_answered_503(factory.get("/api/v1/audit-events/last"))

    assert [r.getMessage() for r in _lines(caplog, "traceledger.api.exceptions")] == [
        "database unavailable, answering 503: OperationalError",
        "database unavailable, answering 503: OperationalError (and 9 more in the last 30 s)",
    ]
    assert [r.getMessage() for r in _lines(caplog, "django.request")] == [
        "Service Unavailable: /api/v1/audit-events/0",
        "Service Unavailable: /api/v1/audit-events/last (and 9 more in the last 30 s)",
    ]


def test_django_request_throttles_each_5xx_status_and_429s_apart_and_leaves_4xx_alone(
    caplog, clock
):
    """429s too: while the workers caught up, every post was one (94 % of the WARNINGs of an
    operators' drill, drowning the outage lines)."""
    request = RequestFactory().get("/api/v1/audit-events/x")
    for status in (503, 503, 500, 500, 429, 429, 429, 404, 404, 404, 400, 400):
        log_response("%s: %s", "x", request.path, response=HttpResponse(status=status))
    # A 429 elsewhere is a kind of its own: a login lockout is not hidden behind the backlog's.
    log_response("%s: %s", "x", "/api/v1/auth/login", response=HttpResponse(status=429))
    lines = _lines(caplog, "django.request")
    assert [r.status_code for r in lines] == [503, 500, 429, 404, 404, 404, 400, 400, 429]
    assert lines[-1].getMessage() == "x: /api/v1/auth/login"


def test_a_refused_request_is_logged_without_the_traceback_of_its_refusal(caplog):
    """Staff opening an admin page their role does not cover: Django raises PermissionDenied
    and logged its whole stack with the 403 line, at every click."""
    request = RequestFactory().get("/admin/accounts/user/")
    try:
        raise PermissionDenied
    except PermissionDenied as exc:
        refused = exc
    log_response(
        "Forbidden (Permission denied): %s",
        request.path,
        response=HttpResponse(status=403),
        request=request,
        exception=refused,
    )
    [line] = _lines(caplog, "django.request")
    assert line.getMessage() == "Forbidden (Permission denied): /admin/accounts/user/"
    assert line.exc_info is None


# --- Django's own handlers -----------------------------------------------------------------


def test_django_loggers_reach_the_json_handler_only():
    for name in ("django", "django.request", "django.server", "django.security.csrf"):
        handlers, logger = [], logging.getLogger(name)
        while logger:
            # pytest's capture handlers on the root aside
            handlers += [h for h in logger.handlers if not type(h).__module__.startswith("_py")]
            logger = logger.parent if logger.propagate else None
        assert [type(h.formatter).__name__ for h in handlers] == ["JsonFormatter"], name


def test_under_debug_a_django_request_line_is_printed_once_as_json():
    code = (
        "import logging; logging.getLogger('django.request').warning("
        "'Not Found: %s', '/nowhere', extra={'status_code': 404})"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["message"] == "Not Found: /nowhere"
