"""The canonical form of a stored event, hashed into the tenant's chain.

Specified in ``docs/ledger.md`` (and re-implemented, without Django, in
``tools/verify_export.py``): keep the three in step. Version 1:

``canonical_bytes(row)`` is the RFC 8785 (JCS) serialization of a JSON object with exactly
the keys of ``CANONICAL_FIELDS``:

- ``id``: the UUID, lowercase, hyphenated;
- ``sequence``: an integer;
- ``occurred_at``, ``received_at``: UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always 6 digits);
- ``source_ip``: ``null`` or the address in its compressed form (RFC 5952 for IPv6; an
  IPv4-mapped IPv6 address as ``::ffff:a.b.c.d``);
- ``metadata``: the JSON object as stored;
- every other field: its string value.

``event_hash(prev_hash, row)`` = lowercase hex SHA-256 of the 32 raw bytes of ``prev_hash``
followed by ``canonical_bytes(row)``.

The same bytes come out for a row dict before insert and for the row read back from
PostgreSQL: jsonb reorders keys (JCS sorts them), inet re-formats addresses (we re-parse),
timestamptz keeps microseconds (we print exactly six digits in UTC).
"""

import functools
import hashlib
import ipaddress
import re
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import rfc8785

GENESIS_HASH = "0" * 64

# Defaults of the AuditEvent columns, used when a row dict leaves a field out (the insert
# then stores the model default, so the hash must be computed over the same value).
FIELD_DEFAULTS: dict[str, Any] = {
    "outcome": "success",
    "severity": "info",
    "actor_type": "user",
    "actor_name": "",
    "target_id": "",
    "target_type": "",
    "target_name": "",
    "source_ip": None,
    "user_agent": "",
    "description": "",
    "metadata": {},
}
STRING_FIELDS = (
    "event_id",
    "action",
    "outcome",
    "severity",
    "actor_id",
    "actor_type",
    "actor_name",
    "target_id",
    "target_type",
    "target_name",
    "user_agent",
    "description",
)
# The tenant is not hashed: each tenant has its own chain (and chain head), the signed
# checkpoints name the tenant, and an export (which names tenants by slug) can be verified
# offline without knowing database ids.
CANONICAL_FIELDS = (
    "id",
    "sequence",
    "occurred_at",
    "received_at",
    *STRING_FIELDS,
    "source_ip",
    "metadata",
)


class CanonicalError(ValueError):
    """The row cannot be put in canonical form (and so cannot be chained or stored)."""


def parse_timestamp(value: datetime | str) -> datetime:
    """An aware datetime, from a datetime or an ISO 8601 string; naive values are refused."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise CanonicalError(f"not an ISO 8601 timestamp: {value!r}") from exc
    if not isinstance(value, datetime):
        raise CanonicalError(f"not a timestamp: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise CanonicalError(f"timestamp without a UTC offset: {value.isoformat()}")
    return value


_ZERO = timedelta(0)


def format_timestamp(value: datetime | str) -> str:
    text = _utc_text(value)  # already UTC (what the worker holds): no conversion
    if text is not None:
        return text
    utc = parse_timestamp(value).astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


_UTC_SUFFIX = "+00:00"


def _utc_text(value: Any) -> str | None:
    """The canonical text of a ``datetime`` whose offset is zero; None for anything else."""
    if type(value) is datetime and value.utcoffset() == _ZERO:
        text = value.isoformat(timespec="microseconds")
        if text.endswith(_UTC_SUFFIX):  # not e.g. "+00:00:00.000001" (utcoffset is zero)
            return text[: -len(_UTC_SUFFIX)] + "Z"
    return None


def ipv4_is_canonical(value: str) -> bool:
    """Whether ``value`` is an IPv4 address written as it is stored and hashed (dotted
    decimal, no leading zeros): the common case, checked without an ``ipaddress`` object."""
    if ":" in value:
        return False
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value
    except (OSError, ValueError):
        return False


@functools.lru_cache(maxsize=4096)
def format_ip(value: str | None) -> str | None:
    # Cached: a tenant's events come from few addresses, and parsing one with ipaddress
    # costs as much as a third of the rest of the canonical form.
    if value is None or value == "":
        return None
    if type(value) is str and ipv4_is_canonical(value):
        return value
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError as exc:
        raise CanonicalError(f"not an IP address: {value!r}") from exc
    # Python's own text form of IPv4-mapped addresses changed in 3.13, and PostgreSQL prints
    # them dotted: pin the RFC 5952 §5 form so the bytes never depend on either.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return address.compressed


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_object(row: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The JSON object that is serialized; ``row`` is a dict or an ``AuditEvent``."""
    if isinstance(row, Mapping):
        data = {**FIELD_DEFAULTS, **row}
    else:
        data = {field: getattr(row, field) for field in CANONICAL_FIELDS}
    missing = [field for field in CANONICAL_FIELDS if field not in data]
    if missing:
        raise CanonicalError(f"missing field {missing[0]!r}")
    obj: dict[str, Any] = {}
    raw_id = data["id"]
    if type(raw_id) is str and _CANONICAL_UUID.fullmatch(raw_id):
        obj["id"] = raw_id  # already str(UUID(...)): lowercase, hyphenated
    else:
        try:
            obj["id"] = str(uuid.UUID(str(raw_id)))
        except ValueError as exc:
            raise CanonicalError(f"id is not a UUID: {raw_id!r}") from exc
    sequence = data["sequence"]
    if type(sequence) is not int:
        raise CanonicalError(f"sequence must be an integer, got {sequence!r}")
    obj["sequence"] = sequence
    obj["occurred_at"] = format_timestamp(data["occurred_at"])
    obj["received_at"] = format_timestamp(data["received_at"])
    for field in STRING_FIELDS:
        value = data[field]
        if type(value) is not str:
            raise CanonicalError(f"{field} must be a string, got {type(value).__name__}")
        obj[field] = value
    obj["source_ip"] = format_ip(data["source_ip"])
    metadata = data["metadata"]
    if not isinstance(metadata, dict):
        raise CanonicalError("metadata must be a JSON object")
    obj["metadata"] = metadata
    return obj


