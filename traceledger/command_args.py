"""Option parsing shared by the management commands of every app."""

import argparse
import getpass
import os
import sys
from datetime import UTC, date, datetime, time

from django.core.management.base import CommandError
from tqdm import tqdm


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


ACTOR_MAX_LENGTH = 256  # an audit event's actor.id


def add_actor_argument(parser, *, doing: str, trail: str = "the system audit trail") -> None:
    """``--actor NAME``: who runs a command that records itself as an audit event. One
    option for every such command, so operators meet the same name and default everywhere."""
    parser.add_argument(
        "--actor",
        default=None,
        type=_actor_value,
        metavar="NAME",
        help=f"who is {doing}, recorded in {trail} (default: cli:<login name>)",
    )


def _actor_value(value: str) -> str:
    # Refused here, before anything is done: the audit event is submitted after the work
    # (a purge, a replay) and an actor id it cannot carry would lose the record of it.
    value = value.strip()
    if not 1 <= len(value) <= ACTOR_MAX_LENGTH:
        raise argparse.ArgumentTypeError(f"must be 1 to {ACTOR_MAX_LENGTH} characters")
    return value


def actor_name(given: str | None) -> str:
    """The ``--actor`` given, else ``cli:<login name>`` of whoever runs the command."""
    if given:
        return given
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry or LOGNAME
        login = f"uid-{os.getuid()}"
    return f"cli:{login}"


def actor_of(given: str | None):
    """The audit trail's actor for a command run as ``--actor`` (or ``cli:<login name>``)."""
    from accounts.signals import Actor

    name = actor_name(given)
    return Actor(id=name, type="user", name=name)


def add_progress_argument(parser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def progress_bar(*, total: int, desc: str, unit: str, no_progress: bool, min_total: int) -> tqdm:
    """A progress bar on stderr for a long command, shown only on a terminal: in cron mail
    or a redirected log a bar is noise (and never with ``--no-progress``, nor for a total
    under ``min_total``, which is done before a bar would tell anything). Disabled, it
    prints nothing and ``update`` costs nothing."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        # k/M only where they help: on small totals tqdm's scaling prints "60.0/60.0".
        unit_scale=total >= 1000,
        file=sys.stderr,
        disable=no_progress or not sys.stderr.isatty() or total < min_total,
    )
