"""Gunicorn settings, read automatically by `gunicorn traceledger.wsgi:application`.

Threaded workers: a streamed export of a million rows runs for minutes, and a sync worker
is killed after `timeout` seconds mid-stream (the client would get a truncated 200). With
gthread the worker's heartbeat does not depend on the request finishing.
"""

import os
import sys


def _whole_number(name: str, *, default: int, minimum: int) -> int:
    """Read like every other setting: a bad value is one line naming it, exit 2 (gunicorn
    printed "Failed to read config file" and a traceback)."""
    from django.core.exceptions import ImproperlyConfigured

    from traceledger.settings_env import integer
    from traceledger.settings_guard import exit_on_configuration_error

    try:
        return integer(name, default=default, minimum=minimum)
    except ImproperlyConfigured as exc:
        exit_on_configuration_error(exc)


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = _whole_number("GUNICORN_WORKERS", default=2, minimum=1)
# gthread, with a deadline on the request head (traceledger/gunicorn_worker.py).
worker_class = "traceledger.gunicorn_worker.HeadDeadlineThreadWorker"
threads = _whole_number("GUNICORN_THREADS", default=4, minimum=1)
# 0 is gunicorn's "no timeout".
timeout = _whole_number("GUNICORN_TIMEOUT", default=30, minimum=0)
graceful_timeout = 10
keepalive = 5
# The longest request line gunicorn allows (its default, 4094, answers an HTML 414): a search
# of 512 characters outside ASCII is 4-12 bytes per character once URL-encoded, and its `next`
# link adds the filters and the cursor.
limit_request_line = 8190
accesslog = "-"
# gunicorn 25+ opens a control socket for `gunicornc` at one path per user
# ($HOME/.gunicorn/gunicorn.ctl): a second stack on the host takes it over from the first.
# Off unless a path is given for this instance.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


def _exit_on_bad_settings() -> None:
    """A bad setting stops gunicorn with one line naming the variable, exit 2, as manage.py
    does, before it binds or forks: otherwise every worker fails to boot with a traceback and
    the master gives up with two of them (exit 3).

    A check, not the load: the settings module is imported and forgotten, so each worker
    still reads the settings itself, from the environment as gunicorn leaves it."""
    import importlib

    from django.core.exceptions import ImproperlyConfigured

    from traceledger.settings_guard import exit_on_configuration_error

    module = os.environ.get("DJANGO_SETTINGS_MODULE", "traceledger.settings")
    try:
        importlib.import_module(module)
    except ImproperlyConfigured as exc:
        exit_on_configuration_error(exc)
    finally:
        # The product's settings too: a module that imports them (the tests',
        # testsupport/settings.py) would otherwise re-read the first import's values.
        sys.modules.pop(module, None)
        sys.modules.pop("traceledger.settings", None)


def on_starting(server) -> None:
    # Again once `-e NAME=value` / `raw_env` are in the environment (gunicorn sets them after
    # reading this file; its "Starting gunicorn" line comes first then).
    _exit_on_bad_settings()


# Here, while this file is read: nothing has been logged yet.
_exit_on_bad_settings()
