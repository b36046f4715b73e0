from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # tasks_outbox/tasks_ledger are not named tasks.py: Celery's autodiscovery misses them.
        from audit import receivers, tasks_ledger, tasks_outbox  # noqa: F401
