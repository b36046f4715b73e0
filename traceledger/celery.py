"""The Celery application: ``celery -A traceledger worker`` / ``celery -A traceledger beat``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")

app = Celery("traceledger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Worker start-up declares the RabbitMQ topology, the DLQ included (signal handlers).
import audit.worker_signals  # noqa: E402, F401
