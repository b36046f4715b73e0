"""ThrottleFilter: an outage costs one log line per kind and interval, not one per call."""

import logging
import sys

import pytest
from django.conf import settings

from testsupport.clock import fake_monotonic
from traceledger import log_throttle
from traceledger.log_throttle import ThrottleFilter


@pytest.fixture
def clock(monkeypatch):
    return fake_monotonic(monkeypatch, log_throttle)


def _record(msg="Exception ignored", *, name="traceledger.cache", level=logging.ERROR, exc=None):
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except Exception:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, (), exc_info)


def test_it_passes_the_first_record_of_a_kind_whole_then_none_within_the_interval(clock):
    throttle = ThrottleFilter(interval=30)
    first = _record(exc=ConnectionError("refused"))
    assert throttle.filter(first) is True
    assert first.exc_info is not None  # the outage's one traceback
    for _ in range(199):
        clock.now += 0.1
        assert throttle.filter(_record(exc=ConnectionError("refused"))) is False


def test_it_passes_one_summary_per_interval_without_a_traceback(clock):
    throttle = ThrottleFilter(interval=30)
    throttle.filter(_record(exc=ConnectionError("refused")))
    for _ in range(57):
        clock.now += 0.5
        throttle.filter(_record(exc=ConnectionError("refused")))
    clock.now = 1030.0
    summary = _record(exc=ConnectionError("refused again"))
    assert throttle.filter(summary) is True
    assert summary.suppressed == 57
    assert summary.getMessage() == "Exception ignored (and 57 more in the last 30 s)"
    assert summary.exc_info is None
    assert summary.error == "ConnectionError('refused again')"
    assert logging.Formatter().format(summary).count("\n") == 0  # one line
    clock.now += 1
    assert throttle.filter(_record(exc=ConnectionError("refused"))) is False


def test_a_kind_quiet_for_an_interval_starts_a_new_episode_with_its_traceback(clock):
    throttle = ThrottleFilter(interval=30)
    throttle.filter(_record(exc=ConnectionError("refused")))
    clock.now += 31
    again = _record(exc=ConnectionError("refused"))
    assert throttle.filter(again) is True
    assert again.exc_info is not None
    assert not hasattr(again, "suppressed")


def test_kinds_are_counted_apart_and_arguments_do_not_make_a_new_kind(clock):
    throttle = ThrottleFilter(interval=30)
    assert throttle.filter(_record("key %s from cache", name="accounts.selectors")) is True
    assert throttle.filter(_record("other line", name="accounts.selectors")) is True
    assert throttle.filter(_record("key %s from cache", name="other.logger")) is True
    assert throttle.filter(_record("key %s from cache", level=logging.WARNING)) is True
    record = _record("key %s from cache", name="accounts.selectors")
    record.args = ("abc",)
    assert throttle.filter(record) is False


def test_reset_forgets_every_filter(clock):
    throttle = ThrottleFilter(interval=30)
    throttle.filter(_record())
    log_throttle.reset()
    assert throttle.filter(_record()) is True


def test_settings_throttle_django_redis_and_the_api_key_fallbacks():
    assert settings.DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS is True
    for name in (
        settings.DJANGO_REDIS_LOGGER,
        "accounts.selectors",
        "accounts.services.last_use",
        "audit.services.submission",  # "ingest refused": each POST while both are down
    ):
        filters = logging.getLogger(name).filters
        assert [f.interval for f in filters if isinstance(f, ThrottleFilter)] == [30.0], name


def test_one_line_of_an_exception_without_a_message_says_what_it_was_raised_from():
    """kombu raises OperationalError('') from a socket timeout: beat logged a blank error."""
    from kombu.exceptions import OperationalError

    from traceledger.log_throttle import one_line

    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as exc:
            raise OperationalError("") from exc
    except OperationalError as exc:
        assert one_line(exc) == "OperationalError: (TimeoutError: timed out)"
    assert one_line(ValueError("a\n  b")) == "ValueError: a b"