MAX_SAFE_INTEGER = 2**53 - 1
FIRST_NON_BMP = "\U00010000"


def _json_dumps_is_jcs(value: Any) -> bool:
    """Whether ``orjson.dumps(OPT_SORT_KEYS)`` (like the C ``json.dumps(sort_keys=True)``)
    writes exactly the RFC 8785 bytes of ``value``: it escapes strings as JCS does, but it
    writes floats differently, and it sorts keys by code point where JCS sorts by UTF-16 unit
    (the same for BMP-only keys)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return False
        elif kind is dict:
            for key in item:
                if type(key) is not str or not (key.isascii() or max(key) < FIRST_NON_BMP):
                    return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        else:
            return False  # floats and anything else: the reference implementation decides
    return True


def jcs_dumps(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value: the C json encoder where it provably agrees (much
    faster on typical events), the ``rfc8785`` package otherwise."""
    try:
        if _json_dumps_is_jcs(value):
            # orjson writes what json.dumps(sort_keys, ensure_ascii=False) writes for these
            # values (same escapes, keys by code point), 5x faster; the property test
            # compares both with the rfc8785 package.
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        return rfc8785.dumps(_large_integers_as_doubles(value))
    except (
        rfc8785.CanonicalizationError,
        UnicodeEncodeError,
        orjson.JSONEncodeError,
        OverflowError,
    ) as exc:
        raise CanonicalError(f"cannot canonicalize the event: {exc}") from exc


