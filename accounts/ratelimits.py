"""Rate limits as DRF throttle classes, counted by django-ratelimit in Redis.

django-ratelimit does the counting (atomic ``add``/``incr`` on the shared cache, one
fixed window per rate); these classes only pick the bucket and answer 429 with
``Retry-After`` (seconds to the end of the window) and the API's JSON error body.

How views use them:

- every API view gets ``ReadRateLimit`` from ``REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]``
  (do not set ``throttle_classes`` on a read view; if a view must, include
  ``ReadRateLimit``);
- the ingest endpoint swaps it for ``IngestRateLimit`` on POST (see
  ``audit/api/views.py``: ``get_throttles``);
- the login view uses ``LoginIpRateLimit`` and ``LoginUsernameRateLimit``; the admin's login
  counts in the same two buckets (``accounts/admin_login.py``).

When Redis is unreachable the limits fail open (``RATELIMIT_FAIL_OPEN=True`` together with
django-redis ``IGNORE_EXCEPTIONS``): the request goes through and a warning is logged at
most every ``FAIL_OPEN_LOG_INTERVAL`` seconds per process. Availability of the audit trail
wins over throttling.
"""

import contextlib
import logging
import math
import threading
import time
import unicodedata

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework import exceptions, status
from rest_framework.throttling import BaseThrottle

from accounts.principal import get_principal

logger = logging.getLogger(__name__)

FAIL_OPEN_LOG_INTERVAL = 30.0
_last_fail_open_log = 0.0
_log_lock = threading.Lock()


