import logging
import time

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from traceledger import redis_latch


@pytest.fixture
def cache_through(fault_proxy):
    proxy = fault_proxy("127.0.0.1", 6379)
    location = f"redis://127.0.0.1:{proxy.port}/0"
    with override_settings(
        CACHES={"default": {**settings.CACHES["default"], "LOCATION": location}}
    ):
        yield proxy, caches["default"]


def _timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def test_it_pays_the_timeout_of_a_hanging_redis_once_then_skips_it(cache_through):
    proxy, cache = cache_through
    proxy.set_mode("blackhole")
    first = _timed(lambda: cache.get("k"))
    later = _timed(lambda: [cache.get("k") for _ in range(10)])
    assert first >= 0.2  # the socket timeout, once
    assert later < 0.1  # ten calls skipped at once instead of 2.5 s of timeouts
    assert cache.get("k", "default") == "default"  # still a plain cache miss, never an error


def test_it_uses_redis_again_once_it_answers_after_the_retry_delay(cache_through, monkeypatch):
    proxy, cache = cache_through
    monkeypatch.setattr(redis_latch, "RETRY_AFTER", 0.3)
    proxy.set_mode("refuse")
    cache.set("k", "v")
    proxy.set_mode("pass")
    assert cache.get("k") is None  # still skipped within the delay
    time.sleep(0.35)
    cache.set("k", "v")
    assert cache.get("k") == "v"


def test_a_failing_redis_does_not_make_another_one_skipped(fault_proxy):
    real_cache = settings.CACHES["default"]
    proxy = fault_proxy("127.0.0.1", 6379)
    proxy.set_mode("refuse")
    cut = {"default": {**real_cache, "LOCATION": f"redis://127.0.0.1:{proxy.port}/0"}}
    with override_settings(CACHES=cut):
        caches["default"].get("k")  # trips the latch for the proxy's address only
    caches["default"].set("latch-probe", "1", 5)
    assert caches["default"].get("latch-probe") == "1"


def test_it_logs_an_outage_once_when_it_starts_and_once_when_it_ends(
    cache_through, monkeypatch, caplog
):
    proxy, cache = cache_through
    monkeypatch.setattr(redis_latch, "RETRY_AFTER", 0.2)
    proxy.set_mode("refuse")
    with caplog.at_level(logging.INFO, logger="traceledger.redis_latch"):
        for _ in range(3):  # each round: one real attempt that fails, then skipped calls
            for _ in range(10):
                cache.get("k")
            time.sleep(0.25)
        proxy.set_mode("pass")
        cache.set("k", "v")
        assert cache.get("k") == "v"
        cache.get("k")
    lines = [
        (r.levelname, r.getMessage(), r.redis)
        for r in caplog.records
        if r.name == "traceledger.redis_latch"
    ]
    address = f"127.0.0.1:{proxy.port}"
    assert lines == [
        (
            "WARNING",
            "Redis unreachable: cache calls are skipped for 0.2 s at a time until it answers",
            address,
        ),
        ("INFO", "Redis answers again", address),
    ]
