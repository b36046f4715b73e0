"""A JSON column that reads back whatever PostgreSQL holds, without raising.

The API stores only metadata that Python reads back (integers within ±(2^53-1), at most 32
levels), but a row edited in the database can hold anything jsonb takes: an integer of 5,000
digits (beyond ``int()``'s limit of 4,300 digits) or arrays nested 2,000 deep (beyond the
recursion limit). Django's ``JSONField`` raises decoding such a row, and every read holding
it failed: the list's page, the export, and ``verify`` itself, which must name that row.
"""

from django.db import models

UNREADABLE_KEY = "_unreadable"


class UnreadableJSON(dict):
    """What a stored value Python cannot decode reads as: a one-key object saying why, shown
    as such by the API and the admin, and named as a broken event by the ledger's verify
    (its hash cannot match: no event is stored with this content by TraceLedger)."""

    def __init__(self, reason: str):
        super().__init__({UNREADABLE_KEY: reason})
        self.reason = reason


class StoredJSONField(models.JSONField):
    def from_db_value(self, value, expression, connection):
        try:
            return super().from_db_value(value, expression, connection)
        except (ValueError, RecursionError) as exc:
            # ValueError: int()'s digit limit; JSONDecodeError is handled by Django.
            return UnreadableJSON(f"the stored JSON cannot be decoded: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(";", 1)[0]
