"""The Celery application: ``celery -A traceledger worker`` / ``celery -A traceledger beat``."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")

app = Celery("traceledger")


@app.on_configure.connect
def _exit_on_bad_settings(sender=None, **kwargs) -> None:
    """A bad setting stops the process with one line naming the variable, exit 2, as
    manage.py does, instead of a 91-line traceback from inside Celery's option parsing.

    Celery reads its configuration (our Django settings, through ``config_from_object``) the
    first time anything asks for a value: in ``celery worker`` and ``celery beat`` that is
    while the command line is parsed, before any worker starts. In the web process and in
    ``manage.py`` the settings are loaded by then, so this only reads them."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from traceledger.settings_guard import exit_on_configuration_error

    try:
        settings.INSTALLED_APPS  # noqa: B018 (loads the settings module)
    except ImproperlyConfigured as exc:
        exit_on_configuration_error(exc)


@setup_logging.connect
def _logging_from_settings(**kwargs) -> None:
    """Worker and beat log as every other process does: Django's ``LOGGING`` (JSON lines at
    ``DJANGO_LOG_LEVEL``). A receiver here makes Celery leave logging alone; without one it
    set the root logger to its ``--loglevel``, WARNING when not given, so the README's worker
    command logged no INFO line at all (no relay lines, no request ids; operator QA)."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Worker start-up declares the RabbitMQ topology, the DLQ included (signal handlers).
import audit.worker_signals  # noqa: E402, F401
