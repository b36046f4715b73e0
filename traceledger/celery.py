"""The Celery application: ``celery -A traceledger worker`` / ``celery -A traceledger beat``."""

import os

from celery import Celery

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


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Worker start-up declares the RabbitMQ topology, the DLQ included (signal handlers).
import audit.worker_signals  # noqa: E402, F401
