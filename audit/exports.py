"""Streamed exports of a filtered event set as CSV or JSON Lines, in constant memory.

``export_rows(queryset, fmt)`` yields ``bytes`` chunks; the API's export endpoint and the
admin wrap it in a ``StreamingHttpResponse``. Rows are read with ``.values()`` (no model
instances) through a server-side cursor (``iterator(chunk_size=…)``) inside a transaction:

- In autocommit mode Django declares the cursor ``WITH HOLD``, which makes PostgreSQL
  materialise the *whole* result at the DECLARE's commit before the first row comes back
  (https://docs.djangoproject.com/en/5.2/ref/models/querysets/#with-server-side-cursors,
  https://www.postgresql.org/docs/current/sql-declare.html). Inside ``atomic()`` the cursor is
  an ordinary one, streamed as it is read, and the export reads one consistent snapshot.
- Behind a transaction-pooling PgBouncer, set ``DISABLE_SERVER_SIDE_CURSORS`` on the database;
  the iterator then falls back to client-side fetching in ``chunk_size`` pieces, still bounded
  on the Django side but buffered by psycopg.

The JSONL line is exactly the detail endpoint's document (``event_document``), which the
ledger's offline verifier reads. CSV has one column per scalar, ``actor_*``/``target_*``
flattened, ``metadata`` as compact JSON, timestamps ISO 8601 UTC with microseconds, and
text a spreadsheet would run as a formula prefixed with ``'``.
"""

import csv
import io
import json
import unicodedata
from collections.abc import Iterator, Sequence

from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from audit.api.serializers import event_document, event_rows
from audit.metrics_read import EXPORTED_ROWS

FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
}
CHUNK_SIZE = 2000  # rows per FETCH from the server-side cursor
ROWS_PER_WRITE = 500  # rows per bytes chunk handed to the WSGI server

CSV_COLUMNS = (
    "id",
    "tenant",
    "event_id",
    "occurred_at",
    "received_at",
    "action",
    "outcome",
    "severity",
    "actor_id",
    "actor_type",
    "actor_name",
    "target_id",
    "target_type",
    "target_name",
    "source_ip",
    "user_agent",
    "description",
    "metadata",
    "sequence",
    "prev_hash",
    "hash",
)


def export_filename(*, tenant_ids: Sequence[int | None], extension: str) -> str:
    """``traceledger-<tenant slug>-<UTC stamp>.<extension>`` for an export of one tenant (the
    API's always are; the admin's are when recorded in one tenant's trail), else
    ``audit-events-<stamp>.<extension>``. Runs a query: a caller holding an export slot
    calls it where a failure gives the slot back."""
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if len(tenant_ids) == 1 and tenant_ids[0] is not None:
        slug = Tenant.objects.filter(pk=tenant_ids[0]).values_list("slug", flat=True).first()
        if slug:
            return f"traceledger-{slug}-{stamp}.{extension}"
    return f"audit-events-{stamp}.{extension}"


def _json(value, *, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV
# injection"), and most event fields are written by whoever caused the event. Spreadsheets
# also skip leading blanks and line breaks before a formula, and some read the fullwidth
# signs as the ASCII ones.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# What may come before the sign unseen: control and format characters (a vertical tab, a
# byte-order mark, a zero-width space) and every kind of space and line or paragraph break.
# Which of them a given spreadsheet skips varies, so none is trusted.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _formula_like(text: str) -> bool:
    if text.startswith(FORMULA_TRIGGERS):
        return True
    start = 0
    while start < len(text) and unicodedata.category(text[start]) in _INVISIBLE_CATEGORIES:
        start += 1
    return start > 0 and text.startswith(FORMULA_TRIGGERS, start)


def csv_cell(value):
    """The value, with a leading ``'`` when a spreadsheet would read it as a formula."""
    if isinstance(value, str) and _formula_like(value):
        return "'" + value
    return value


def csv_record(document: dict) -> list:
    """One CSV row in ``CSV_COLUMNS`` order: actor/target flattened, metadata as JSON,
    formula-like text defused (the JSON Lines export stays byte-exact)."""
    flat = dict(document)
    for part in ("actor", "target"):
        obj = flat.pop(part) or {}
        for key in ("id", "type", "name"):
            flat[f"{part}_{key}"] = obj.get(key, "")
    flat["source_ip"] = flat["source_ip"] or ""
    flat["metadata"] = _json(flat["metadata"], sort_keys=True)
    return [csv_cell(flat[column]) for column in CSV_COLUMNS]


def _documents(queryset) -> Iterator[dict]:
    with transaction.atomic():
        for row in event_rows(queryset).iterator(chunk_size=CHUNK_SIZE):
            yield event_document(row)


def export_rows(queryset, fmt: str) -> Iterator[bytes]:
    """The events of ``queryset`` (in its order) as ``fmt`` ("csv" or "jsonl") byte chunks."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    return _csv_chunks(queryset) if fmt == "csv" else _jsonl_chunks(queryset)


# Line breaks to Python's str.splitlines() and to JavaScript line readers that JSON leaves
# unescaped (the others are control characters, which it escapes): a reader splitting on them
# cut a line in two. Escaped they read back as the same string (only strings can hold them).
_LINE_BREAKS_ESCAPED = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _jsonl_chunks(queryset) -> Iterator[bytes]:
    lines: list[str] = []
    for document in _documents(queryset):
        lines.append(_json(document).translate(_LINE_BREAKS_ESCAPED))
        if len(lines) >= ROWS_PER_WRITE:
            yield _flush_jsonl(lines, "jsonl")
            lines = []
    if lines:
        yield _flush_jsonl(lines, "jsonl")


def _flush_jsonl(lines: list[str], fmt: str) -> bytes:
    EXPORTED_ROWS.labels(format=fmt).inc(len(lines))
    return ("\n".join(lines) + "\n").encode()


def _csv_chunks(queryset) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    pending = 0
    for document in _documents(queryset):
        writer.writerow(csv_record(document))
        pending += 1
        if pending >= ROWS_PER_WRITE:
            yield _flush_csv(buffer, pending)
            pending = 0
    yield _flush_csv(buffer, pending)


def _flush_csv(buffer: io.StringIO, rows: int) -> bytes:
    EXPORTED_ROWS.labels(format="csv").inc(rows)
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data
