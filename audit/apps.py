from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # tasks_outbox is not named tasks.py, so Celery's autodiscovery would miss it.
        from audit import receivers, tasks_outbox  # noqa: F401
