"""Redis cache of verified API keys, so a request needs no PostgreSQL round trip to know
its caller, and ingestion keeps working while PostgreSQL is down (ARCHITECTURE §7).

Entries live under the SHA-256 of the full key, never the key itself, and hold only what a
``Principal`` needs. An entry is *fresh* for ``TRACELEDGER_API_KEY_CACHE_SECONDS`` (then
the key is checked against PostgreSQL again) and is kept for
``TRACELEDGER_API_KEY_CACHE_STALE_SECONDS`` as a fallback used only when PostgreSQL cannot
be reached. A second entry maps the key's public prefix to that digest so that revocation,
which knows the prefix but not the key, can delete the entry.

Every call goes through django-redis with ``IGNORE_EXCEPTIONS``: with Redis down a read is
a miss and a write is a no-op, so authentication falls back to PostgreSQL.

When PostgreSQL fails, this process stops asking it about keys it holds a stale entry for
(and stops recording last use) for ``DATABASE_RETRY_AFTER`` seconds: see
``database_skipped``.
"""

import hashlib
import threading
import time

from django.conf import settings
from django.core.cache import cache


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _entry_key(digest: str) -> str:
    return f"apikey:v1:{digest}"


def _index_key(prefix: str) -> str:
    return f"apikey:v1:prefix:{prefix}"


def get(*, key: str) -> dict | None:
    return cache.get(_entry_key(_digest(key)))


# How long after a key was revoked or edited no look-up may keep an entry of it: longer than
# a request takes from reading the key in PostgreSQL (before the change) to writing its entry
# (after ``forget`` ran), which would otherwise serve a revoked key for the fresh window, and
# for the stale one if PostgreSQL then went down.
CHANGED_MARK_SECONDS = 60


def _changed_key(prefix: str) -> str:
    return f"apikey:v1:changed:{prefix}"


def put(*, key: str, entry: dict) -> None:
    digest = _digest(key)
    prefix = entry["prefix"]
    cache.set_many(
        {_entry_key(digest): entry, _index_key(prefix): digest},
        timeout=settings.TRACELEDGER_API_KEY_CACHE_STALE_SECONDS,
    )
    # Written, then checked; ``forget`` marks, then deletes: of a look-up and a change that
    # race, one always sees the other.
    if cache.get(_changed_key(prefix)):
        cache.delete_many([_entry_key(digest), _index_key(prefix)])


def forget(*, prefix: str) -> None:
    """Drops the cached look-up of the key with this prefix (after revoke or edit), and keeps
    a look-up already under way from caching it again for ``CHANGED_MARK_SECONDS``."""
    cache.set(_changed_key(prefix), 1, timeout=CHANGED_MARK_SECONDS)
    digest = cache.get(_index_key(prefix))
    keys = [_index_key(prefix)]
    if digest:
        keys.append(_entry_key(digest))
    cache.delete_many(keys)


# prefix -> when this process last asked Redis: a process asks at most once per window per
# key, so the hot path of a busy key costs no Redis round trip for it (it was one of three
# per single-event POST).
_asked: dict[str, float] = {}


def claim_touch(*, prefix: str, seconds: int) -> bool:
    """True for the first caller per ``seconds`` window and key; False otherwise or on error."""
    now = time.monotonic()
    if now - _asked.get(prefix, -seconds) < seconds:
        return False
    if len(_asked) > 10_000:  # keys come and go; never let this grow without bound
        _asked.clear()
    _asked[prefix] = now
    return bool(cache.add(f"apikey:v1:touched:{prefix}", 1, seconds))


# PostgreSQL unreachable from this process: when to ask it again (monotonic), or None while
# it answers. A blackholed database costs each connection attempt its connect_timeout (2 s):
# without this, every request with a stale entry paid it, for the whole outage.
#
# Process memory on purpose, not a refreshed ``checked_at`` in Redis: nothing is written,
# so a revocation (which deletes the entry) still takes effect on the next request, and an
# entry is never made fresh again without PostgreSQL having checked it. The cost is that a
# revocation that bypassed the services may be noticed up to DATABASE_RETRY_AFTER later.
DATABASE_RETRY_AFTER = 5.0
_database_retry_at: float | None = None
_database_lock = threading.Lock()


def database_skipped() -> bool:
    """True while PostgreSQL failed less than ``DATABASE_RETRY_AFTER`` seconds ago: serve a
    stale entry and skip last-use writes without trying it. Then one request tries again."""
    retry_at = _database_retry_at
    return retry_at is not None and time.monotonic() < retry_at


def database_failed() -> None:
    """Record that a key look-up or last-use write failed with a ``DatabaseError``."""
    global _database_retry_at
    with _database_lock:
        _database_retry_at = time.monotonic() + DATABASE_RETRY_AFTER


def database_answered() -> bool:
    """Record that PostgreSQL answered. True when it had failed until now (outage over)."""
    global _database_retry_at
    if _database_retry_at is None:  # the usual case: no lock on the hot path
        return False
    with _database_lock:
        ended, _database_retry_at = _database_retry_at is not None, None
    return ended


def database_latch_reset() -> None:
    """Forget a failure (tests)."""
    global _database_retry_at
    with _database_lock:
        _database_retry_at = None
