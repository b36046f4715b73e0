"""One event of the ingest message contract → an ``AuditEvent`` row, and COPY of rows.

The worker re-validates cheaply what the API validated: a replayed dead letter may have been
edited by hand. See ``docs/ingest-worker.md`` for the message contract.
"""

import ipaddress
import json
import re
import uuid
from datetime import datetime
from decimal import Decimal

import orjson
from django.db import connection

from audit.ledger.canonical import STRING_FIELDS as LEDGER_STRINGS
from audit.models import AuditEvent, Outcome, Severity
from audit.validation import ACTION_PATTERN, FieldError, metadata_check_encoded, source_ip_normalize

# The API's own rules (audit.validation), so a replayed letter meets what a POST meets.
ACTION_RE = re.compile(ACTION_PATTERN)
OUTCOMES = frozenset(Outcome.values)
SEVERITIES = frozenset(Severity.values)
# field -> max length, the model's (the API enforces the same limits, ARCHITECTURE §4); we
# re-check because a dead letter may have been edited by hand before it was replayed.
STRING_FIELDS = {name: AuditEvent._meta.get_field(name).max_length for name in LEDGER_STRINGS}
REQUIRED_NON_EMPTY = ("event_id", "action", "actor_id")
EVENT_KEYS = frozenset(
    {"id", "occurred_at", "received_at", "source_ip", "metadata", *STRING_FIELDS}
)

# Every column of the table, in the model's order: what the COPY below writes.
COLUMNS = tuple(field.attname for field in AuditEvent._meta.concrete_fields)
# What the client sent, i.e. what a later post under the same event_id must repeat to be a
# duplicate of the stored event. Not id, received_at or submitted_by: the server sets those
# per request, and a retry through another of the tenant's keys is still the same event.
CONTENT_COLUMNS = ("occurred_at", *LEDGER_STRINGS, "source_ip", "metadata")


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 timestamp: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name} has no UTC offset")
    return parsed


def event_row(*, tenant_id: int, event: object, submitted_by: str = "") -> tuple[dict, bool]:
    """Validate one event of the message contract and return it as an AuditEvent row dict,
    with whether its metadata is plain (``metadata_check_encoded``): the ledger then skips
    its own walk (``chain_prepare(metadata_is_jcs=True)``).

    Cheap checks only (types, lengths, choices); raises ``ValueError`` naming the field.
    """
    if not isinstance(event, dict):
        raise ValueError("event is not an object")
    missing = EVENT_KEYS - event.keys()
    if missing:
        raise ValueError(f"missing fields: {', '.join(sorted(missing))}")
    unknown = event.keys() - EVENT_KEYS
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    row: dict = {"tenant_id": tenant_id, "submitted_by": submitted_by}
    try:
        row["id"] = str(uuid.UUID(str(event["id"])))
    except ValueError:
        raise ValueError(f"id is not a UUID: {str(event['id'])[:64]!r}") from None
    for name, max_length in STRING_FIELDS.items():
        value = event[name]
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        if len(value) > max_length:
            raise ValueError(f"{name} is longer than {max_length} characters")
        if "\x00" in value:
            # PostgreSQL text cannot hold it, and in event_id it would fail the duplicate
            # probe, i.e. the whole transaction, not just this row. The API refuses it too.
            raise ValueError(f"{name} contains a NUL character")
        row[name] = value
    for name in REQUIRED_NON_EMPTY:
        if not row[name]:
            raise ValueError(f"{name} must not be empty")
    if not ACTION_RE.match(row["action"]):
        raise ValueError("action may only contain A-Z a-z 0-9 _ . : -")
    if row["outcome"] not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(sorted(OUTCOMES))}")
    if row["severity"] not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(sorted(SEVERITIES))}")
    row["occurred_at"] = _parse_time(event["occurred_at"], "occurred_at")
    row["received_at"] = _parse_time(event["received_at"], "received_at")
    source_ip = event["source_ip"]
    if source_ip is not None:
        if not isinstance(source_ip, str):
            raise ValueError("source_ip must be a string or null")
        try:
            # Also refuses zone ids ("fe80::1%eth0"), which PostgreSQL's inet does not take.
            source_ip = source_ip_normalize(source_ip)
        except FieldError:
            raise ValueError(f"source_ip is not an IP address: {source_ip[:64]!r}") from None
    row["source_ip"] = source_ip
    metadata = event["metadata"]
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    try:
        plain = metadata_check_encoded(metadata, orjson.dumps(metadata))
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"metadata cannot be stored as JSON: {exc}") from None
    except FieldError as exc:
        raise ValueError(f"metadata: {exc}") from None
    row["metadata"] = metadata
    return row, plain


def content_differences(row: dict, stored: tuple) -> list[str]:
    """The ``CONTENT_COLUMNS`` in which ``row`` differs from ``stored`` (those columns as
    selected from the table: inet and jsonb come back as text)."""
    differ = []
    for name, value in zip(CONTENT_COLUMNS, stored, strict=True):
        mine = row[name]
        if name == "metadata":
            same = _json_same(_json_exact(mine), _json_exact(value))
        elif name == "source_ip" and mine is not None and value is not None:
            same = ipaddress.ip_address(mine) == ipaddress.ip_address(value)
        else:
            same = mine == value
        if not same:
            differ.append(name)
    return differ


def _json_exact(value: object) -> object:
    """JSON (text, or as parsed) with every number as a Decimal: jsonb prints numbers as
    numeric (9e15 as 9000000000000000), equal to the float it came from only exactly."""
    text = value if isinstance(value, str | bytes) else orjson.dumps(value)
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _json_same(a: object, b: object) -> bool:
    """Equal as JSON: unlike Python's ``==``, ``true`` is not ``1``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_same, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return type(a) is type(b) and a == b


def rows_copy(*, rows: list[dict], stored_at: datetime) -> None:
    """COPY the rows in one round trip (issue 9: ~4x the ORM's bulk_create)."""
    sql = f"COPY {AuditEvent._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor:
        raw = cursor.cursor  # Django's wrapper has no copy(); errors are still wrapped below
        with connection.wrap_database_errors, raw.copy(sql) as copy:
            for row in rows:
                record = {
                    **row,
                    "stored_at": stored_at,
                    "metadata": orjson.dumps(row["metadata"]).decode(),
                }
                copy.write_row([record[column] for column in COLUMNS])
