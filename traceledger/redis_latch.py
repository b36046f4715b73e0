"""Skip a Redis that just failed, instead of paying its timeout on every call.

django-redis with ``IGNORE_EXCEPTIONS`` turns a Redis outage into cache misses, but each
call still waits for the socket timeout first (0.25 s). A request makes several cache calls
(API key, last-use gate, rate limit), so a hanging Redis cost every request over a second.
This connection class remembers, per Redis address, that a connect or read just failed and
fails the next calls at once for ``RETRY_AFTER`` seconds; then one call tries again.
"""

import threading
import time

from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
        with _lock:
            _down_until[self._address()] = time.monotonic() + RETRY_AFTER

    def _recovered(self) -> None:
        if self._address() in _down_until:
            with _lock:
                _down_until.pop(self._address(), None)

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
