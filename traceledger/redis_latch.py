"""Skip a Redis that just failed, instead of paying its timeout on every call.

django-redis with ``IGNORE_EXCEPTIONS`` turns a Redis outage into cache misses, but each
call still waits for the socket timeout first (0.25 s). A request makes several cache calls
(API key, last-use gate, rate limit), so a hanging Redis cost every request over a second.
This connection class remembers, per Redis address, that a connect or read just failed and
fails the next calls at once for ``RETRY_AFTER`` seconds; then one call tries again.

It also logs the two state changes (logger ``traceledger.redis_latch``): one WARNING when a
Redis that answered fails, one INFO when it answers again, so an outage has a start and an
end in the logs whatever django-redis's own (throttled) lines say in between.
"""

import logging
import threading
import time

from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

RETRY_AFTER = 5.0
_FAILURES = (RedisConnectionError, RedisTimeoutError, OSError)
_down_until: dict[tuple[str, int], float] = {}
_lock = threading.Lock()


class RedisSkipped(RedisConnectionError):
    """Raised instead of contacting a Redis that failed moments ago."""


def reset() -> None:
    with _lock:
        _down_until.clear()


class LatchingConnection(Connection):
    def _address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def _check(self) -> None:
        until = _down_until.get(self._address())
        if until is not None and time.monotonic() < until:
            raise RedisSkipped(f"Redis at {self.host}:{self.port} failed recently; skipped")

    def _trip(self) -> None:
        # An address stays in _down_until until a call succeeds (``_recovered``), so only
        # the first failure of an outage finds it missing.
        with _lock:
            went_down = self._address() not in _down_until
            _down_until[self._address()] = time.monotonic() + RETRY_AFTER
        if went_down:
            logger.warning(
                "Redis unreachable: cache calls are skipped for %s s at a time until it answers",
                RETRY_AFTER,
                extra={"redis": f"{self.host}:{self.port}"},
            )

    def _recovered(self) -> None:
        if self._address() in _down_until:
            with _lock:
                came_back = _down_until.pop(self._address(), None) is not None
            if came_back:
                logger.info("Redis answers again", extra={"redis": f"{self.host}:{self.port}"})

    def connect(self):
        self._check()
        try:
            return super().connect()
        except RedisSkipped:
            raise
        except _FAILURES:
            self._trip()
            raise

    def send_packed_command(self, command, check_health=True):
        self._check()
        try:
            return super().send_packed_command(command, check_health=check_health)
        except RedisSkipped:
            raise
        except _FAILURES:
            self._trip()
            raise

    def read_response(self, *args, **kwargs):
        try:
            response = super().read_response(*args, **kwargs)
        except RedisSkipped:
            raise
        except _FAILURES:
            self._trip()
            raise
        self._recovered()
        return response
