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
"""

import hashlib
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


def put(*, key: str, entry: dict) -> None:
    digest = _digest(key)
    cache.set_many(
        {_entry_key(digest): entry, _index_key(entry["prefix"]): digest},
        timeout=settings.TRACELEDGER_API_KEY_CACHE_STALE_SECONDS,
    )


def forget(*, prefix: str) -> None:
    """Drops the cached look-up of the key with this prefix (after revoke or edit)."""
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