class RateLimited(exceptions.Throttled):
    """429 with ``Retry-After``; the code matches the one of ``django_ratelimit.Ratelimited``."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "rate_limited"
    default_detail = "Too many requests."
    extra_detail_singular = "Retry after {wait} second."
    extra_detail_plural = "Retry after {wait} seconds."


def _log_fail_open(group: str) -> None:
    global _last_fail_open_log
    with _log_lock:
        now = time.monotonic()
        if now - _last_fail_open_log < FAIL_OPEN_LOG_INTERVAL:
            return
        _last_fail_open_log = now
    logger.warning(
        "rate limit not enforced: the rate-limit cache (Redis) is unavailable, failing open",
        extra={"ratelimit_group": group},
    )


def check_rate(
    *, request, group: str, rate: str, key: str, increment: bool = True, detail: str | None = None
) -> None:
    """Counts one request against ``key`` in ``group``; raises ``RateLimited`` over ``rate``.

    ``key`` is an identity (e.g. ``Principal.rate_key``), or ``"ip"`` for django-ratelimit's
    client address (``RATELIMIT_IP_META_KEY`` behind a proxy; IPv6 counted per /64).
    ``increment=False`` only looks; ``detail`` replaces the 429's "Too many requests."
    """
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return
    usage = get_usage(
        request,
        group=group,
        key="ip" if key == "ip" else (lambda _group, _request: key),
        rate=rate,
        increment=increment,
    )
    if usage is None:  # only when the cache failed: rate and method always match here
        _log_fail_open(group)
        return
    # Only looking, this request is not counted yet: over the limit once it would be.
    if usage["should_limit"] if increment else usage["count"] >= usage["limit"]:
        # django-ratelimit's window ends *with* the second it names (``_get_window``: the
        # current window while int(now) <= its end), so the next window opens one second
        # after ``time_left`` runs out: waiting exactly ``time_left`` met one more 429.
        raise RateLimited(detail=detail, wait=max(1, math.ceil(usage["time_left"]) + 1))


class _RateLimit(BaseThrottle):
    group = ""
    setting = ""

    def key(self, request) -> str | None:
        """The bucket of this request, or None to leave it unlimited."""
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        key = self.key(request)
        if key is not None:
            check_rate(
                request=request, group=self.group, rate=getattr(settings, self.setting), key=key
            )
        return True


class _PerPrincipal(_RateLimit):
    def key(self, request) -> str | None:
        principal = get_principal(request)
        return principal.rate_key if principal is not None else None


class ReadRateLimit(_PerPrincipal):
    """``TRACELEDGER_RATELIMIT_READ`` per API key or user: every API request but ingest."""

    group = "traceledger.read"
    setting = "TRACELEDGER_RATELIMIT_READ"


class HeavyReadRateLimit(_PerPrincipal):
    """``TRACELEDGER_RATELIMIT_HEAVY`` per API key or user, on top of the read limit, for the
    reads that cost seconds of database time each (ledger verification, export): within the
    read limit alone one tenant's loop of them slowed every other tenant's reads."""

    group = "traceledger.heavy"
    setting = "TRACELEDGER_RATELIMIT_HEAVY"


class IngestRateLimit(_PerPrincipal):
    """``TRACELEDGER_RATELIMIT_INGEST`` per API key or user, counted per request."""

    group = "traceledger.ingest"
    setting = "TRACELEDGER_RATELIMIT_INGEST"


class LoginIpRateLimit(_RateLimit):
    """``TRACELEDGER_RATELIMIT_LOGIN`` per client IP (IPv6 per /64, django-ratelimit's rule)."""

    group = "traceledger.login.ip"
    setting = "TRACELEDGER_RATELIMIT_LOGIN"

    def key(self, request) -> str | None:
        return "ip"


class LoginUsernameRateLimit(_RateLimit):
    """``TRACELEDGER_RATELIMIT_LOGIN`` per username tried, whatever the IP (spread attacks)."""

    group = "traceledger.login.username"
    setting = "TRACELEDGER_RATELIMIT_LOGIN"

    def key(self, request) -> str | None:
        data = request.data if isinstance(request.data, dict) else {}
        return login_username_key(data.get("username"))


# Requests whose API key is unknown, revoked or expired, per client IP. Each costs a
# PostgreSQL look-up (a key nobody cached), and nothing else limited them: the other limits
# count per key or user, known only after authentication. ``ApiKeyAuthentication`` counts
# each failure, and checks the bucket only before looking up a key it holds no cached entry
# for: a known key is not held back by its neighbours' failures while its entry lives.
BAD_KEYS_GROUP = "traceledger.bad_keys.ip"
BAD_KEYS_DETAIL = "Too many requests with an invalid, revoked or expired API key from this address."


def bad_keys_check(request) -> None:
    """Raises ``RateLimited`` while this address is over ``TRACELEDGER_RATELIMIT_BAD_KEYS``."""
    check_rate(
        request=request,
        group=BAD_KEYS_GROUP,
        rate=settings.TRACELEDGER_RATELIMIT_BAD_KEYS,
        key="ip",
        increment=False,
        detail=BAD_KEYS_DETAIL,
    )


def bad_keys_count(request) -> None:
    """Counts one failed API key from this address (the request itself still gets its 401)."""
    with contextlib.suppress(RateLimited):
        check_rate(
            request=request,
            group=BAD_KEYS_GROUP,
            rate=settings.TRACELEDGER_RATELIMIT_BAD_KEYS,
            key="ip",
        )


def login_username_key(username) -> str | None:
    """The per-username login bucket: every spelling that logs in as one account counts in
    one bucket, and only those. The login matches the NFKC form ignoring case
    (``UserManager``), so a bucket by ``lower()`` alone gave the fullwidth and the
    mathematical-bold spellings of a name a fresh bucket each, for the same user. Lower case,
    as the unique constraint and PostgreSQL compare, not ``casefold()``: that made "straße"
    and "STRASSE", two accounts, share a bucket, so guessing at one locked the other out."""
    if not isinstance(username, str) or not username.strip():
        return None
    # "user:" keeps a username literally called "ip" from meaning the client address.
    return f"user:{unicodedata.normalize('NFKC', username.strip()).lower()}"
