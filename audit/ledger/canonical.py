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

import hashlib
import ipaddress
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import rfc8785

FORMAT_VERSION = 1
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


def format_timestamp(value: datetime | str) -> str:
    utc = parse_timestamp(value).astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def format_ip(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError as exc:
        raise CanonicalError(f"not an IP address: {value!r}") from exc
    # Python's own text form of IPv4-mapped addresses changed in 3.13, and PostgreSQL prints
    # them dotted: pin the RFC 5952 §5 form so the bytes never depend on either.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return address.compressed


def _get(row: Any, field: str) -> Any:
    if isinstance(row, Mapping):
        if field in row:
            return row[field]
    else:
        return getattr(row, field)
    if field in FIELD_DEFAULTS:
        default = FIELD_DEFAULTS[field]
        return dict(default) if isinstance(default, dict) else default
    raise CanonicalError(f"missing field {field!r}")


def canonical_object(row: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The JSON object that is serialized; ``row`` is a dict or an ``AuditEvent``."""
    obj: dict[str, Any] = {}
    try:
        obj["id"] = str(uuid.UUID(str(_get(row, "id"))))
    except ValueError as exc:
        raise CanonicalError(f"id is not a UUID: {_get(row, 'id')!r}") from exc
    sequence = _get(row, "sequence")
    if isinstance(sequence, bool) or not isinstance(sequence, int):
        raise CanonicalError(f"sequence must be an integer, got {sequence!r}")
    obj["sequence"] = sequence
    obj["occurred_at"] = format_timestamp(_get(row, "occurred_at"))
    obj["received_at"] = format_timestamp(_get(row, "received_at"))
    for field in STRING_FIELDS:
        value = _get(row, field)
        if not isinstance(value, str):
            raise CanonicalError(f"{field} must be a string, got {type(value).__name__}")
        obj[field] = value
    obj["source_ip"] = format_ip(_get(row, "source_ip"))
    metadata = _get(row, "metadata")
    if not isinstance(metadata, dict):
        raise CanonicalError("metadata must be a JSON object")
    obj["metadata"] = metadata
    return obj


def canonical_bytes(row: Mapping[str, Any] | Any) -> bytes:
    """RFC 8785 bytes of ``canonical_object(row)``. Raises ``CanonicalError`` when the row
    holds a value JSON cannot carry exactly (e.g. an integer beyond ±2**53-1, NaN)."""
    try:
        return rfc8785.dumps(canonical_object(row))
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalError(f"cannot canonicalize the event: {exc}") from exc


def event_hash(prev_hash: str, row: Mapping[str, Any] | Any) -> str:
    """Lowercase hex SHA-256(bytes.fromhex(prev_hash) || canonical_bytes(row))."""
    if len(prev_hash) != 64:
        raise CanonicalError(f"prev_hash must be 64 hex digits, got {prev_hash!r}")
    try:
        prev = bytes.fromhex(prev_hash)
    except ValueError as exc:
        raise CanonicalError(f"prev_hash is not hex: {prev_hash!r}") from exc
    return hashlib.sha256(prev + canonical_bytes(row)).hexdigest()
