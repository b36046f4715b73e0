#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import InterfaceError, OperationalError, ProgrammingError

    # What an operator can fix, in one line instead of a traceback: a setting (the message
    # names the variable) or an unreachable PostgreSQL. Exit 2, as for a bad argument.
    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        from traceledger.settings_guard import exit_on_configuration_error

        exit_on_configuration_error(exc)
    except (OperationalError, InterfaceError) as exc:
        # libpq's message spans lines ("Is the server running…"): one line for logs and cron.
        _fail(f"database unavailable: {' '.join(str(exc).split()) or type(exc).__name__}")
    except ProgrammingError as exc:
        # A table missing: DATABASE_URL names a database TraceLedger has not migrated (seen
        # when a shell lacked the service's environment). Any other SQL error is a bug.
        if getattr(exc.__cause__, "sqlstate", None) != "42P01":
            raise
        first_line = str(exc).splitlines()[0]
        _fail(f"database not migrated ({first_line}): run manage.py migrate, or check DATABASE_URL")


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