def _large_integers_as_doubles(value: Any) -> Any:
    """``value`` with every integer beyond ±(2**53-1) replaced by the double nearest to it.

    A JSON number is a double (RFC 8785 §3.2.2.3). Ingest refuses such integers, so one read
    back from PostgreSQL was a float when it was hashed: jsonb keeps the decimal digits
    orjson wrote (``1e20`` comes back as ``100000000000000000000``), and the nearest double
    to those digits is that float again. Returns ``value`` itself when it holds none.
    """
    kind = type(value)
    if kind is int:
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(value)
    if kind is dict:
        items = {key: _large_integers_as_doubles(item) for key, item in value.items()}
        return value if all(items[key] is item for key, item in value.items()) else items
    if kind is list:
        items = [_large_integers_as_doubles(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def canonical_bytes(row: Mapping[str, Any] | Any) -> bytes:
    """RFC 8785 bytes of ``canonical_object(row)``. Raises ``CanonicalError`` when the row
    holds a value JSON cannot carry exactly (e.g. an integer beyond ±2**53-1, NaN)."""
    return jcs_dumps(canonical_object(row))


def event_hash(prev_hash: str, row: Mapping[str, Any] | Any) -> str:
    """Lowercase hex SHA-256(bytes.fromhex(prev_hash) || canonical_bytes(row))."""
    if len(prev_hash) != 64:
        raise CanonicalError(f"prev_hash must be 64 hex digits, got {prev_hash!r}")
    try:
        prev = bytes.fromhex(prev_hash)
    except ValueError as exc:
        raise CanonicalError(f"prev_hash is not hex: {prev_hash!r}") from exc
    return hashlib.sha256(prev + canonical_bytes(row)).hexdigest()


# In canonical bytes the top-level ``sequence`` is followed by ``severity`` (JCS sorts keys),
# and everything after it is a flat string or null, whose quotes are escaped: the *last*
# occurrence of this pattern is the top-level one even if metadata holds the same keys.
_SEQUENCE_SLOT = b',"sequence":0,"severity":'
_SLOT_VALUE_AT = len(b',"sequence":')


def canonical_template(
    row: Mapping[str, Any], *, metadata_is_jcs: bool = False
) -> tuple[bytes, bytes]:
    """``canonical_bytes(row)`` without its sequence, as (head, tail): for any sequence n,
    ``head + str(n).encode() + tail`` are the row's canonical bytes. Lets the ingest worker
    do the canonical form before it takes the chain-head lock and only hash under it.

    ``metadata_is_jcs=True`` says the caller has established that orjson's sorted text of
    the metadata is its RFC 8785 form (the worker's validation walk,
    ``audit.validation.metadata_check_encoded``, does), which saves walking it again."""
    template = _template_assembled(row, metadata_is_jcs)
    if template is not None:
        return template
    return _template_split(canonical_bytes({**row, "sequence": 0}))


# What orjson writes for a ``datetime`` with this option is the canonical text when the
# tzinfo is UTC itself and the microseconds are not zero (it drops ".000000").
_TEMPLATE_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z


def _utc_value(value: Any) -> datetime | str | None:
    """What the template serializes for a timestamp: the datetime itself where orjson writes
    the canonical text (most events), else that text (``_utc_text``); None if not UTC."""
    if type(value) is datetime and value.tzinfo is UTC and value.microsecond:
        return value
    return _utc_text(value)


def _template_assembled(
    r: Mapping[str, Any], metadata_is_jcs: bool = False
) -> tuple[bytes, bytes] | None:
    """The template of a row as the ingest worker holds it (every field present, strings,
    canonical id, UTC datetimes, a metadata object that orjson writes as JCS does), written
    by one sorted orjson call: the top-level keys are ASCII, so code-point order is JCS
    order. None for anything else; the general path then decides, and refuses what it must."""
    try:
        obj = {name: r[name] for name in STRING_FIELDS}
        raw_id, metadata = r["id"], r["metadata"]
        occurred_at, received_at = _utc_value(r["occurred_at"]), _utc_value(r["received_at"])
        source_ip = r["source_ip"]
    except KeyError:
        return None
    for value in obj.values():
        if type(value) is not str:
            return None
    if (
        occurred_at is None
        or received_at is None
        or type(raw_id) is not str
        or not _CANONICAL_UUID.fullmatch(raw_id)
        or type(metadata) is not dict
        or not (metadata_is_jcs or _json_dumps_is_jcs(metadata))
    ):
        return None
    obj["id"], obj["metadata"], obj["sequence"] = raw_id, metadata, 0
    obj["occurred_at"], obj["received_at"] = occurred_at, received_at
    try:
        obj["source_ip"] = format_ip(source_ip)
        data = orjson.dumps(obj, option=_TEMPLATE_OPTIONS)
    except (orjson.JSONEncodeError, CanonicalError, TypeError):
        return None
    return _template_split(data)


def _template_split(data: bytes) -> tuple[bytes, bytes]:
    slot = data.rfind(_SEQUENCE_SLOT)
    if slot < 0:  # cannot happen for a canonical object; refuse rather than mis-hash
        raise CanonicalError("canonical form has no top-level sequence")
    split = slot + _SLOT_VALUE_AT
    return data[:split], data[split + 1 :]


# _template_assembled writes these (plus source_ip): a new canonical field must join them.
_TEMPLATE_FIELDS = {*STRING_FIELDS, "id", "metadata", "sequence", "occurred_at", "received_at"}
if _TEMPLATE_FIELDS | {"source_ip"} != set(CANONICAL_FIELDS):  # pragma: no cover
    raise ImportError("_template_assembled no longer writes every canonical field")


def event_hash_templated(prev_hash: str, template: tuple[bytes, bytes], sequence: int) -> str:
    """``event_hash`` of the row whose ``canonical_template`` is ``template``."""
    head, tail = template
    return hashlib.sha256(bytes.fromhex(prev_hash) + head + b"%d" % sequence + tail).hexdigest()
