"""Option parsing shared by the management commands of every app."""

from datetime import UTC, date, datetime, time

from django.core.management.base import CommandError


def parse_moment(value: str, *, option: str, require_offset: bool = False) -> datetime:
    """An ISO 8601 date (midnight UTC at its start) or timestamp, aware. A timestamp without
    an offset is UTC, or refused with ``require_offset`` (where guessing would be costly)."""
    try:
        if len(value) == 10:  # a bare date
            return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(
            f"{option} {value!r} is not an ISO 8601 date or timestamp (e.g. 2026-11-01)"
        ) from exc
    if parsed.tzinfo is None:
        if require_offset:
            raise CommandError(f"{option} {value!r} needs a UTC offset (e.g. 2026-01-01T00:00Z)")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def counted(number: int, noun: str) -> str:
    """``1 event``, ``2 events``: command output read by people (and by cron mail)."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
